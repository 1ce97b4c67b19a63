//! How the ranks of a benchmark find each other without a coordinator: every rank prints one
//! `addr ...` line on stdout, `shoal bench` (or a person, across machines) collects them and hands
//! every rank the comma-separated list, in rank order, as one line on stdin.

use std::fmt::Display;
use std::io::BufRead;
use std::time::Duration;

use shoal_worker::sync::{DataPlane, PeerInfo, Ring};

use super::error::BenchError;

/// Job name of the benchmark links on the data plane.
const JOB: &str = "bench";

/// Binds a data plane on an ephemeral loopback port.
pub fn bind() -> Result<DataPlane, BenchError> {
    DataPlane::bind("127.0.0.1:0").map_err(|source| BenchError::Bind { source })
}

/// Prints `addr {mine}` and reads every rank's entry from stdin.
fn exchange(mine: impl Display) -> Result<Vec<String>, BenchError> {
    println!("addr {mine}");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|source| BenchError::PeerList { source })?;
    Ok(line.trim().split(',').map(str::to_owned).collect())
}

/// Announces `plane` and returns the `world` peers (`role` names them in errors: peer, stage).
pub fn peers(plane: &DataPlane, world: usize, role: &'static str) -> Result<Vec<PeerInfo>, BenchError> {
    let addrs = exchange(plane.addr())?;
    if addrs.len() != world {
        return Err(BenchError::PeerCount { role, expected: world, got: addrs.len() });
    }
    Ok(addrs.into_iter().enumerate().map(|(r, a)| PeerInfo::local(r, a)).collect())
}

/// Joins a benchmark ring of `world` ranks as `rank` (alone, it prints and reads nothing).
pub fn join_ring(rank: usize, world: usize, timeout: Duration) -> Result<Ring, BenchError> {
    let plane = bind()?;
    let peers =
        if world == 1 { vec![PeerInfo::local(0, plane.addr().to_string())] } else { peers(&plane, world, "peer")? };
    Ok(Ring::connect(&plane, JOB, 1, rank, peers, timeout)?)
}

/// Joins a benchmark NCCL communicator on GPU 0: rank 0 prints `addr HEX-UNIQUE-ID`, the others
/// `addr -`; every rank then reads the list from stdin and takes the id from its first entry.
#[cfg(feature = "cuda")]
pub fn join_nccl(rank: usize, world: usize, timeout: Duration) -> Result<Box<dyn shoal_train::Collective>, BenchError> {
    use shoal_worker::sync::nccl::{Nccl, UniqueId};
    let nccl = |reason: &dyn Display| BenchError::Nccl { rank, reason: reason.to_string() };
    let id = if rank == 0 { Some(UniqueId::new().map_err(|e| nccl(&e))?) } else { None };
    let id = if world == 1 {
        id.ok_or_else(|| nccl(&"rank 0 has no id"))?
    } else {
        let hex: String =
            id.as_ref().map_or_else(|| "-".into(), |id| id.to_bytes().iter().map(|b| format!("{b:02x}")).collect());
        let first = exchange(hex)?.into_iter().next().unwrap_or_default();
        let bytes: Vec<u8> =
            (0..first.len() / 2).filter_map(|i| u8::from_str_radix(&first[2 * i..2 * i + 2], 16).ok()).collect();
        UniqueId::from_bytes(&bytes).map_err(|e| nccl(&e))?
    };
    let mut comm = Nccl::new(0, rank, world, id).map_err(|e| nccl(&e))?;
    comm.set_timeout(timeout);
    Ok(Box::new(comm))
}

/// Without the `cuda` feature there is no NCCL to join.
#[cfg(not(feature = "cuda"))]
pub fn join_nccl(_: usize, _: usize, _: Duration) -> Result<Box<dyn shoal_train::Collective>, BenchError> {
    Err(BenchError::NoCuda)
}
