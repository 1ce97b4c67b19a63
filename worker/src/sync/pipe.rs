//! Links between neighbouring pipeline stages over the data plane: one TCP connection per pair of
//! neighbours carries activations one way and their gradients the other. Messages have no size
//! limit.
//!
//! Latency matters more than anything here: with 1F1B every transfer sits on the critical path.
//! So the stage's own thread writes each message straight into the socket (no hand-off to a
//! sender thread that would first have to be scheduled on a core busy with compute), while a
//! reader thread per connection keeps draining what the neighbour sends into a queue. Because
//! both ends always drain, a write never waits on the other stage's compute, and two stages that
//! send to each other at once cannot deadlock. An idle link carries keep-alives.
//!
//! Nothing waits forever: a neighbour that sends nothing (not even a keep-alive) for the
//! collective timeout is reported as stalled, one that stops reading fails the write within the
//! same timeout, a closed connection is reported as gone, and a stage that fails tells both
//! neighbours why, so every stage names the same culprit.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shoal_train::pipeline::{Dir, MsgKind, StageLink, StageMsg};
use shoal_train::{CollectiveError, Op};

use super::PeerInfo;
use super::dataplane::{DataPlane, LinkKey};
use super::frame::{self, Kind};

/// Data-plane channel of pipeline links (0 is the data-parallel ring).
pub const PIPE_CHANNEL: u32 = 1;
/// Fixed part of an encoded message.
const MSG_HEADER: usize = 48;
/// A receive may wait this many timeouts for a neighbour that stays alive but sends no data.
const LIVE_WAIT_FACTOR: u32 = 4;

enum Incoming {
    Msg(StageMsg),
    Abort(String),
    Gone(String),
    Silent(Duration),
}

/// The writing half of a connection, shared by the stage and its keep-alive thread.
struct Writer {
    stream: TcpStream,
    last: Instant,
}

struct Neighbour {
    peer: PeerInfo,
    writer: Arc<Mutex<Writer>>,
    inbox: Receiver<Incoming>,
    /// Dropping it stops the keep-alive thread.
    keepalive_stop: Option<Sender<()>>,
    keepalive: Option<JoinHandle<()>>,
    /// No more writes (after an abort).
    closed: bool,
}

/// One stage's links to its neighbours.
pub struct PipeLink {
    stage: usize,
    stages: usize,
    prev: Option<Neighbour>,
    next: Option<Neighbour>,
    timeout: Duration,
    broken: Option<CollectiveError>,
}

/// Bytes of `msg` on the wire, after the frame header.
fn wire_len(msg: &StageMsg) -> usize {
    MSG_HEADER + 4 * (msg.targets.len() + msg.data.len())
}

/// The fixed header and the targets of `msg` (the data follows as raw little-endian f32).
fn encode_head(msg: &StageMsg) -> Vec<u8> {
    let mut out = Vec::with_capacity(MSG_HEADER + 4 * msg.targets.len());
    out.extend_from_slice(&u32::from(msg.kind.code()).to_le_bytes());
    out.extend_from_slice(&msg.mb.to_le_bytes());
    out.extend_from_slice(&msg.count.to_le_bytes());
    out.extend_from_slice(&msg.flag.to_le_bytes());
    out.extend_from_slice(&msg.aux[0].to_le_bytes());
    out.extend_from_slice(&msg.aux[1].to_le_bytes());
    out.extend_from_slice(&msg.target_width.to_le_bytes());
    out.extend_from_slice(&(msg.targets.len() as u32).to_le_bytes());
    out.extend_from_slice(&(msg.data.len() as u64).to_le_bytes());
    out.extend_from_slice(bytemuck::cast_slice(&msg.targets));
    out
}

/// The whole message as bytes (tests and small messages).
pub fn encode(msg: &StageMsg) -> Vec<u8> {
    let mut out = encode_head(msg);
    out.extend_from_slice(bytemuck::cast_slice(&msg.data));
    out
}

/// Writes `msg` as one data frame, headers and data in one vectored write where the socket takes
/// it all (the usual case), so a message costs one system call.
fn write_msg(w: &mut impl Write, msg: &StageMsg) -> io::Result<()> {
    let mut head = frame::header(Kind::Data, wire_len(msg)).to_vec();
    head.extend_from_slice(&encode_head(msg));
    let data: &[u8] = bytemuck::cast_slice(&msg.data);
    let mut written = loop {
        match w.write_vectored(&[io::IoSlice::new(&head), io::IoSlice::new(data)]) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the link accepted no bytes")),
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    if written < head.len() {
        w.write_all(&head[written..])?;
        written = head.len();
    }
    w.write_all(&data[written - head.len()..])
}

/// Reads the body of a data frame of `len` bytes straight into the message's buffers.
fn read_msg(r: &mut impl Read, len: usize) -> io::Result<StageMsg> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("bad pipeline message: {why}"));
    if len < MSG_HEADER {
        return Err(bad("too short"));
    }
    let mut head = [0u8; MSG_HEADER];
    r.read_exact(&mut head)?;
    let mut msg = decode_head(&head)?;
    let (n_targets, n_data) = (msg.targets.len(), msg.data.len());
    if len != MSG_HEADER + 4 * (n_targets + n_data) {
        return Err(bad("length does not match its header"));
    }
    r.read_exact(bytemuck::cast_slice_mut(&mut msg.targets))?;
    r.read_exact(bytemuck::cast_slice_mut(&mut msg.data))?;
    Ok(msg)
}

/// The fixed header, with zeroed target and data buffers of the announced sizes.
fn decode_head(bytes: &[u8; MSG_HEADER]) -> io::Result<StageMsg> {
    let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or([0; 8]));
    let kind = MsgKind::from_code(u32_at(0) as u8)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad pipeline message: unknown kind"))?;
    Ok(StageMsg {
        kind,
        mb: u32_at(4),
        count: u32_at(8),
        flag: f32::from_bits(u32_at(12)),
        aux: [f64::from_bits(u64_at(16)), f64::from_bits(u64_at(24))],
        target_width: u32_at(32),
        targets: vec![0.0; u32_at(36) as usize],
        data: vec![0.0; u64_at(40) as usize],
    })
}

pub fn decode(bytes: &[u8]) -> io::Result<StageMsg> {
    read_msg(&mut &bytes[..], bytes.len()).and_then(|m| {
        if wire_len(&m) == bytes.len() {
            Ok(m)
        } else {
            Err(io::Error::new(io::ErrorKind::InvalidData, "bad pipeline message: trailing bytes"))
        }
    })
}

/// Sends a keep-alive whenever the link has been idle for `every`; never blocks the stage (a
/// write in progress means the link is not idle).
fn spawn_keepalive(writer: Arc<Mutex<Writer>>, stop: Receiver<()>, every: Duration) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("shoal-pipe-alive".into()).spawn(move || {
        while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(every) {
            let Ok(mut w) = writer.try_lock() else { continue };
            if w.last.elapsed() >= every {
                if frame::write_frame(&mut w.stream, Kind::KeepAlive, &[]).is_err() {
                    return;
                }
                w.last = Instant::now();
            }
        }
    })
}

fn spawn_reader(stream: TcpStream, tx: Sender<Incoming>, silence: Duration) -> io::Result<()> {
    stream.set_read_timeout(Some(silence))?;
    // Headers come from the buffer; large bodies bypass it and land in the message directly.
    let mut stream = io::BufReader::with_capacity(64 * 1024, stream);
    std::thread::Builder::new().name("shoal-pipe-recv".into()).spawn(move || {
        let mut last = Instant::now();
        loop {
            let item = match frame::read_header(&mut stream) {
                Ok((Kind::KeepAlive, _)) => {
                    last = Instant::now();
                    continue;
                }
                Ok((Kind::Data, len)) => match read_msg(&mut stream, len) {
                    Ok(msg) => {
                        last = Instant::now();
                        Incoming::Msg(msg)
                    }
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => Incoming::Gone(e.to_string()),
                    Err(e) => failure(e, last),
                },
                Ok((Kind::Abort, len)) => {
                    let mut payload = vec![0u8; len];
                    match stream.read_exact(&mut payload) {
                        Ok(()) => Incoming::Abort(frame::parse_abort(&payload).1),
                        Err(e) => failure(e, last),
                    }
                }
                Err(e) => failure(e, last),
            };
            let end = !matches!(item, Incoming::Msg(_));
            if tx.send(item).is_err() || end {
                return;
            }
        }
    })?;
    Ok(())
}

fn failure(e: io::Error, last: Instant) -> Incoming {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Incoming::Silent(last.elapsed()),
        io::ErrorKind::UnexpectedEof => Incoming::Gone("connection closed".into()),
        _ => Incoming::Gone(e.to_string()),
    }
}

impl Neighbour {
    fn new(peer: PeerInfo, stream: TcpStream, timeout: Duration) -> io::Result<Self> {
        stream.set_write_timeout(Some(timeout))?;
        let every = (timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(2));
        let (in_tx, in_rx) = mpsc::channel();
        spawn_reader(stream.try_clone()?, in_tx, timeout)?;
        let writer = Arc::new(Mutex::new(Writer { stream, last: Instant::now() }));
        let (stop_tx, stop_rx) = mpsc::channel();
        let keepalive = spawn_keepalive(writer.clone(), stop_rx, every)?;
        Ok(Self {
            peer,
            writer,
            inbox: in_rx,
            keepalive_stop: Some(stop_tx),
            keepalive: Some(keepalive),
            closed: false,
        })
    }

    fn close(&mut self) {
        self.closed = true;
        self.keepalive_stop = None;
        if let Some(h) = self.keepalive.take() {
            let _ = h.join();
        }
    }
}

impl PipeLink {
    /// Connects stage `stage` of `stages` (global rank `rank`) to its neighbours for one attempt
    /// of `job`, within `timeout`.
    #[allow(clippy::too_many_arguments)]
    pub fn connect(
        plane: &DataPlane,
        job: &str,
        attempt: u32,
        rank: usize,
        stage: usize,
        stages: usize,
        prev: Option<PeerInfo>,
        next: Option<PeerInfo>,
        timeout: Duration,
    ) -> Result<Self, CollectiveError> {
        let deadline = Instant::now() + timeout;
        let key = |from: usize, to: usize| LinkKey {
            job: job.into(),
            attempt,
            from: from as u32,
            to: to as u32,
            channel: PIPE_CHANNEL,
        };
        let setup = |p: &PeerInfo, e: io::Error| CollectiveError::LinkSetup { peer: p.peer(), source: Arc::new(e) };
        let next = match next {
            Some(p) => {
                let stream = plane.connect(&p.data_addr, &key(rank, p.rank), deadline).map_err(|e| {
                    CollectiveError::Connect { peer: p.peer(), addr: p.data_addr.clone(), source: Arc::new(e) }
                })?;
                Some(Neighbour::new(p.clone(), stream, timeout).map_err(|e| setup(&p, e))?)
            }
            None => None,
        };
        let prev = match prev {
            Some(p) => {
                let stream = plane.accept(&key(p.rank, rank), deadline).map_err(|e| CollectiveError::Accept {
                    peer: p.peer(),
                    timeout,
                    source: Arc::new(e),
                })?;
                Some(Neighbour::new(p.clone(), stream, timeout).map_err(|e| setup(&p, e))?)
            }
            None => None,
        };
        Ok(Self { stage, stages, prev, next, timeout, broken: None })
    }

    fn side(&mut self, dir: Dir) -> Result<&mut Neighbour, CollectiveError> {
        let (stage, stages) = (self.stage, self.stages);
        let (side, name) = match dir {
            Dir::Prev => (self.prev.as_mut(), "Prev"),
            Dir::Next => (self.next.as_mut(), "Next"),
        };
        side.ok_or(CollectiveError::NoNeighbour { stage, stages, side: name })
    }

    fn fail(&mut self, err: CollectiveError) -> CollectiveError {
        tracing::warn!(error = %err, "pipeline link failed");
        self.broken = Some(err.clone());
        err
    }
}

impl StageLink for PipeLink {
    fn stage(&self) -> usize {
        self.stage
    }

    fn stages(&self) -> usize {
        self.stages
    }

    fn send(&mut self, to: Dir, msg: StageMsg) -> Result<(), CollectiveError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let timeout = self.timeout;
        let side = self.side(to)?;
        let peer = side.peer.clone();
        let result = if side.closed {
            Err(io::Error::new(io::ErrorKind::NotConnected, "the link was closed"))
        } else {
            let mut w = side.writer.lock().unwrap_or_else(|e| e.into_inner());
            let r = write_msg(&mut w.stream, &msg);
            w.last = Instant::now();
            r
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                Err(self.fail(CollectiveError::Stalled { peer: peer.peer(), waited: timeout }))
            }
            Err(e) => {
                Err(self.fail(CollectiveError::PeerLost { peer: peer.peer(), op: Op::Pipeline, detail: e.to_string() }))
            }
        }
    }

    fn recv(&mut self, from: Dir) -> Result<StageMsg, CollectiveError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let cap = self.timeout * LIVE_WAIT_FACTOR;
        let side = self.side(from)?;
        let peer = side.peer.peer();
        let op = Op::Pipeline;
        let err = match side.inbox.recv_timeout(cap) {
            Ok(Incoming::Msg(msg)) => return Ok(msg),
            Ok(Incoming::Abort(reason)) => CollectiveError::Aborted { by: peer, op, reason },
            Ok(Incoming::Gone(detail)) => CollectiveError::PeerLost { peer, op, detail },
            Ok(Incoming::Silent(waited)) => CollectiveError::Timeout { peer, op, waited },
            Err(RecvTimeoutError::Timeout) => CollectiveError::Idle { peer, waited: cap },
            Err(RecvTimeoutError::Disconnected) => {
                CollectiveError::PeerLost { peer, op, detail: "its link is closed".into() }
            }
        };
        Err(self.fail(err))
    }

    fn abort(&mut self, reason: &str) {
        for side in [self.prev.as_mut(), self.next.as_mut()].into_iter().flatten() {
            if side.closed {
                continue;
            }
            side.close();
            let mut w = side.writer.lock().unwrap_or_else(|e| e.into_inner());
            let _ = w.stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = frame::write_frame(&mut w.stream, Kind::Abort, &frame::abort_payload(0, reason));
        }
    }
}

impl Drop for PipeLink {
    /// Stops the keep-alives and ends the writing half; everything written is already in the
    /// kernel's hands, and the reader threads end when the neighbours close their halves (closing
    /// the socket outright with unread data would reset it and could drop the last messages).
    fn drop(&mut self) {
        for side in [self.prev.as_mut(), self.next.as_mut()].into_iter().flatten() {
            side.close();
            let w = side.writer.lock().unwrap_or_else(|e| e.into_inner());
            let _ = w.stream.shutdown(Shutdown::Write);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let msg = StageMsg {
            kind: MsgKind::Forward,
            mb: 3,
            count: 8,
            flag: 1.0,
            aux: [512.0, -0.25],
            target_width: 0,
            targets: vec![1.0, 2.0, 9.0],
            data: (0..300).map(|i| i as f32 * 0.5).collect(),
        };
        assert_eq!(decode(&encode(&msg)).expect("decode"), msg);
        let mut bytes = encode(&msg);
        bytes.pop();
        assert!(decode(&bytes).is_err());
    }

    /// Stage 0 and stage 1 of a two-stage pipeline, each with its own data plane.
    fn pair(timeout: Duration) -> (PipeLink, PipeLink) {
        let planes = [DataPlane::bind("127.0.0.1:0").expect("bind"), DataPlane::bind("127.0.0.1:0").expect("bind")];
        let peers: Vec<PeerInfo> =
            planes.iter().enumerate().map(|(r, p)| PeerInfo::local(r, p.addr().to_string())).collect();
        let [plane0, plane1] = planes;
        let p1 = peers[1].clone();
        let first = std::thread::spawn(move || {
            PipeLink::connect(&plane0, "job-p", 1, 0, 0, 2, None, Some(p1), timeout).expect("stage 0")
        });
        let second =
            PipeLink::connect(&plane1, "job-p", 1, 1, 1, 2, Some(peers[0].clone()), None, timeout).expect("stage 1");
        (first.join().expect("join"), second)
    }

    #[test]
    fn large_messages_flow_both_ways_in_order() {
        let (mut a, mut b) = pair(Duration::from_secs(10));
        let big: Vec<f32> = (0..3_000_000).map(|i| (i % 977) as f32).collect();
        for mb in 0..3 {
            a.send(Dir::Next, StageMsg::new(MsgKind::Forward, mb, big.clone())).expect("send");
        }
        for mb in 0..3 {
            let got = b.recv(Dir::Prev).expect("recv");
            assert_eq!((got.kind, got.mb as usize), (MsgKind::Forward, mb));
            assert_eq!(got.data, big);
        }
        b.send(Dir::Prev, StageMsg::new(MsgKind::Backward, 0, vec![1.5; 10])).expect("send back");
        assert_eq!(a.recv(Dir::Next).expect("recv back").data, vec![1.5; 10]);
    }

    #[test]
    fn a_neighbour_that_leaves_or_fails_is_named() {
        let (mut a, b) = pair(Duration::from_secs(10));
        let t0 = Instant::now();
        drop(b);
        let err = a.recv(Dir::Next).expect_err("stage 1 is gone");
        assert!(
            err.to_string().contains("rank 1 (worker local-1") && err.to_string().contains("left the pipeline"),
            "{err}"
        );
        assert!(t0.elapsed() < Duration::from_secs(5));

        let (mut a, mut b) = pair(Duration::from_secs(10));
        b.abort("rank 7 (worker w7 on h7) left the pipeline (connection closed)");
        let err = a.recv(Dir::Next).expect_err("aborted");
        assert!(err.to_string().starts_with("rank 1 (worker local-1 on localhost) failed: rank 7 (worker w7"), "{err}");
    }

    #[test]
    fn a_silent_neighbour_fails_the_receive_within_the_timeout() {
        let plane = DataPlane::bind("127.0.0.1:0").expect("bind");
        let addr = plane.addr().to_string();
        let key = LinkKey { job: "job-s".into(), attempt: 1, from: 0, to: 1, channel: PIPE_CHANNEL };
        // A stage-0 process that connects and then freezes: no data, no keep-alives.
        let _frozen = super::super::dataplane::connect_with(&addr, &key, &[], Instant::now() + Duration::from_secs(5))
            .expect("connect");
        let timeout = Duration::from_millis(400);
        let mut b = PipeLink::connect(&plane, "job-s", 1, 1, 1, 2, Some(PeerInfo::local(0, addr)), None, timeout)
            .expect("stage 1");
        let t0 = Instant::now();
        let err = b.recv(Dir::Prev).expect_err("silent");
        assert!(err.to_string().contains("rank 0") && err.to_string().contains("sent nothing"), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    }
}
