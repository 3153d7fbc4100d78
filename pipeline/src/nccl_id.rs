//! Hands NCCL's 128-byte unique id from rank 0 to every process of a training cluster, over the
//! same timely channel the CPU all-reduce uses (one meta-only round of [`AllReduce`]), so GPU
//! ranks need no side channel (files, environment variables, a store server) to meet.
//!
//! The id is opaque here: rank 0 creates it (libnccl's `ncclGetUniqueId`), every rank gets the
//! same bytes back and initialises its communicator with them. The round is an ordinary one, so
//! a rank that fails before it (no GPU, no libnccl) stops the others with its message.

use crate::allreduce::{AllReduce, AllReduceError, Contribution};

/// Bytes in an NCCL unique id (`NCCL_UNIQUE_ID_BYTES`).
pub const ID_BYTES: usize = 128;

/// Why the id could not be handed over.
#[derive(Debug, thiserror::Error)]
pub enum IdHandoverError {
    #[error(transparent)]
    Round(#[from] AllReduceError),
    #[error("rank {rank} must {what} the NCCL unique id (only rank 0 creates it)")]
    WrongRole { rank: usize, what: &'static str },
    #[error("rank 0 sent a malformed NCCL unique id: {0}")]
    Malformed(String),
}

/// Every rank calls this once, at the same point: rank 0 with `Some(id)`, the others with
/// `None`. Returns rank 0's bytes on every rank (on rank 0, its own).
pub fn hand_over(
    ar: &mut dyn AllReduce,
    id: Option<&[u8; ID_BYTES]>,
) -> Result<[u8; ID_BYTES], IdHandoverError> {
    let rank = ar.rank();
    match (rank == 0, id.is_some()) {
        (true, false) => return Err(IdHandoverError::WrongRole { rank, what: "send" }),
        (false, true) => {
            return Err(IdHandoverError::WrongRole {
                rank,
                what: "receive, not send,",
            })
        }
        _ => {}
    }
    // Bytes ride as f64 metadata (exact for 0..=255); nothing is averaged (length 0, weight 0).
    let meta = id.map_or_else(Vec::new, |b| b.iter().map(|&v| f64::from(v)).collect());
    let r = ar.all_reduce(
        0,
        vec![Contribution {
            weight: 0,
            values: Vec::new(),
            meta,
        }],
    )?;
    let sent = r
        .metas
        .first()
        .ok_or_else(|| IdHandoverError::Malformed("no rank answered".into()))?;
    decode(sent)
}

fn decode(meta: &[f64]) -> Result<[u8; ID_BYTES], IdHandoverError> {
    if meta.len() != ID_BYTES {
        return Err(IdHandoverError::Malformed(format!(
            "{} bytes, expected {ID_BYTES}",
            meta.len()
        )));
    }
    let mut out = [0u8; ID_BYTES];
    for (i, (o, &v)) in out.iter_mut().zip(meta).enumerate() {
        if !(0.0..=255.0).contains(&v) || v.fract() != 0.0 {
            return Err(IdHandoverError::Malformed(format!(
                "byte {i} is {v}, not in 0..=255"
            )));
        }
        *o = v as u8;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::allreduce::{execute, LocalReduce};
    use crate::engine::ClusterOptions;

    /// An id with every byte value and a per-run pattern (not a constant the code could echo).
    fn sample_id(salt: u8) -> [u8; ID_BYTES] {
        std::array::from_fn(|i| (i as u8).wrapping_mul(197).wrapping_add(salt) ^ 0x5a)
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Two cluster processes (two threads here, each with its own timely TCP endpoint on
    /// 127.0.0.1, as `--processes 2` runs them) both end up with rank 0's bytes exactly.
    #[test]
    fn every_rank_receives_rank_zero_bytes_over_tcp() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(
            &hosts,
            format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
        )
        .unwrap();
        let salt = std::process::id() as u8;
        let want = sample_id(salt);
        let ranks: Vec<_> = (0..2)
            .map(|process| {
                let cluster = ClusterOptions {
                    workers: 1,
                    processes: 2,
                    process,
                    hostfile: Some(hosts.clone()),
                };
                std::thread::spawn(move || {
                    execute(&cluster, Duration::from_secs(60), move |ar| {
                        let mine = (ar.rank() == 0).then(|| sample_id(salt));
                        hand_over(ar, mine.as_ref()).map(|id| (ar.rank(), id))
                    })
                })
            })
            .collect();
        let mut seen = Vec::new();
        for r in ranks {
            let (rank, got) = r.join().unwrap().unwrap().unwrap();
            assert_eq!(got, want, "rank {rank} got other bytes");
            seen.push(rank);
        }
        seen.sort();
        assert_eq!(seen, vec![0, 1]);
    }

    #[test]
    fn one_process_gets_its_own_id_back() {
        let id = sample_id(3);
        assert_eq!(hand_over(&mut LocalReduce, Some(&id)).unwrap(), id);
    }

    #[test]
    fn rank_zero_without_an_id_is_refused() {
        let e = hand_over(&mut LocalReduce, None).unwrap_err();
        assert!(
            matches!(e, IdHandoverError::WrongRole { rank: 0, .. }),
            "{e}"
        );
    }

    #[test]
    fn malformed_ids_are_refused() {
        assert!(matches!(
            decode(&[1.0; 127]),
            Err(IdHandoverError::Malformed(_))
        ));
        let mut m = vec![7.0; ID_BYTES];
        m[5] = 256.0;
        assert!(decode(&m).unwrap_err().to_string().contains("byte 5"));
        m[5] = 2.5;
        assert!(decode(&m).is_err());
        m[5] = 255.0;
        assert_eq!(decode(&m).unwrap()[5], 255);
    }
}
