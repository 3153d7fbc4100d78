//! Data-parallel training on GPUs: one process per GPU, gradients summed on the devices by
//! NCCL ([`kernels::cuda::nccl::GradComm`]) while the timely channel carries the step's weights,
//! metadata and, once, NCCL's unique id from rank 0 ([`pipeline::nccl_id`]).
//!
//! Process → GPU: the spec's `cuda:N` names each machine's first GPU; the process with local
//! rank `k` (its position among the hostfile entries with the same host) uses `cuda:N+k`.
//! Multi-GPU and multi-node NCCL training is untested (see docs/cluster.md).

use anyhow::Context;
use kernels::cuda::nccl::{check_available, GradComm};
use kernels::cuda::{CudaBackend, CudaBuf};
use pipeline::allreduce::AllReduce;
use pipeline::ClusterOptions;

use super::replicas::DeviceGradSum;

impl DeviceGradSum<CudaBackend> for GradComm {
    fn sum_in_place(&self, be: &CudaBackend, grads: &mut [CudaBuf]) -> anyhow::Result<()> {
        // a failed op of the backward pass would otherwise surface as garbage gradients
        if let Some(e) = be.take_error() {
            return Err(e).context("before the NCCL gradient sum");
        }
        self.sum_buffers_in_place(grads)
            .context("summing gradients over the ranks with NCCL")
    }
}

/// This process's position among the processes on its machine: the hostfile entries before it
/// with the same host (without a hostfile every process runs on 127.0.0.1).
pub fn local_rank(cluster: &ClusterOptions) -> anyhow::Result<usize> {
    let addresses = match &cluster.hostfile {
        Some(p) => pipeline::engine::read_hostfile(p)?,
        None => vec!["127.0.0.1:0".to_string(); cluster.processes],
    };
    local_rank_in(&addresses, cluster.process)
}

fn host(address: &str) -> &str {
    address.rsplit_once(':').map_or(address, |(h, _)| h)
}

/// [`local_rank`] over explicit `host:port` addresses.
pub fn local_rank_in(addresses: &[String], process: usize) -> anyhow::Result<usize> {
    let me = addresses.get(process).with_context(|| {
        format!(
            "--process {process} has no hostfile entry ({} entries)",
            addresses.len()
        )
    })?;
    Ok(addresses[..process]
        .iter()
        .filter(|a| host(a) == host(me))
        .count())
}

/// A cluster rank's GPU: creates the backend on `cuda:first + local rank` and joins the NCCL
/// communicator of every rank (rank 0 makes the id, the round hands it to the others). Fails
/// with a message naming NCCL and what is missing when the driver or libnccl is absent; a rank
/// that fails here stops the others at the id round.
pub fn join(
    first: usize,
    cluster: &ClusterOptions,
    ar: &mut dyn AllReduce,
) -> anyhow::Result<(CudaBackend, GradComm, usize)> {
    let ordinal = first + local_rank(cluster)?;
    let why = || {
        format!(
            "cluster training on cuda:{ordinal} sums gradients with NCCL (one process per GPU; \
             set `device = \"cpu\"` to all-reduce on the CPU instead)"
        )
    };
    check_available().with_context(why)?;
    let be = CudaBackend::new(ordinal).with_context(why)?;
    let id = if ar.rank() == 0 {
        Some(GradComm::new_id().with_context(why)?)
    } else {
        None
    };
    let id = pipeline::nccl_id::hand_over(ar, id.as_ref())
        .context("handing NCCL's unique id from rank 0 to every process")?;
    let comm = GradComm::from_id(&be, ar.rank(), ar.ranks(), &id).with_context(why)?;
    tracing::info!(
        rank = ar.rank(),
        ranks = ar.ranks(),
        ordinal,
        "joined the NCCL communicator"
    );
    Ok((be, comm, ordinal))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn local_rank_counts_earlier_processes_on_the_same_host() {
        let a = addrs(&[
            "10.0.0.1:2101",
            "10.0.0.2:2101",
            "10.0.0.1:2102",
            "10.0.0.2:2102",
            "10.0.0.1:2103",
        ]);
        let ranks: Vec<usize> = (0..a.len())
            .map(|p| local_rank_in(&a, p).unwrap())
            .collect();
        assert_eq!(ranks, vec![0, 0, 1, 1, 2]);
        // IPv6 literals keep their colons: only the port is cut
        let b = addrs(&["[::1]:2101", "[::1]:2102", "[::2]:2101"]);
        assert_eq!(local_rank_in(&b, 1).unwrap(), 1);
        assert_eq!(local_rank_in(&b, 2).unwrap(), 0);
        assert!(local_rank_in(&b, 3).is_err());
    }

    #[test]
    fn without_a_hostfile_every_process_is_on_one_machine() {
        let c = ClusterOptions {
            workers: 1,
            processes: 3,
            process: 2,
            hostfile: None,
        };
        assert_eq!(local_rank(&c).unwrap(), 2);
    }

    #[test]
    fn hostfile_entries_map_processes_to_gpus() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts");
        std::fs::write(
            &p,
            "# two machines, two GPUs each\ngpu-a:2101\ngpu-a:2102\ngpu-b:2101\ngpu-b:2102\n",
        )
        .unwrap();
        let ranks: Vec<usize> = (0..4)
            .map(|process| {
                local_rank(&ClusterOptions {
                    workers: 1,
                    processes: 4,
                    process,
                    hostfile: Some(p.clone()),
                })
                .unwrap()
            })
            .collect();
        assert_eq!(ranks, vec![0, 1, 0, 1]);
    }

    /// Without a driver (this machine) joining fails with a message that names NCCL and the
    /// driver, before touching the id round.
    #[test]
    fn joining_without_a_gpu_names_nccl_and_the_driver() {
        if kernels::cuda::driver_available() {
            return; // a GPU machine: the device check covers the real path
        }
        let c = ClusterOptions::default();
        let e = join(0, &c, &mut pipeline::allreduce::LocalReduce).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("NCCL") && msg.contains("driver"), "{msg}");
    }
}
