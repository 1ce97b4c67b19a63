//! Parameter-server settings: defaults < TOML file < `SHOAL_*` environment < flags.

use serde::{Deserialize, Serialize};
use shoal_common::telemetry::LogFormat;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ParamServerConfig {
    /// Coordinator URL; empty = standalone (serve push/pull only, register nowhere).
    pub coordinator: String,
    /// Address the push/pull service listens on.
    pub listen: String,
    /// Address workers use to reach it; empty = the bound address.
    pub advertise: String,
    /// Where `/metrics` (Prometheus, plain HTTP, read-only) listens; empty = off.
    pub metrics_listen: String,
    /// Name reported to the coordinator; empty = the host name.
    pub hostname: String,
    /// Token the coordinator requires to join (`SHOAL_JOIN_TOKEN`); empty = none.
    pub join_token: String,
    /// PEM certificate and key of the push/pull endpoint (TLS on), also presented to the
    /// coordinator when it asks for a client certificate.
    pub tls_cert: String,
    pub tls_key: String,
    /// PEM CA workers' certificates must chain to (mutual TLS on the push/pull endpoint).
    pub tls_client_ca: String,
    /// PEM CA to trust for the coordinator (TLS on towards it).
    pub tls_ca: String,
    /// Name the coordinator's certificate carries, when not the address dialled.
    pub tls_server_name: String,
    pub connect_timeout_ms: u64,
    pub max_backoff_ms: u64,
    pub log_format: LogFormat,
    pub log: String,
    /// OTLP/gRPC collector to export spans to, `http://HOST:PORT` (`SHOAL_OTLP_ENDPOINT`); empty = off.
    pub otlp_endpoint: String,
}

impl Default for ParamServerConfig {
    fn default() -> Self {
        Self {
            coordinator: "http://127.0.0.1:7470".into(),
            listen: "127.0.0.1:0".into(),
            advertise: String::new(),
            metrics_listen: String::new(),
            hostname: String::new(),
            join_token: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_client_ca: String::new(),
            tls_ca: String::new(),
            tls_server_name: String::new(),
            connect_timeout_ms: 5_000,
            max_backoff_ms: 10_000,
            log_format: LogFormat::Pretty,
            log: "info".into(),
            otlp_endpoint: String::new(),
        }
    }
}

impl ParamServerConfig {
    /// TLS of the push/pull endpoint.
    pub fn server_tls(&self) -> shoal_common::tls::ServerTls {
        shoal_common::tls::ServerTls {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            client_ca: self.tls_client_ca.clone(),
        }
    }

    /// TLS towards the coordinator (reads the files).
    pub fn client_tls(&self) -> Result<shoal_common::tls::ClientTls, String> {
        let (cert, key) =
            if self.tls_ca.is_empty() { ("", "") } else { (self.tls_cert.as_str(), self.tls_key.as_str()) };
        shoal_common::tls::ClientTls::new(&self.tls_ca, cert, key, &self.tls_server_name)
    }

    /// Tokens workers must present: the join token.
    pub fn tokens(&self) -> shoal_common::auth::Tokens {
        shoal_common::auth::Tokens::new("join", vec![("worker".to_owned(), self.join_token.clone())])
    }
}
