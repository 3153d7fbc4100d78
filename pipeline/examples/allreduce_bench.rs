//! All-reduce cost of data-parallel training: two processes on 127.0.0.1 (this binary starts its
//! own second rank) reduce a vector of `--params` f32 values `--rounds` times through
//! [`pipeline::allreduce`], i.e. the gradient exchange of `rounds / 2` SAM steps.
//!
//! `cargo run --release -p pipeline --example allreduce_bench -- --params N [--rounds 10]`
//! prints wall seconds per round and the CPU seconds of rank 0 (the machine may be shared).

use std::time::{Duration, Instant};

use pipeline::allreduce::{execute, AllReduce, Contribution};
use pipeline::ClusterOptions;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// CPU seconds (user + system) of this process so far, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |x| x.1);
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // fields 14 and 15 (utime, stime) are at 11 and 12 after the `)`
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

fn main() {
    let params: usize = arg("--params")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: u64 = arg("--rounds").and_then(|v| v.parse().ok()).unwrap_or(10);
    let rank: usize = arg("--rank").and_then(|v| v.parse().ok()).unwrap_or(0);
    let hosts = match arg("--hostfile") {
        Some(h) => std::path::PathBuf::from(h),
        None => {
            let port = |_: usize| {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map(|a| a.port())
                    .unwrap_or(0)
            };
            let p = std::env::temp_dir().join(format!("allreduce-bench-{}", std::process::id()));
            std::fs::write(
                &p,
                format!("127.0.0.1:{}\n127.0.0.1:{}\n", port(0), port(1)),
            )
            .expect("writing the hostfile");
            p
        }
    };
    let peer = (rank == 0).then(|| {
        std::process::Command::new(std::env::current_exe().expect("own path"))
            .args(["--rank", "1", "--params", &params.to_string()])
            .args(["--rounds", &rounds.to_string(), "--hostfile"])
            .arg(&hosts)
            .spawn()
            .expect("starting rank 1")
    });
    let cluster = ClusterOptions {
        workers: 1,
        processes: 2,
        process: rank,
        hostfile: Some(hosts),
    };
    let r = execute(
        &cluster,
        Duration::from_secs(120),
        move |ar: &mut dyn AllReduce| {
            let values: Vec<f32> = (0..params).map(|i| (i % 97) as f32 * 1e-3).collect();
            // one warm-up round (connections, allocations)
            ar.all_reduce(
                params,
                vec![Contribution {
                    weight: 2,
                    values: values.clone(),
                    meta: vec![0.0; 8],
                }],
            )
            .map_err(|e| e.to_string())?;
            let (t0, c0) = (Instant::now(), cpu_seconds());
            for _ in 0..rounds {
                let r = ar
                    .all_reduce(
                        params,
                        vec![Contribution {
                            weight: 2,
                            values: values.clone(),
                            meta: vec![0.0; 8],
                        }],
                    )
                    .map_err(|e| e.to_string())?;
                assert_eq!(r.values.len(), params);
            }
            Ok::<_, String>((t0.elapsed().as_secs_f64(), cpu_seconds() - c0))
        },
    );
    match r {
        Ok(Ok((wall, cpu))) if rank == 0 => {
            let mb = params as f64 * 4.0 / 1e6;
            println!(
                "params {params} ({mb:.1} MB f32), 2 processes: {:.4} s wall per all-reduce ({:.4} s per SAM step = 2 rounds), rank 0 CPU {:.4} s per round",
                wall / rounds as f64,
                2.0 * wall / rounds as f64,
                cpu / rounds as f64
            );
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            eprintln!("rank {rank}: {e}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("rank {rank}: {e}");
            std::process::exit(1);
        }
    }
    if let Some(mut p) = peer {
        let _ = p.wait();
    }
}
