//! A deadline for the processes of a cluster run to find each other. timely's set-up retries
//! connecting to lower-ranked peers and waits for higher-ranked ones forever, so a peer that died
//! before connecting (or a hostfile line nobody serves) would leave every other process hanging
//! silently. The watch ends the process with a clear message instead; nothing has been written
//! at that point, so a rerun starts cleanly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ClusterOptions;

/// Environment variable overriding the connect deadline, in seconds.
pub const CONNECT_TIMEOUT_ENV: &str = "FAKESTORMER_CONNECT_TIMEOUT";

/// Default deadline: generous for processes started by hand on several machines.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(120);

/// Exit status of a process whose peers never connected (the same as other peer failures).
pub const EXIT_PEERS_MISSING: i32 = 2;

/// The deadline from [`CONNECT_TIMEOUT_ENV`], or the default when unset or unreadable.
pub fn connect_timeout() -> Duration {
    std::env::var(CONNECT_TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
}

/// Armed before `timely::execute`; [`ConnectWatch::connected`] (called by the first worker
/// closure, which timely runs only once every process is connected) disarms it.
#[derive(Clone)]
pub struct ConnectWatch {
    done: Arc<AtomicBool>,
}

impl ConnectWatch {
    /// Starts the watch for a multi-process run (a no-op for one process).
    pub fn start(cluster: &ClusterOptions) -> Self {
        let done = Arc::new(AtomicBool::new(cluster.processes <= 1));
        if cluster.processes > 1 {
            let flag = done.clone();
            let timeout = connect_timeout();
            let (me, n) = (cluster.process, cluster.processes);
            let hosts = cluster
                .hostfile
                .as_ref()
                .map_or("127.0.0.1 ports 2101..".to_string(), |p| {
                    p.display().to_string()
                });
            std::thread::spawn(move || {
                let start = Instant::now();
                while start.elapsed() < timeout {
                    if flag.load(Ordering::Acquire) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                if !flag.load(Ordering::Acquire) {
                    eprintln!(
                        "error: process {me} of {n}: the other processes did not all connect within {:.0} s \
                         (addresses: {hosts}); a peer probably died or was never started — start every \
                         process with the same hostfile and --processes, then rerun (finished items are \
                         kept). Set {CONNECT_TIMEOUT_ENV}=SECONDS to wait longer.",
                        timeout.as_secs_f64()
                    );
                    std::process::exit(EXIT_PEERS_MISSING);
                }
            });
        }
        Self { done }
    }

    /// Every process is connected: disarms the watch.
    pub fn connected(&self) {
        self.done.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_process_run_is_never_watched() {
        let w = ConnectWatch::start(&ClusterOptions::default());
        assert!(w.done.load(Ordering::Acquire));
    }
}
