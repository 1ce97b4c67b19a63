//! A few lines of HTTP/1.1 over a real TCP connection, for what the tests read over HTTP (the
//! coordinator's and workers' `/metrics`, Prometheus's query API), with a deadline on every wait.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The status code and body of `GET path`, with `authorization: Bearer token` when one is given.
pub fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Result<(u16, String)> {
    let limit = Duration::from_secs(10);
    let mut stream = TcpStream::connect_timeout(&addr, limit).with_context(|| format!("connect {addr}"))?;
    stream.set_read_timeout(Some(limit))?;
    stream.set_write_timeout(Some(limit))?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).with_context(|| format!("read the answer to GET {path}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else { bail!("no HTTP header in {text:?}") };
    let status: u16 = head.split_whitespace().nth(1).context("no status code")?.parse()?;
    let chunked = head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
    Ok((status, if chunked { dechunk(body)? } else { body.to_owned() }))
}

/// The body of a chunked answer.
fn dechunk(mut rest: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").context("a chunk without its size line")?;
        let size = usize::from_str_radix(size.trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(after.get(..size).context("a chunk shorter than its size")?);
        rest = after.get(size + 2..).unwrap_or_default();
    }
}

/// Percent-encodes a query-string value.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
