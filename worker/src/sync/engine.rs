//! Executes a ring schedule (chunk sends to the next rank, chunk receives from the previous one)
//! on one thread: both links are non-blocking and `poll(2)` says which can move. Receiving,
//! reducing and sending interleave chunk by chunk without extra threads or locks, and every wait
//! has a deadline. Between data frames a sender that has nothing ready sends keep-alives, so its
//! neighbour can tell a rank blocked behind someone else from a stalled one.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::frame::{self, HEADER, Kind};

#[derive(Clone, Copy, Debug)]
pub enum Combine {
    Sum,
    Max,
    Copy,
}

/// Send `range` of the buffer once `after` receives have completed.
pub struct SendItem {
    pub range: Range<usize>,
    pub after: usize,
}

/// Receive into `range` of the buffer, combining with what is there.
pub struct RecvItem {
    pub range: Range<usize>,
    pub combine: Combine,
}

/// How a schedule broke, from this rank's point of view.
#[derive(Debug)]
pub enum Failure {
    /// The previous rank relayed an abort naming the culprit.
    Relayed { culprit: usize, reason: String },
    /// The link to this peer broke (it died or closed).
    Gone { peer: usize, detail: String },
    /// This peer sent, or accepted, nothing for too long.
    Silent { peer: usize, waited: Duration },
    /// This rank could not go on (protocol violation, local error).
    Local(String),
}

/// The two links and who is at their other ends.
pub struct Links<'a> {
    pub next: &'a mut TcpStream,
    pub prev: &'a mut TcpStream,
    pub next_rank: usize,
    pub prev_rank: usize,
}

enum Outgoing {
    Idle,
    /// Header bytes written so far, payload bytes written so far, the send item (None: keep-alive).
    Frame {
        header: [u8; HEADER],
        header_done: usize,
        payload_done: usize,
        item: Option<usize>,
    },
}

enum Incoming {
    Header { bytes: [u8; HEADER], done: usize },
    Payload { item: usize, done: usize },
}

fn would_block(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
}

fn gone(peer: usize, e: &io::Error) -> Failure {
    let detail = match e.kind() {
        io::ErrorKind::UnexpectedEof => "connection closed".to_owned(),
        _ => e.to_string(),
    };
    Failure::Gone { peer, detail }
}

/// Waits until `next` can take bytes (if `want_out`) or `prev` has bytes (if `want_in`).
fn wait(links: &Links<'_>, want_out: bool, want_in: bool, limit: Duration) -> io::Result<(bool, bool)> {
    let mut fds = [
        libc::pollfd { fd: links.next.as_raw_fd(), events: if want_out { libc::POLLOUT } else { 0 }, revents: 0 },
        libc::pollfd { fd: links.prev.as_raw_fd(), events: if want_in { libc::POLLIN } else { 0 }, revents: 0 },
    ];
    let ms = limit.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: `fds` is a valid array of two pollfd structs for the duration of the call.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok((false, false)) } else { Err(e) };
    }
    let err = libc::POLLERR | libc::POLLHUP;
    Ok((fds[0].revents & (libc::POLLOUT | err) != 0, fds[1].revents & (libc::POLLIN | err) != 0))
}

/// Runs the schedule over `buf`. `timeout` bounds every wait for a peer.
pub fn execute(
    links: &mut Links<'_>,
    buf: &mut [f32],
    sends: &[SendItem],
    recvs: &[RecvItem],
    scratch: &mut Vec<f32>,
    timeout: Duration,
    keepalive: Duration,
) -> Result<(), Failure> {
    let largest = recvs.iter().map(|r| r.range.len()).max().unwrap_or(0);
    if scratch.len() < largest {
        scratch.resize(largest, 0.0);
    }
    let mut out = Outgoing::Idle;
    let mut next_send = 0;
    let mut incoming = Incoming::Header { bytes: [0; HEADER], done: 0 };
    let mut received = 0;
    let now = Instant::now();
    let (mut last_rx, mut last_data, mut last_tx, mut last_keepalive) = (now, now, now, now);
    // Try both links before sleeping in poll: while data flows, most calls make progress anyway.
    let mut progressed = true;

    loop {
        if matches!(out, Outgoing::Idle) {
            if next_send < sends.len() && sends[next_send].after <= received {
                let len = sends[next_send].range.len() * 4;
                out = Outgoing::Frame {
                    header: frame::header(Kind::Data, len),
                    header_done: 0,
                    payload_done: 0,
                    item: Some(next_send),
                };
                last_tx = Instant::now();
            } else if received == recvs.len() && next_send == sends.len() {
                return Ok(());
            } else if last_keepalive.elapsed() >= keepalive {
                out = Outgoing::Frame {
                    header: frame::header(Kind::KeepAlive, 0),
                    header_done: 0,
                    payload_done: 0,
                    item: None,
                };
                last_keepalive = Instant::now();
                last_tx = last_keepalive;
            }
        }
        let want_out = !matches!(out, Outgoing::Idle);
        let want_in = received < recvs.len() || matches!(incoming, Incoming::Payload { .. });
        let (can_out, can_in) = if progressed {
            (want_out, want_in)
        } else {
            wait(links, want_out, want_in, keepalive.min(timeout))
                .map_err(|e| Failure::Local(format!("poll failed: {e}")))?
        };
        progressed = false;

        if can_in {
            loop {
                match &mut incoming {
                    Incoming::Header { bytes, done } => match links.prev.read(&mut bytes[*done..]) {
                        Ok(0) => return Err(gone(links.prev_rank, &io::ErrorKind::UnexpectedEof.into())),
                        Ok(n) => {
                            last_rx = Instant::now();
                            progressed = true;
                            *done += n;
                            if *done < HEADER {
                                continue;
                            }
                            let (kind, len) = frame::read_header(&mut &bytes[..])
                                .map_err(|e| Failure::Local(format!("bad frame from rank {}: {e}", links.prev_rank)))?;
                            match kind {
                                Kind::KeepAlive => incoming = Incoming::Header { bytes: [0; HEADER], done: 0 },
                                Kind::Abort => {
                                    let mut payload = vec![0u8; len];
                                    links.prev.set_nonblocking(false).map_err(|e| gone(links.prev_rank, &e))?;
                                    links.prev.read_exact(&mut payload).map_err(|e| gone(links.prev_rank, &e))?;
                                    let (culprit, reason) = frame::parse_abort(&payload);
                                    return Err(Failure::Relayed { culprit, reason });
                                }
                                Kind::Data => {
                                    let Some(item) = recvs.get(received) else {
                                        return Err(Failure::Local(format!(
                                            "rank {} sent more data than the schedule has",
                                            links.prev_rank
                                        )));
                                    };
                                    if len != item.range.len() * 4 {
                                        return Err(Failure::Local(format!(
                                            "protocol error: rank {} sent {len} bytes where {} were due",
                                            links.prev_rank,
                                            item.range.len() * 4
                                        )));
                                    }
                                    incoming = Incoming::Payload { item: received, done: 0 };
                                }
                            }
                        }
                        Err(e) if would_block(&e) => break,
                        Err(e) => return Err(gone(links.prev_rank, &e)),
                    },
                    Incoming::Payload { item, done } => {
                        let r = &recvs[*item];
                        let total = r.range.len() * 4;
                        let target: &mut [u8] = match r.combine {
                            Combine::Copy => bytemuck::cast_slice_mut(&mut buf[r.range.clone()]),
                            _ => bytemuck::cast_slice_mut(&mut scratch[..r.range.len()]),
                        };
                        if *done < total {
                            match links.prev.read(&mut target[*done..]) {
                                Ok(0) => return Err(gone(links.prev_rank, &io::ErrorKind::UnexpectedEof.into())),
                                Ok(n) => {
                                    last_rx = Instant::now();
                                    progressed = true;
                                    *done += n;
                                }
                                Err(e) if would_block(&e) => break,
                                Err(e) => return Err(gone(links.prev_rank, &e)),
                            }
                        }
                        if *done == total {
                            let dst = &mut buf[r.range.clone()];
                            let src = &scratch[..r.range.len()];
                            match r.combine {
                                Combine::Copy => {}
                                Combine::Sum => dst.iter_mut().zip(src).for_each(|(d, s)| *d += s),
                                Combine::Max => dst.iter_mut().zip(src).for_each(|(d, s)| *d = d.max(*s)),
                            }
                            received += 1;
                            last_data = Instant::now();
                            incoming = Incoming::Header { bytes: [0; HEADER], done: 0 };
                            if received == recvs.len() {
                                break;
                            }
                        }
                    }
                }
            }
        }

        if can_out {
            while let Outgoing::Frame { header, header_done, payload_done, item } = &mut out {
                let result = if *header_done < HEADER {
                    links.next.write(&header[*header_done..]).map(|n| *header_done += n)
                } else if let Some(i) = item {
                    let bytes: &[u8] = bytemuck::cast_slice(&buf[sends[*i].range.clone()]);
                    if *payload_done < bytes.len() {
                        links.next.write(&bytes[*payload_done..]).map(|n| *payload_done += n)
                    } else {
                        Ok(())
                    }
                } else {
                    Ok(())
                };
                match result {
                    Ok(()) => {
                        last_tx = Instant::now();
                        progressed = true;
                        let payload_len = item.map_or(0, |i| sends[i].range.len() * 4);
                        if *header_done == HEADER && *payload_done == payload_len {
                            if item.is_some() {
                                next_send += 1;
                            }
                            out = Outgoing::Idle;
                        }
                    }
                    Err(e) if would_block(&e) => break,
                    Err(e) => return Err(gone(links.next_rank, &e)),
                }
            }
        }

        let now = Instant::now();
        if want_out && now.duration_since(last_tx) > timeout {
            return Err(Failure::Silent { peer: links.next_rank, waited: now.duration_since(last_tx) });
        }
        if want_in && now.duration_since(last_rx) > timeout {
            return Err(Failure::Silent { peer: links.prev_rank, waited: now.duration_since(last_rx) });
        }
        if want_in && now.duration_since(last_data) > 2 * timeout {
            // Keep-alives but no data: alive, but not making progress.
            return Err(Failure::Silent { peer: links.prev_rank, waited: now.duration_since(last_data) });
        }
    }
}
