//! The data plane: direct TCP links between workers for collectives. Each worker listens on one
//! address; a rank that wants to send to a peer connects there and introduces the link with a
//! handshake naming the job, attempt, sending rank, receiving rank and channel. The acceptor holds
//! arrived links until the receiving job claims them, so ranks can start in any order and nobody
//! polls: a claim waits on a condition variable, with a deadline.
//!
//! Links are authenticated: the acceptor opens with a random challenge, and the connecting rank
//! answers with an HMAC-SHA256 of the challenge and its handshake under the attempt's link key
//! (from the coordinator's assignment, known only to that attempt's ranks). A claim accepts only
//! a link whose answer verifies; others are dropped and logged. The traffic itself is not
//! encrypted.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const MAGIC: &[u8; 8] = b"SHOALDP2";
const CHALLENGE_LEN: usize = 16;
const MAC_LEN: usize = 32;
/// Links nobody claims within this time are dropped.
const UNCLAIMED_TTL: Duration = Duration::from_secs(300);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Identifies one directed link.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LinkKey {
    pub job: String,
    pub attempt: u32,
    pub from: u32,
    pub to: u32,
    /// Distinguishes several links between the same pair (0 = the ring).
    pub channel: u32,
}

impl LinkKey {
    fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(self.job.len() as u16).to_le_bytes());
        out.extend_from_slice(self.job.as_bytes());
        for v in [self.attempt, self.from, self.to, self.channel] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    fn decode(r: &mut impl Read) -> io::Result<Self> {
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not a Shoal data-plane handshake"));
        }
        let mut len = [0u8; 2];
        r.read_exact(&mut len)?;
        let mut job = vec![0u8; u16::from_le_bytes(len) as usize];
        r.read_exact(&mut job)?;
        let mut words = [0u8; 16];
        r.read_exact(&mut words)?;
        let w = |i: usize| u32::from_le_bytes([words[i], words[i + 1], words[i + 2], words[i + 3]]);
        Ok(Self {
            job: String::from_utf8(job)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "job id is not UTF-8"))?,
            attempt: w(0),
            from: w(4),
            to: w(8),
            channel: w(12),
        })
    }
}

/// An arrived link waiting to be claimed, with what proves who opened it.
struct Arrived {
    stream: TcpStream,
    at: Instant,
    /// The challenge sent and the handshake bytes that came back with their MAC.
    challenge: [u8; CHALLENGE_LEN],
    handshake: Vec<u8>,
    mac: [u8; MAC_LEN],
}

#[derive(Default)]
struct Pending {
    links: HashMap<LinkKey, Arrived>,
}

type Keys = Arc<Mutex<HashMap<(String, u32), Vec<u8>>>>;

/// A worker's listening end of the data plane.
#[derive(Clone)]
pub struct DataPlane {
    addr: SocketAddr,
    pending: Arc<(Mutex<Pending>, Condvar)>,
    /// Link keys of the job attempts running here.
    keys: Keys,
}

/// Keeps an attempt's link key registered; dropping it forgets the key.
pub struct Admitted {
    keys: Keys,
    id: (String, u32),
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

fn mac(key: &[u8], challenge: &[u8], handshake: &[u8]) -> ring::hmac::Tag {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(challenge);
    ctx.update(handshake);
    ctx.sign()
}

/// Latency matters for small collectives; large ones use big writes anyway.
pub fn tune(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    if let Some(kb) = std::env::var("SHOAL_RING_SOCKBUF_KB").ok().and_then(|v| v.parse::<i32>().ok()) {
        use std::os::fd::AsRawFd;
        let bytes: i32 = kb * 1024;
        for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
            // SAFETY: setsockopt with a pointer to a live i32 and its size.
            unsafe {
                libc::setsockopt(stream.as_raw_fd(), libc::SOL_SOCKET, opt, (&bytes as *const i32).cast(), 4);
            }
        }
    }
    Ok(())
}

impl DataPlane {
    /// Binds `listen` and starts the acceptor thread (it lives as long as the process).
    pub fn bind(listen: &str) -> io::Result<Self> {
        Self::serve(TcpListener::bind(listen)?)
    }

    pub fn serve(listener: TcpListener) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let pending: Arc<(Mutex<Pending>, Condvar)> = Arc::default();
        let shared = pending.clone();
        std::thread::Builder::new().name("shoal-dataplane".into()).spawn(move || {
            for conn in listener.incoming() {
                let Ok(stream) = conn else { continue };
                let shared = shared.clone();
                // The handshake is read on its own thread so one slow client cannot stall accepts.
                let _ = std::thread::Builder::new().name("shoal-dp-handshake".into()).spawn(move || {
                    if let Err(e) = Self::introduce(stream, &shared) {
                        tracing::debug!(error = %e, "dropped a data-plane connection with a bad handshake");
                    }
                });
            }
        })?;
        Ok(Self { addr, pending, keys: Keys::default() })
    }

    /// Registers the link key of a job attempt running here (an empty key for benchmarks).
    pub fn admit(&self, job: &str, attempt: u32, key: &[u8]) -> Admitted {
        let id = (job.to_owned(), attempt);
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), key.to_vec());
        Admitted { keys: self.keys.clone(), id }
    }

    fn key_of(&self, job: &str, attempt: u32) -> Vec<u8> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).get(&(job.to_owned(), attempt)).cloned().unwrap_or_default()
    }

    fn introduce(mut stream: TcpStream, shared: &(Mutex<Pending>, Condvar)) -> io::Result<()> {
        stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
        let challenge: [u8; CHALLENGE_LEN] = rand::random();
        stream.write_all(&challenge)?;
        let key = LinkKey::decode(&mut stream)?;
        let mut mac = [0u8; MAC_LEN];
        stream.read_exact(&mut mac)?;
        stream.set_read_timeout(None)?;
        stream.set_write_timeout(None)?;
        tune(&stream)?;
        let handshake = key.encode();
        let (lock, arrived) = shared;
        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
        p.links.retain(|_, a| a.at.elapsed() < UNCLAIMED_TTL);
        p.links.insert(key, Arrived { stream, at: Instant::now(), challenge, handshake, mac });
        arrived.notify_all();
        Ok(())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the link `key` has arrived and proved it holds the attempt's link key, or the
    /// deadline passes.
    pub fn accept(&self, key: &LinkKey, deadline: Instant) -> io::Result<TcpStream> {
        let secret = self.key_of(&key.job, key.attempt);
        let (lock, arrived) = &*self.pending;
        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(a) = p.links.remove(key) {
                let signed = [a.challenge.as_slice(), &a.handshake].concat();
                let hmac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
                if ring::hmac::verify(&hmac_key, &signed, &a.mac).is_ok() {
                    return Ok(a.stream);
                }
                let from = a.stream.peer_addr().map(|s| s.to_string()).unwrap_or_default();
                tracing::warn!(job_id = %key.job, attempt = key.attempt, from_rank = key.from, peer = %from, "dropped a data-plane link that failed authentication (wrong link key)");
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "the peer did not connect in time"));
            }
            p = arrived.wait_timeout(p, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

impl DataPlane {
    /// Opens the link `key` to the data plane at `addr` with the attempt's link key, retrying
    /// refused connections until the deadline (the peer may still be starting).
    pub fn connect(&self, addr: &str, key: &LinkKey, deadline: Instant) -> io::Result<TcpStream> {
        connect_with(addr, key, &self.key_of(&key.job, key.attempt), deadline)
    }
}

/// Opens the link `key` proving `secret`; see [`DataPlane::connect`].
pub fn connect_with(addr: &str, key: &LinkKey, secret: &[u8], deadline: Instant) -> io::Result<TcpStream> {
    let target = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("`{addr}` resolves to nothing")))?;
    let mut pause = Duration::from_millis(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, format!("could not connect to {addr} in time")));
        }
        match TcpStream::connect_timeout(&target, left) {
            Ok(mut stream) => {
                tune(&stream)?;
                stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
                stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
                let mut challenge = [0u8; CHALLENGE_LEN];
                stream.read_exact(&mut challenge)?;
                let handshake = key.encode();
                let mut hello = handshake.clone();
                hello.extend_from_slice(mac(secret, &challenge, &handshake).as_ref());
                stream.write_all(&hello)?;
                stream.set_write_timeout(None)?;
                stream.set_read_timeout(None)?;
                return Ok(stream);
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset) => {
                std::thread::sleep(pause.min(left));
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(from: u32, to: u32) -> LinkKey {
        LinkKey { job: "job-x".into(), attempt: 1, from, to, channel: 0 }
    }

    #[test]
    fn links_arrive_in_any_order_and_are_claimed_by_key() {
        let plane = DataPlane::bind("127.0.0.1:0").expect("bind");
        let addr = plane.addr().to_string();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut a = plane.connect(&addr, &key(1, 0), deadline).expect("connect");
        let mut b = plane.connect(&addr, &key(2, 0), deadline).expect("connect");
        let mut got_b = plane.accept(&key(2, 0), deadline).expect("claim b");
        let mut got_a = plane.accept(&key(1, 0), deadline).expect("claim a");
        a.write_all(b"from-a").expect("write");
        b.write_all(b"from-b").expect("write");
        let mut buf = [0u8; 6];
        got_a.read_exact(&mut buf).expect("read");
        assert_eq!(&buf, b"from-a");
        got_b.read_exact(&mut buf).expect("read");
        assert_eq!(&buf, b"from-b");
    }

    #[test]
    fn a_link_without_the_attempts_key_is_dropped() {
        let plane = DataPlane::bind("127.0.0.1:0").expect("bind");
        let _admitted = plane.admit("job-x", 1, b"the-real-link-key");
        let addr = plane.addr().to_string();
        let deadline = Instant::now() + Duration::from_secs(5);
        let _impostor = connect_with(&addr, &key(1, 0), b"a-guessed-key", deadline).expect("connect");
        let err = plane.accept(&key(1, 0), Instant::now() + Duration::from_millis(300)).expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "the impostor's link was dropped, nobody else came");
        // The real peer still gets through afterwards.
        let mut real = connect_with(&addr, &key(1, 0), b"the-real-link-key", deadline).expect("connect");
        let mut got = plane.accept(&key(1, 0), deadline).expect("claim");
        real.write_all(b"ok").expect("write");
        let mut buf = [0u8; 2];
        got.read_exact(&mut buf).expect("read");
        assert_eq!(&buf, b"ok");
    }

    #[test]
    fn a_missing_link_times_out() {
        let plane = DataPlane::bind("127.0.0.1:0").expect("bind");
        let err = plane.accept(&key(3, 0), Instant::now() + Duration::from_millis(100)).expect_err("nobody connects");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
