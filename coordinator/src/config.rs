//! Coordinator settings: defaults < TOML file < `SHOAL_*` environment < flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_common::telemetry::LogFormat;

use crate::state::Liveness;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CoordinatorConfig {
    /// Address the gRPC server listens on (`SHOAL_LISTEN`).
    pub listen: String,
    /// SQLite database file (`SHOAL_DATABASE`).
    pub database: PathBuf,
    /// How often workers heartbeat.
    pub heartbeat_interval_ms: u64,
    /// A worker silent for longer is lost, and its jobs fail.
    pub heartbeat_timeout_ms: u64,
    /// A worker whose session closed is lost unless it reconnects within this time.
    pub reconnect_grace_ms: u64,
    pub log_format: LogFormat,
    /// Log filter in `RUST_LOG` syntax.
    pub log: String,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7470".into(),
            database: PathBuf::from("shoal-data/coordinator.db"),
            heartbeat_interval_ms: 2_000,
            heartbeat_timeout_ms: 10_000,
            reconnect_grace_ms: 10_000,
            log_format: LogFormat::Pretty,
            log: "info".into(),
        }
    }
}

impl CoordinatorConfig {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<SocketAddr, String> {
        let addr: SocketAddr =
            self.listen.parse().map_err(|e| format!("listen: `{}` is not an address (host:port): {e}", self.listen))?;
        if self.heartbeat_interval_ms == 0 {
            return Err("heartbeat_interval_ms: must be > 0".into());
        }
        if self.heartbeat_timeout_ms <= self.heartbeat_interval_ms {
            return Err("heartbeat_timeout_ms: must be larger than heartbeat_interval_ms".into());
        }
        if self.reconnect_grace_ms == 0 {
            return Err("reconnect_grace_ms: must be > 0".into());
        }
        if self.database.as_os_str().is_empty() {
            return Err("database: must not be empty".into());
        }
        Ok(addr)
    }

    pub fn liveness(&self) -> Liveness {
        Liveness {
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms),
            heartbeat_timeout: Duration::from_millis(self.heartbeat_timeout_ms),
            reconnect_grace: Duration::from_millis(self.reconnect_grace_ms),
        }
    }
}
