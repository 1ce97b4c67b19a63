//! The data plane: direct TCP links between workers for collectives. Each worker listens on one
//! address; a rank that wants to send to a peer connects there and introduces the link with a
//! handshake naming the job, attempt, sending rank, receiving rank and channel. The acceptor holds
//! arrived links until the receiving job claims them, so ranks can start in any order and nobody
//! polls: a claim waits on a condition variable, with a deadline.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const MAGIC: &[u8; 8] = b"SHOALDP1";
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

#[derive(Default)]
struct Pending {
    links: HashMap<LinkKey, (TcpStream, Instant)>,
}

/// A worker's listening end of the data plane.
#[derive(Clone)]
pub struct DataPlane {
    addr: SocketAddr,
    pending: Arc<(Mutex<Pending>, Condvar)>,
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
        Ok(Self { addr, pending })
    }

    fn introduce(mut stream: TcpStream, shared: &(Mutex<Pending>, Condvar)) -> io::Result<()> {
        stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        let key = LinkKey::decode(&mut stream)?;
        stream.set_read_timeout(None)?;
        tune(&stream)?;
        let (lock, arrived) = shared;
        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
        p.links.retain(|_, (_, at)| at.elapsed() < UNCLAIMED_TTL);
        p.links.insert(key, (stream, Instant::now()));
        arrived.notify_all();
        Ok(())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the link `key` has arrived, or the deadline passes.
    pub fn accept(&self, key: &LinkKey, deadline: Instant) -> io::Result<TcpStream> {
        let (lock, arrived) = &*self.pending;
        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some((stream, _)) = p.links.remove(key) {
                return Ok(stream);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "the peer did not connect in time"));
            }
            p = arrived.wait_timeout(p, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// Opens the link `key` to the data plane at `addr`, retrying refused connections until the
/// deadline (the peer may still be starting).
pub fn connect(addr: &str, key: &LinkKey, deadline: Instant) -> io::Result<TcpStream> {
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
                stream.write_all(&key.encode())?;
                stream.set_write_timeout(None)?;
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
        let mut a = connect(&addr, &key(1, 0), deadline).expect("connect");
        let mut b = connect(&addr, &key(2, 0), deadline).expect("connect");
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
    fn a_missing_link_times_out() {
        let plane = DataPlane::bind("127.0.0.1:0").expect("bind");
        let err = plane.accept(&key(3, 0), Instant::now() + Duration::from_millis(100)).expect_err("nobody connects");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
