//! The cluster flags every pipeline-running subcommand accepts (timely's model: workers per
//! process, processes, this process's index, a hostfile). Built by hand rather than with timely's
//! parser, whose `-h` for the hostfile would shadow `--help`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// timely workers in this process (each runs its own stage chain).
    #[arg(long, short = 'w', default_value_t = 1)]
    pub workers: usize,
    /// Number of processes in the cluster.
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// Index of this process, 0..processes.
    #[arg(long, default_value_t = 0)]
    pub process: usize,
    /// File with one host:port per line, one line per process, in process order.
    #[arg(long)]
    pub hostfile: Option<PathBuf>,
}

impl ClusterArgs {
    pub fn options(&self) -> pipeline::ClusterOptions {
        pipeline::ClusterOptions {
            workers: self.workers,
            processes: self.processes,
            process: self.process,
            hostfile: self.hostfile.clone(),
        }
    }
}
