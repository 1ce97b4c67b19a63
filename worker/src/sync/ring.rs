//! Ring collectives over TCP between workers. Each rank sends to the next rank and receives from
//! the previous one. All-reduce is reduce-scatter then all-gather: the buffer is cut into one
//! segment per rank, and each segment into chunks that stream through the ring. A sender thread
//! and the receiving (calling) thread run at once: a chunk received and reduced in one step is
//! sent on in the next step while later chunks are still arriving, so sending, receiving and
//! summing overlap. The order in which each segment is summed is fixed by the ring, so every rank
//! ends with bit-identical results.
//!
//! Nothing waits forever: reads and writes have the collective deadline, a waiting sender sends
//! keep-alives so its neighbour can tell "blocked behind someone" from "stalled", and a rank that
//! detects a dead or stalled peer forwards an abort naming that peer, so every rank reports the
//! same culprit.

use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::ops::Range;
use std::time::{Duration, Instant};

use std::sync::Arc;

use shoal_train::{Collective, CollectiveError, Op, Peer, ReduceOp};

use super::PeerInfo;
use super::dataplane::{DataPlane, LinkKey};
use super::engine::{self, Combine, Failure, Links, RecvItem, SendItem};
use super::frame::{self, Kind};

/// Largest streamed chunk (1 MiB of f32): large chunks cost fewer system calls...
pub const MAX_CHUNK_ELEMS: usize = 256 * 1024;
/// ...small ones start the pipeline sooner; segments are cut into at least this many chunks.
const MIN_CHUNKS_PER_SEGMENT: usize = 16;
const MIN_CHUNK_ELEMS: usize = 64 * 1024;

/// A ring over the data plane for one job attempt.
pub struct Ring {
    me: usize,
    peers: Vec<PeerInfo>,
    next: Option<TcpStream>,
    prev: Option<TcpStream>,
    timeout: Duration,
    chunk_elems: usize,
    scratch: Vec<f32>,
    broken: Option<CollectiveError>,
}

fn splits(range: Range<usize>, parts: usize) -> Vec<Range<usize>> {
    let len = range.len();
    let (base, extra) = (len / parts, len % parts);
    let mut out = Vec::with_capacity(parts);
    let mut start = range.start;
    for i in 0..parts {
        let n = base + usize::from(i < extra);
        out.push(start..start + n);
        start += n;
    }
    out
}

fn chunks(range: &Range<usize>, chunk: usize) -> Vec<Range<usize>> {
    (range.start..range.end).step_by(chunk.max(1)).map(|s| s..(s + chunk).min(range.end)).collect()
}

impl Ring {
    /// Connects rank `me` of `peers` (in rank order) for one attempt of `job`: a link to the next
    /// rank and one from the previous rank, within `timeout`.
    pub fn connect(
        plane: &DataPlane,
        job: &str,
        attempt: u32,
        me: usize,
        peers: Vec<PeerInfo>,
        timeout: Duration,
    ) -> Result<Self, CollectiveError> {
        Self::connect_on(plane, job, attempt, me, peers, timeout, 0)
    }

    /// [`Self::connect`] on data-plane channel `channel`, for several rings within one job (the
    /// stages of pipeline replicas). `me` indexes `peers`; errors name the peers' own ranks.
    pub fn connect_on(
        plane: &DataPlane,
        job: &str,
        attempt: u32,
        me: usize,
        peers: Vec<PeerInfo>,
        timeout: Duration,
        channel: u32,
    ) -> Result<Self, CollectiveError> {
        let n = peers.len();
        let mut ring = Self {
            me,
            peers,
            next: None,
            prev: None,
            timeout,
            // Operators can pin the chunk size (KiB) to tune a particular network.
            chunk_elems: std::env::var("SHOAL_RING_CHUNK_KB")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .map_or(0, |kb| kb * 256),
            scratch: Vec::new(),
            broken: None,
        };
        if n <= 1 {
            return Ok(ring);
        }
        let deadline = Instant::now() + timeout;
        let (next, prev) = ((me + 1) % n, (me + n - 1) % n);
        let key =
            |from: usize, to: usize| LinkKey { job: job.into(), attempt, from: from as u32, to: to as u32, channel };
        let (to, from) = (&ring.peers[next], &ring.peers[prev]);
        let out = plane.connect(&to.data_addr, &key(me, next), deadline).map_err(|e| CollectiveError::Connect {
            peer: to.peer(),
            addr: to.data_addr.clone(),
            source: Arc::new(e),
        })?;
        let inc = plane.accept(&key(prev, me), deadline).map_err(|e| CollectiveError::Accept {
            peer: from.peer(),
            timeout,
            source: Arc::new(e),
        })?;
        let setup = |p: &PeerInfo, e: io::Error| CollectiveError::LinkSetup { peer: p.peer(), source: Arc::new(e) };
        out.set_nonblocking(true).map_err(|e| setup(to, e))?;
        inc.set_nonblocking(true).map_err(|e| setup(from, e))?;
        ring.next = Some(out);
        ring.prev = Some(inc);
        Ok(ring)
    }

    /// Fixes the elements per streamed chunk (0 = adapt to the message size).
    pub fn set_chunk_elems(&mut self, elems: usize) {
        self.chunk_elems = elems;
    }

    fn chunk_for(&self, segment: usize) -> usize {
        if self.chunk_elems > 0 {
            self.chunk_elems
        } else {
            (segment / MIN_CHUNKS_PER_SEGMENT).clamp(MIN_CHUNK_ELEMS, MAX_CHUNK_ELEMS)
        }
    }

    fn world(&self) -> usize {
        self.peers.len()
    }

    fn keepalive_every(&self) -> Duration {
        (self.timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(2))
    }

    fn describe(&self, failure: &Failure, op: Op) -> CollectiveError {
        let name = |r: usize| self.peers.get(r).map_or_else(|| Peer::unnamed(r), PeerInfo::peer);
        match failure {
            Failure::Relayed { culprit, reason } => {
                CollectiveError::Aborted { by: name(*culprit), op, reason: reason.clone() }
            }
            Failure::Gone { peer, detail } => {
                CollectiveError::PeerLost { peer: name(*peer), op, detail: detail.clone() }
            }
            Failure::Silent { peer, waited } => CollectiveError::Timeout { peer: name(*peer), op, waited: *waited },
            Failure::Local(why) => CollectiveError::Local { me: name(self.me), op, detail: why.clone() },
        }
    }

    fn culprit(&self, failure: &Failure) -> Option<usize> {
        match failure {
            Failure::Relayed { culprit, .. } => Some(*culprit),
            Failure::Gone { peer, .. } | Failure::Silent { peer, .. } => Some(*peer),
            Failure::Local(_) => Some(self.me),
        }
    }

    /// Records the failure, tells the next rank who broke the collective, and keeps reading the
    /// previous rank's link for a while so that its writes neither block nor fail before the abort
    /// reaches it the other way round the ring.
    fn break_ring(&mut self, failure: Failure, op: Op) -> CollectiveError {
        let err = self.describe(&failure, op);
        let n = self.world();
        if let (Some(culprit), Some(mut next)) = (self.culprit(&failure), self.next.take())
            && culprit != (self.me + 1) % n
        {
            let _ = next.set_nonblocking(false);
            let _ = next.set_write_timeout(Some(Duration::from_secs(1)));
            let reason = match &failure {
                Failure::Relayed { reason, .. } => reason.clone(),
                _ => err.to_string(),
            };
            let _ = frame::write_frame(&mut next, Kind::Abort, &frame::abort_payload(culprit, &reason));
        }
        if let Some(mut prev) = self.prev.take() {
            let linger = self.timeout;
            let _ = std::thread::Builder::new().name("shoal-ring-drain".into()).spawn(move || {
                let _ = prev.set_nonblocking(false);
                let _ = prev.set_read_timeout(Some(Duration::from_millis(200)));
                let until = Instant::now() + linger;
                let mut sink = vec![0u8; 64 * 1024];
                while Instant::now() < until {
                    match prev.read(&mut sink) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                        Err(_) => break,
                    }
                }
            });
        }
        tracing::warn!(error = %err, "collective failed");
        self.broken = Some(err.clone());
        err
    }

    /// Runs a schedule of chunk sends and receives over `buf`.
    fn run(&mut self, buf: &mut [f32], sends: &[SendItem], recvs: &[RecvItem], op: Op) -> Result<(), CollectiveError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let n = self.world();
        let keepalive = self.keepalive_every();
        let timeout = self.timeout;
        let result = match (self.next.as_mut(), self.prev.as_mut()) {
            (Some(next), Some(prev)) => {
                let mut links = Links { next, prev, next_rank: (self.me + 1) % n, prev_rank: (self.me + n - 1) % n };
                engine::execute(&mut links, buf, sends, recvs, &mut self.scratch, timeout, keepalive)
            }
            _ => Err(Failure::Local("the ring is not connected".into())),
        };
        result.map_err(|f| self.break_ring(f, op))
    }

    fn ring_all_reduce(&mut self, buf: &mut [f32], combine: Combine) -> Result<(), CollectiveError> {
        let n = self.world();
        if n <= 1 || buf.is_empty() {
            return Ok(());
        }
        let r = self.me;
        let segments = splits(0..buf.len(), n);
        let chunk = self.chunk_for(segments[0].len());
        let steps = 2 * (n - 1);
        let recv_seg = |t: usize| if t < n - 1 { (r + 2 * n - t - 1) % n } else { (r + 2 * n - (t - (n - 1))) % n };
        let send_seg = |t: usize| if t < n - 1 { (r + n - t) % n } else { (r + 1 + 2 * n - (t - (n - 1))) % n };
        let mut recvs = Vec::new();
        let mut recv_index: Vec<Vec<usize>> = Vec::with_capacity(steps);
        for t in 0..steps {
            let mut idx = Vec::new();
            for c in chunks(&segments[recv_seg(t)], chunk) {
                idx.push(recvs.len());
                recvs.push(RecvItem { range: c, combine: if t < n - 1 { combine } else { Combine::Copy } });
            }
            recv_index.push(idx);
        }
        let mut sends = Vec::new();
        for t in 0..steps {
            for (j, c) in chunks(&segments[send_seg(t)], chunk).into_iter().enumerate() {
                let after = if t == 0 { 0 } else { recv_index[t - 1][j] + 1 };
                sends.push(SendItem { range: c, after });
            }
        }
        self.run(buf, &sends, &recvs, Op::AllReduce)
    }
}

impl Collective for Ring {
    fn rank(&self) -> usize {
        self.me
    }

    fn world_size(&self) -> usize {
        self.world()
    }

    fn all_reduce(&mut self, buf: &mut [f32], op: ReduceOp) -> Result<(), CollectiveError> {
        let combine = match op {
            ReduceOp::Sum => Combine::Sum,
            ReduceOp::Max => Combine::Max,
        };
        self.ring_all_reduce(buf, combine)
    }

    fn broadcast(&mut self, buf: &mut [f32], root: usize) -> Result<(), CollectiveError> {
        let n = self.world();
        if n <= 1 || buf.is_empty() {
            return Ok(());
        }
        let position = (self.me + n - root) % n;
        let pieces = chunks(&(0..buf.len()), self.chunk_for(buf.len()));
        let recvs: Vec<RecvItem> = if position == 0 {
            Vec::new()
        } else {
            pieces.iter().map(|c| RecvItem { range: c.clone(), combine: Combine::Copy }).collect()
        };
        let sends: Vec<SendItem> = if position == n - 1 {
            Vec::new()
        } else {
            pieces
                .iter()
                .enumerate()
                .map(|(j, c)| SendItem { range: c.clone(), after: if position == 0 { 0 } else { j + 1 } })
                .collect()
        };
        self.run(buf, &sends, &recvs, Op::Broadcast)
    }

    fn all_gather_u64(&mut self, value: u64) -> Result<Vec<u64>, CollectiveError> {
        // Four 16-bit pieces per rank are exact in f32, and a sum of zeros and one piece is exact.
        let n = self.world();
        let mut buf = vec![0f32; 4 * n];
        for k in 0..4 {
            buf[4 * self.me + k] = ((value >> (16 * k)) & 0xffff) as f32;
        }
        self.ring_all_reduce(&mut buf, Combine::Sum)?;
        Ok((0..n).map(|r| (0..4).fold(0u64, |acc, k| acc | ((buf[4 * r + k] as u64) << (16 * k)))).collect())
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        for s in [self.next.take(), self.prev.take()].into_iter().flatten() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts `n` ranks in threads over real loopback TCP and runs `f` on each.
    pub(crate) fn with_ring<T: Send>(n: usize, timeout: Duration, f: impl Fn(&mut Ring) -> T + Sync) -> Vec<T> {
        let planes: Vec<DataPlane> = (0..n).map(|_| DataPlane::bind("127.0.0.1:0").expect("bind")).collect();
        let peers: Vec<PeerInfo> =
            planes.iter().enumerate().map(|(r, p)| PeerInfo::local(r, p.addr().to_string())).collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = planes
                .iter()
                .enumerate()
                .map(|(r, plane)| {
                    let peers = peers.clone();
                    let f = &f;
                    s.spawn(move || {
                        let mut ring = Ring::connect(plane, "job-test", 1, r, peers, timeout).expect("connect");
                        ring.set_chunk_elems(7);
                        f(&mut ring)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("rank thread")).collect()
        })
    }

    #[test]
    fn all_reduce_matches_the_reference_sum() {
        for n in 1..=5 {
            for len in [0usize, 1, 2, 5, 13, 64, 1000 + n] {
                // Reference: rank r contributes r * 1000 + i at index i; the sum over ranks.
                let results = with_ring(n, Duration::from_secs(10), |ring| {
                    let r = ring.rank();
                    let mut buf: Vec<f32> = (0..len).map(|i| (r * 1000 + i) as f32).collect();
                    ring.all_reduce(&mut buf, ReduceOp::Sum).expect("all-reduce");
                    buf
                });
                let want: Vec<f32> = (0..len).map(|i| (0..n).map(|r| (r * 1000 + i) as f32).sum()).collect();
                for (r, got) in results.iter().enumerate() {
                    assert_eq!(got, &want, "world {n}, len {len}, rank {r}");
                }
            }
        }
    }

    #[test]
    fn results_are_bit_identical_on_every_rank() {
        let results = with_ring(3, Duration::from_secs(10), |ring| {
            let r = ring.rank() as f32;
            let mut buf: Vec<f32> = (0..999).map(|i| (i as f32 * 0.1 + r).sin() * 1e-3).collect();
            ring.all_reduce(&mut buf, ReduceOp::Sum).expect("all-reduce");
            buf.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
        });
        assert_eq!(results[0], results[1]);
        assert_eq!(results[1], results[2]);
    }

    #[test]
    fn max_broadcast_and_gather() {
        let results = with_ring(4, Duration::from_secs(10), |ring| {
            let r = ring.rank();
            let mut m: Vec<f32> = (0..10).map(|i| if i % 4 == r { 100.0 + r as f32 } else { -1.0 }).collect();
            ring.all_reduce(&mut m, ReduceOp::Max).expect("max");
            let mut b: Vec<f32> = if r == 2 { (0..20).map(|i| i as f32).collect() } else { vec![0.0; 20] };
            ring.broadcast(&mut b, 2).expect("broadcast");
            let g = ring.all_gather_u64(0xdead_beef_0000_0000 | r as u64).expect("gather");
            (m, b, g)
        });
        for (m, b, g) in results {
            assert_eq!(m, (0..10).map(|i| 100.0 + (i % 4) as f32).collect::<Vec<_>>());
            assert_eq!(b, (0..20).map(|i| i as f32).collect::<Vec<_>>());
            assert_eq!(g, (0..4).map(|r| 0xdead_beef_0000_0000 | r as u64).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_rank_that_leaves_is_named_by_every_other_rank() {
        let results = with_ring(4, Duration::from_secs(3), |ring| {
            let mut buf = vec![1f32; 10_000];
            ring.all_reduce(&mut buf, ReduceOp::Sum).expect("first all-reduce");
            if ring.rank() == 2 {
                // Rank 2 goes away: its sockets close.
                ring.next.take();
                ring.prev.take();
                return None;
            }
            let started = Instant::now();
            let err = ring.all_reduce(&mut buf, ReduceOp::Sum).expect_err("rank 2 is gone");
            Some((err.to_string(), started.elapsed()))
        });
        for (r, res) in results.into_iter().enumerate() {
            if let Some((msg, took)) = res {
                assert!(msg.contains("rank 2 (worker local-2 on localhost)"), "rank {r}: {msg}");
                assert!(took < Duration::from_secs(3), "rank {r} took {took:?}");
            }
        }
    }

    #[test]
    fn a_stalled_rank_is_named_within_the_deadline() {
        let results = with_ring(3, Duration::from_millis(800), |ring| {
            let mut buf = vec![1f32; 1000];
            if ring.rank() == 1 {
                // Rank 1 stalls: keeps its links open but never joins the collective.
                std::thread::sleep(Duration::from_secs(4));
                return None;
            }
            let started = Instant::now();
            let err = ring.all_reduce(&mut buf, ReduceOp::Sum).expect_err("rank 1 stalls");
            Some((err.to_string(), started.elapsed()))
        });
        for (r, res) in results.into_iter().enumerate() {
            if let Some((msg, took)) = res {
                assert!(msg.contains("rank 1 (worker local-1 on localhost)"), "rank {r}: {msg}");
                assert!(took < Duration::from_millis(2500), "rank {r} took {took:?}");
            }
        }
    }
}
