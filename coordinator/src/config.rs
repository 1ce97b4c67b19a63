//! Coordinator settings: defaults < TOML file < `SHOAL_*` environment < flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_common::telemetry::LogFormat;

use crate::state::Liveness;

/// A setting the coordinator cannot run with; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("listen: `{listen}` is not an address (host:port): {source}")]
    Listen { listen: String, source: std::net::AddrParseError },
    #[error(
        "listen: {addr} is not a loopback address and TLS is off (tls_cert, tls_key): traffic (tokens \
         included) would cross the network in clear; configure TLS, or set insecure_listen = true \
         (--insecure-listen) to accept that"
    )]
    InsecureListen { addr: SocketAddr },
    /// A certificate, key or CA file could not be loaded (the reason names the file).
    #[error("{reason}")]
    Tls { reason: String },
    /// The tokens file could not be read (the reason names the file).
    #[error("{reason}")]
    TokensFile { path: String, reason: String },
    /// `http_listen` is not an address, or not loopback without `insecure_listen` (the message
    /// names the key), or cannot be bound.
    #[error(transparent)]
    Http(#[from] shoal_common::http_server::ServeError),
}

/// What the HTTP port does about TLS when the gRPC port has it (with TLS off, it is plain HTTP).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HttpTls {
    /// HTTPS with the same certificate, asking for client certificates as the gRPC port does.
    #[default]
    Same,
    /// HTTPS with the same certificate but no client certificates (browsers rarely have one);
    /// the client tokens still guard every page.
    ServerOnly,
    /// Plain HTTP (loopback only, unless `insecure_listen`): for a port reached through a
    /// proxy that terminates TLS, or `shoal local`'s throw-away certificates.
    Off,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CoordinatorConfig {
    /// Address the gRPC server listens on (`SHOAL_LISTEN`).
    pub listen: String,
    /// Address of the HTTP port (the dashboard and `/metrics`), `SHOAL_HTTP_LISTEN`; empty = off.
    /// HTTPS with the gRPC port's certificate when TLS is on (see `http_tls`); plain HTTP listens
    /// on loopback only, unless `insecure_listen`.
    pub http_listen: String,
    /// TLS on the HTTP port when the gRPC port has it (`SHOAL_HTTP_TLS`).
    pub http_tls: HttpTls,
    /// SQLite database file (`SHOAL_DATABASE`).
    pub database: PathBuf,
    /// How often workers heartbeat.
    pub heartbeat_interval_ms: u64,
    /// A worker silent for longer is lost, and its jobs fail.
    pub heartbeat_timeout_ms: u64,
    /// A worker whose session closed is lost unless it reconnects within this time.
    pub reconnect_grace_ms: u64,
    /// After a coordinator restart, the workers it knew are lost unless they reconnect within
    /// this time (longer than `reconnect_grace_ms`: they may be backing off).
    pub restart_grace_ms: u64,
    pub log_format: LogFormat,
    /// Log filter in `RUST_LOG` syntax.
    pub log: String,
    /// OTLP/gRPC collector to export spans to, `http://HOST:PORT` (`SHOAL_OTLP_ENDPOINT`); empty = off.
    pub otlp_endpoint: String,
    /// Bearer token clients must present (`SHOAL_CLIENT_TOKEN`); empty = none.
    pub client_token: String,
    /// File of per-user client tokens, one `NAME TOKEN` per line (`SHOAL_TOKENS_FILE`).
    pub tokens_file: String,
    /// Token workers and parameter servers must present to join (`SHOAL_JOIN_TOKEN`); empty = none.
    pub join_token: String,
    /// Listen on a non-loopback address although TLS is off (traffic in clear).
    pub insecure_listen: bool,
    /// PEM certificate and key of this endpoint: with them every connection is TLS (`SHOAL_TLS_CERT`, `SHOAL_TLS_KEY`).
    pub tls_cert: String,
    pub tls_key: String,
    /// PEM CA that clients' certificates must chain to: mutual TLS (`SHOAL_TLS_CLIENT_CA`).
    pub tls_client_ca: String,
    /// Most workers one job may occupy (data ranks x pipeline stages); 0 = no limit.
    pub max_workers_per_job: u32,
    /// Most trials one search may run; 0 = no limit beyond the spec's.
    pub max_trials_per_search: u32,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7470".into(),
            http_listen: "127.0.0.1:7473".into(),
            http_tls: HttpTls::Same,
            database: PathBuf::from("shoal-data/coordinator.db"),
            heartbeat_interval_ms: 2_000,
            heartbeat_timeout_ms: 10_000,
            reconnect_grace_ms: 10_000,
            restart_grace_ms: 30_000,
            log_format: LogFormat::Pretty,
            log: "info".into(),
            otlp_endpoint: String::new(),
            client_token: String::new(),
            tokens_file: String::new(),
            join_token: String::new(),
            insecure_listen: false,
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_client_ca: String::new(),
            max_workers_per_job: 0,
            max_trials_per_search: 0,
        }
    }
}

impl CoordinatorConfig {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<SocketAddr, ConfigError> {
        let addr: SocketAddr =
            self.listen.parse().map_err(|source| ConfigError::Listen { listen: self.listen.clone(), source })?;
        let invalid = |key, reason: &str| Err(ConfigError::Invalid { key, reason: reason.to_owned() });
        if self.heartbeat_interval_ms == 0 {
            return invalid("heartbeat_interval_ms", "must be > 0");
        }
        if self.heartbeat_timeout_ms <= self.heartbeat_interval_ms {
            return invalid("heartbeat_timeout_ms", "must be larger than heartbeat_interval_ms");
        }
        if self.reconnect_grace_ms == 0 {
            return invalid("reconnect_grace_ms", "must be > 0");
        }
        if self.database.as_os_str().is_empty() {
            return invalid("database", "must not be empty");
        }
        self.tls().load().map_err(|reason| ConfigError::Tls { reason })?;
        if !addr.ip().is_loopback() && !self.insecure_listen && !self.tls().enabled() {
            return Err(ConfigError::InsecureListen { addr });
        }
        self.http_addr()?;
        for (key, token) in [("client_token", &self.client_token), ("join_token", &self.join_token)] {
            if !token.is_empty() && token.len() < 16 {
                return invalid(key, "must be at least 16 characters");
            }
        }
        Ok(addr)
    }

    /// The HTTP port's address, `None` when it is off.
    pub fn http_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.http_listen.is_empty() {
            return Ok(None);
        }
        let https = self.http_tls != HttpTls::Off && self.tls().enabled();
        let addr =
            shoal_common::http_server::parse_listen("http_listen", &self.http_listen, self.insecure_listen || https)?;
        Ok(Some(addr))
    }

    /// The HTTP port's TLS, `None` for plain HTTP.
    pub fn http_rustls(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, ConfigError> {
        let tls = match self.http_tls {
            HttpTls::Off => return Ok(None),
            HttpTls::Same => self.tls(),
            HttpTls::ServerOnly => shoal_common::tls::ServerTls { client_ca: String::new(), ..self.tls() },
        };
        tls.rustls().map_err(|reason| ConfigError::Tls { reason })
    }

    /// Tokens for the client API: `client_token` (as user "default") and the tokens file.
    pub fn client_tokens(&self) -> Result<shoal_common::auth::Tokens, ConfigError> {
        let mut entries = vec![("default".to_owned(), self.client_token.clone())];
        if !self.tokens_file.is_empty() {
            let path = std::path::Path::new(&self.tokens_file);
            let read = shoal_common::auth::read_tokens_file(path)
                .map_err(|reason| ConfigError::TokensFile { path: self.tokens_file.clone(), reason })?;
            entries.extend(read);
        }
        Ok(shoal_common::auth::Tokens::new("client", entries))
    }

    pub fn join_tokens(&self) -> shoal_common::auth::Tokens {
        shoal_common::auth::Tokens::new("join", vec![("worker".to_owned(), self.join_token.clone())])
    }

    pub fn tls(&self) -> shoal_common::tls::ServerTls {
        shoal_common::tls::ServerTls {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            client_ca: self.tls_client_ca.clone(),
        }
    }

    pub fn liveness(&self) -> Liveness {
        Liveness {
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms),
            heartbeat_timeout: Duration::from_millis(self.heartbeat_timeout_ms),
            reconnect_grace: Duration::from_millis(self.reconnect_grace_ms),
            restart_grace: Duration::from_millis(self.restart_grace_ms.max(self.reconnect_grace_ms)),
        }
    }
}
