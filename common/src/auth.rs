//! Bearer tokens on gRPC calls: clients present `authorization: Bearer <token>`; the coordinator
//! checks client calls against its client tokens and worker/parameter-server calls against the
//! join token. Comparison takes the same time wherever the tokens differ.

use std::path::Path;

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Status};

pub const HEADER: &str = "authorization";

/// Adds `authorization: Bearer <token>` to a request (nothing when `token` is empty).
pub fn attach<T>(request: &mut Request<T>, token: &str) {
    if token.is_empty() {
        return;
    }
    if let Ok(v) = MetadataValue::try_from(format!("Bearer {token}")) {
        request.metadata_mut().insert(HEADER, v);
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Named tokens that grant access to one service; empty = the service is open.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    /// (who, token)
    entries: Vec<(String, String)>,
    /// What the tokens are for, in error messages ("client", "join").
    kind: &'static str,
}

impl Tokens {
    pub fn new(kind: &'static str, entries: Vec<(String, String)>) -> Self {
        Self { entries: entries.into_iter().filter(|(_, t)| !t.is_empty()).collect(), kind }
    }

    pub fn is_open(&self) -> bool {
        self.entries.is_empty()
    }

    /// Who the request's token belongs to, or UNAUTHENTICATED.
    pub fn check(&self, metadata: &MetadataMap) -> Result<Option<String>, Status> {
        if self.is_open() {
            return Ok(None);
        }
        let Some(value) = metadata.get(HEADER) else {
            return Err(Status::unauthenticated(format!(
                "this coordinator requires a {} token (authorization: Bearer <token>)",
                self.kind
            )));
        };
        let presented = value.to_str().unwrap_or_default().strip_prefix("Bearer ").unwrap_or_default().trim();
        // Check every entry so the time taken does not depend on which one matched.
        let mut who = None;
        for (name, token) in &self.entries {
            if same(presented.as_bytes(), token.as_bytes()) && who.is_none() {
                who = Some(name.clone());
            }
        }
        who.map(Some).ok_or_else(|| Status::unauthenticated(format!("invalid {} token", self.kind)))
    }
}

/// Reads a tokens file: one `NAME TOKEN` pair per line; `#` starts a comment.
pub fn read_tokens_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("tokens file {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(name), Some(token), None) if token.len() >= 16 => out.push((name.to_owned(), token.to_owned())),
            (Some(_), Some(_), None) => {
                return Err(format!(
                    "tokens file {} line {}: tokens must be at least 16 characters",
                    path.display(),
                    n + 1
                ));
            }
            _ => return Err(format!("tokens file {} line {}: expected `NAME TOKEN`", path.display(), n + 1)),
        }
    }
    Ok(out)
}

/// A fresh random token (for `shoal local`).
pub fn generate() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..32).map(|_| format!("{:x}", rng.random_range(0..16u8))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(token: Option<&str>) -> MetadataMap {
        let mut r = Request::new(());
        if let Some(t) = token {
            attach(&mut r, t);
        }
        r.metadata().clone()
    }

    #[test]
    fn tokens_are_checked_and_named() {
        let t = Tokens::new("client", vec![("alice".into(), "a".repeat(20)), ("bob".into(), "b".repeat(20))]);
        assert_eq!(t.check(&md(Some(&"b".repeat(20)))).expect("ok"), Some("bob".into()));
        let missing = t.check(&md(None)).expect_err("missing");
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        assert!(missing.message().contains("requires a client token"));
        let wrong = t.check(&md(Some("nope"))).expect_err("wrong");
        assert_eq!(wrong.message(), "invalid client token");
        assert!(Tokens::new("join", vec![]).check(&md(None)).expect("open").is_none());
        assert_eq!(generate().len(), 32);
        assert_ne!(generate(), generate());
    }

    #[test]
    fn tokens_files_are_parsed_strictly() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("tokens");
        std::fs::write(&p, "# users\nalice 0123456789abcdef0123\n\nbob fedcba9876543210fedc # ops\n").expect("write");
        assert_eq!(read_tokens_file(&p).expect("parse").len(), 2);
        std::fs::write(&p, "alice short\n").expect("write");
        assert!(read_tokens_file(&p).expect_err("short").contains("line 1: tokens must be at least 16"));
        std::fs::write(&p, "alice a b\n").expect("write");
        assert!(read_tokens_file(&p).expect_err("three").contains("expected `NAME TOKEN`"));
    }
}
