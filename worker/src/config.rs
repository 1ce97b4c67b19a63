//! Worker settings: defaults < TOML file < `SHOAL_*` environment < flags.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_common::telemetry::LogFormat;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerConfig {
    /// Coordinator URL (`SHOAL_COORDINATOR`).
    pub coordinator: String,
    /// CPU cores offered to jobs; 0 = all detected.
    pub cpus: u32,
    /// Memory offered to jobs in MiB; 0 = all detected.
    pub memory_mb: u64,
    /// Where the data plane (peer traffic) listens.
    pub data_listen: String,
    /// Where `/metrics` (Prometheus, plain HTTP, read-only) listens; empty = off.
    pub metrics_listen: String,
    /// Address peers use to reach the data plane; empty = the bound address.
    pub data_advertise: String,
    /// Root of job checkpoints (one folder per job).
    pub checkpoint_dir: PathBuf,
    /// Checkpoints kept per job.
    pub keep_checkpoints: usize,
    /// Deadline of one connection attempt to the coordinator.
    pub connect_timeout_ms: u64,
    /// Longest pause between reconnection attempts.
    pub max_backoff_ms: u64,
    /// How long a drain (SIGTERM) may take before the worker exits anyway.
    pub drain_timeout_ms: u64,
    /// Name reported to the coordinator; empty = the host name.
    pub hostname: String,
    /// Token the coordinator requires to join (`SHOAL_JOIN_TOKEN`); empty = none.
    pub join_token: String,
    /// Folders (comma-separated) that dataset files, parent checkpoints and external trials'
    /// working folders must lie in, after resolving `..` and symlinks (`SHOAL_DATA_ROOTS`); empty =
    /// anywhere this process can read. The checkpoint folder is always allowed.
    pub data_roots: String,
    /// PEM CA to trust: with it, connections to the coordinator and parameter servers use TLS
    /// (`SHOAL_TLS_CA`).
    pub tls_ca: String,
    /// PEM certificate and key presented when a server asks for one (mutual TLS).
    pub tls_cert: String,
    pub tls_key: String,
    /// Name servers' certificates must carry when it differs from the address dialled.
    pub tls_server_name: String,
    pub log_format: LogFormat,
    pub log: String,
    /// OTLP/gRPC collector to export spans to, `http://HOST:PORT` (`SHOAL_OTLP_ENDPOINT`); empty = off.
    pub otlp_endpoint: String,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            coordinator: "http://127.0.0.1:7470".into(),
            cpus: 0,
            memory_mb: 0,
            data_listen: "127.0.0.1:0".into(),
            metrics_listen: String::new(),
            data_advertise: String::new(),
            checkpoint_dir: PathBuf::from("shoal-data/checkpoints"),
            keep_checkpoints: 3,
            connect_timeout_ms: 5_000,
            max_backoff_ms: 10_000,
            drain_timeout_ms: 120_000,
            hostname: String::new(),
            join_token: String::new(),
            data_roots: String::new(),
            tls_ca: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_server_name: String::new(),
            log_format: LogFormat::Pretty,
            log: "info".into(),
            otlp_endpoint: String::new(),
        }
    }
}

/// A configuration value that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("coordinator: `{value}` is not a URL: {source}")]
    CoordinatorUrl { value: String, source: tonic::codegen::http::uri::InvalidUri },
    #[error("data_listen: `{value}` is not host:port: {source}")]
    DataListen { value: String, source: std::net::AddrParseError },
    #[error("data_advertise: {source}")]
    DataAdvertise { value: String, source: std::net::AddrParseError },
    #[error("{key}: must be > 0")]
    NotPositive { key: &'static str },
    #[error(transparent)]
    MetricsListen(#[from] shoal_common::http_server::ServeError),
    /// The TLS files cannot be read or used.
    #[error("{detail}")]
    Tls { detail: String },
}

impl WorkerConfig {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.coordinator_url();
        url.parse::<tonic::transport::Uri>()
            .map_err(|source| ConfigError::CoordinatorUrl { value: self.coordinator.clone(), source })?;
        self.data_listen
            .parse::<std::net::SocketAddr>()
            .map_err(|source| ConfigError::DataListen { value: self.data_listen.clone(), source })?;
        self.metrics_addr()?;
        if self.keep_checkpoints == 0 {
            return Err(ConfigError::NotPositive { key: "keep_checkpoints" });
        }
        if self.connect_timeout_ms == 0 {
            return Err(ConfigError::NotPositive { key: "connect_timeout_ms" });
        }
        self.tls()?;
        Ok(())
    }

    /// TLS towards the coordinator and parameter servers (reads the files).
    pub fn tls(&self) -> Result<shoal_common::tls::ClientTls, ConfigError> {
        shoal_common::tls::ClientTls::new(&self.tls_ca, &self.tls_cert, &self.tls_key, &self.tls_server_name)
            .map_err(|detail| ConfigError::Tls { detail })
    }

    /// Where `/metrics` listens, when it is on. Any address: the series are read-only aggregates,
    /// scraped from another machine.
    pub fn metrics_addr(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        if self.metrics_listen.is_empty() {
            return Ok(None);
        }
        Ok(Some(shoal_common::http_server::parse_listen("metrics_listen", &self.metrics_listen, true)?))
    }

    /// The data-plane address to advertise to peers, if one is set.
    pub fn data_advertise(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        if self.data_advertise.is_empty() {
            return Ok(None);
        }
        let value = self.data_advertise.clone();
        value.parse().map(Some).map_err(|source| ConfigError::DataAdvertise { value, source })
    }

    /// The coordinator address with a scheme (`host:port` alone means http).
    /// The allowed data folders, parsed.
    pub fn data_roots(&self) -> Vec<std::path::PathBuf> {
        self.data_roots.split(',').map(str::trim).filter(|s| !s.is_empty()).map(std::path::PathBuf::from).collect()
    }

    pub fn coordinator_url(&self) -> String {
        let tls = !self.tls_ca.is_empty();
        match self.coordinator.split_once("://") {
            Some((_, rest)) if tls => format!("https://{rest}"),
            Some(_) => self.coordinator.clone(),
            None => format!("{}://{}", if tls { "https" } else { "http" }, self.coordinator),
        }
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}
