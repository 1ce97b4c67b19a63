//! Who may see the dashboard: the coordinator's client tokens, presented as a bearer token
//! (`authorization: Bearer TOKEN`, as Prometheus and scripts send it) or as the cookie the login
//! page sets once the token is typed in (or passed in the URL's fragment, `#token=`, which never
//! reaches the server). Requests that change something (cancel) also need the header
//! `x-shoal-dashboard`, which a cross-site form cannot send.

use axum::http::HeaderMap;
use shoal_common::auth::Tokens;
use tonic::metadata::{MetadataMap, MetadataValue};

/// The cookie holding the token.
pub const COOKIE: &str = "shoal_token";
/// The header the dashboard's own script sends with requests that change something.
pub const ACTION_HEADER: &str = "x-shoal-dashboard";

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No token came with it.
    Missing,
    /// A token came and is not one of the client tokens.
    Wrong,
}

impl Refusal {
    pub fn message(&self) -> &'static str {
        match self {
            Refusal::Missing => "this coordinator requires a client token",
            Refusal::Wrong => "the token was refused: it is not one of this coordinator's client tokens",
        }
    }
}

/// Checks the request's bearer token, else its cookie, against `tokens`.
pub fn check(tokens: &Tokens, headers: &HeaderMap) -> Result<(), Refusal> {
    if tokens.is_open() {
        return Ok(());
    }
    let bearer = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let Some(bearer) = bearer.or_else(|| cookie(headers).map(|t| format!("Bearer {t}"))) else {
        return Err(Refusal::Missing);
    };
    let mut metadata = MetadataMap::new();
    let value = MetadataValue::try_from(bearer).map_err(|_| Refusal::Wrong)?;
    metadata.insert(shoal_common::auth::HEADER, value);
    tokens.check(&metadata).map(|_| ()).map_err(|_| Refusal::Wrong)
}

/// Whether a request that changes something came from the dashboard's script.
pub fn is_action(headers: &HeaderMap) -> bool {
    headers.contains_key(ACTION_HEADER)
}

/// The token in the request's cookie, percent-decoded.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('=').map(percent_decode))
        .filter(|t| !t.is_empty())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("a header value"));
        }
        h
    }

    #[test]
    fn a_token_passes_as_bearer_or_cookie_and_a_wrong_one_is_told_apart_from_none() {
        let tokens = Tokens::new("client", vec![("ana".into(), "s3cret token/16+chars".into())]);
        assert_eq!(check(&tokens, &headers(&[])), Err(Refusal::Missing));
        assert_eq!(check(&tokens, &headers(&[("authorization", "Bearer s3cret token/16+chars")])), Ok(()));
        let cookie = "theme=dark; shoal_token=s3cret%20token%2F16%2Bchars";
        assert_eq!(check(&tokens, &headers(&[("cookie", cookie)])), Ok(()));
        assert_eq!(check(&tokens, &headers(&[("cookie", "shoal_token=nope")])), Err(Refusal::Wrong));
        assert_eq!(check(&tokens, &headers(&[("cookie", "shoal_token=")])), Err(Refusal::Missing));
        assert_eq!(check(&Tokens::default(), &headers(&[])), Ok(()));
    }
}
