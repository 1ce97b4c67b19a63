//! Framing on data-plane links: a 16-byte header (magic, kind, payload length) before every
//! payload. Keep-alives let a waiting rank tell a live but blocked neighbour from a stalled one;
//! an abort names the rank that broke the collective, so every rank blames the same one.

use std::io::{self, Read, Write};

const MAGIC: u32 = 0x5348_4446;
pub const HEADER: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Data,
    KeepAlive,
    /// Payload: culprit rank (u32 LE) followed by a UTF-8 reason.
    Abort,
}

impl Kind {
    fn code(self) -> u32 {
        match self {
            Kind::Data => 1,
            Kind::KeepAlive => 2,
            Kind::Abort => 3,
        }
    }
}

pub fn header(kind: Kind, len: usize) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&kind.code().to_le_bytes());
    h[8..].copy_from_slice(&(len as u64).to_le_bytes());
    h
}

/// Reads one header; `Err(InvalidData)` on garbage.
pub fn read_header(r: &mut impl Read) -> io::Result<(Kind, usize)> {
    let mut h = [0u8; HEADER];
    r.read_exact(&mut h)?;
    let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    if word(0) != MAGIC {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "bad frame magic"));
    }
    let kind = match word(4) {
        1 => Kind::Data,
        2 => Kind::KeepAlive,
        3 => Kind::Abort,
        other => return Err(io::Error::new(io::ErrorKind::InvalidData, format!("unknown frame kind {other}"))),
    };
    let len = u64::from_le_bytes(h[8..].try_into().unwrap_or([0; 8])) as usize;
    if kind != Kind::Data && len > 64 * 1024 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "oversized control frame"));
    }
    Ok((kind, len))
}

pub fn write_frame(w: &mut impl Write, kind: Kind, payload: &[u8]) -> io::Result<()> {
    w.write_all(&header(kind, payload.len()))?;
    w.write_all(payload)
}

pub fn abort_payload(culprit: usize, reason: &str) -> Vec<u8> {
    let mut p = (culprit as u32).to_le_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

pub fn parse_abort(payload: &[u8]) -> (usize, String) {
    if payload.len() < 4 {
        return (usize::MAX, String::new());
    }
    let culprit = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
    (culprit, String::from_utf8_lossy(&payload[4..]).into_owned())
}
