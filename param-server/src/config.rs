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
    /// Name reported to the coordinator; empty = the host name.
    pub hostname: String,
    /// Token the coordinator requires to join (`SHOAL_JOIN_TOKEN`); empty = none.
    pub join_token: String,
    pub connect_timeout_ms: u64,
    pub max_backoff_ms: u64,
    pub log_format: LogFormat,
    pub log: String,
}

impl Default for ParamServerConfig {
    fn default() -> Self {
        Self {
            coordinator: "http://127.0.0.1:7470".into(),
            listen: "127.0.0.1:0".into(),
            advertise: String::new(),
            hostname: String::new(),
            join_token: String::new(),
            connect_timeout_ms: 5_000,
            max_backoff_ms: 10_000,
            log_format: LogFormat::Pretty,
            log: "info".into(),
        }
    }
}
