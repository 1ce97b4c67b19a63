//! A real Prometheus server (Debian's `prometheus` package) scraping the processes of a test
//! cluster, and its query API. Without the binary the tests say they are skipped and pass, unless
//! `SHOAL_REQUIRE_PROMETHEUS=1` (CI), which makes a missing Prometheus a failure.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{Proc, http};

/// The `prometheus` binary, or `None` after saying why the test is skipped.
pub fn binary() -> Option<PathBuf> {
    crate::tool::Tool {
        env: "SHOAL_PROMETHEUS",
        names: &["prometheus"],
        require: "SHOAL_REQUIRE_PROMETHEUS",
        install: "apt-get install prometheus",
    }
    .find()
}

/// A scrape target: its job name, address and bearer token.
pub struct Target<'a> {
    pub job: &'a str,
    pub addr: SocketAddr,
    pub token: Option<&'a str>,
}

/// A running Prometheus scraping `targets` every second.
pub struct Prometheus {
    _proc: Proc,
    pub addr: SocketAddr,
}

impl Prometheus {
    pub fn start(binary: &Path, dir: &Path, targets: &[Target]) -> Result<Self> {
        let mut config = String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
        for t in targets {
            config.push_str(&format!("  - job_name: {}\n", t.job));
            if let Some(token) = t.token {
                config.push_str(&format!("    authorization:\n      credentials: {token}\n"));
            }
            config.push_str(&format!("    static_configs:\n      - targets: ['{}']\n", t.addr));
        }
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config)?;
        let addr = free_addr()?;
        let log = dir.join("prometheus.log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log)?))
            .spawn()
            .context("start prometheus")?;
        let me = Prometheus { _proc: Proc { child, log }, addr };
        me.wait_ready(Duration::from_secs(30))?;
        Ok(me)
    }

    /// The samples of an instant query: (labels, value) per series.
    pub fn query(&self, promql: &str) -> Result<Vec<(serde_json::Value, f64)>> {
        let (status, body) = http::get(self.addr, &format!("/api/v1/query?query={}", http::encode(promql)), None)?;
        if status != 200 {
            bail!("query {promql}: HTTP {status}: {body}");
        }
        let v: serde_json::Value = serde_json::from_str(&body)?;
        let results = v["data"]["result"].as_array().cloned().unwrap_or_default();
        results
            .into_iter()
            .map(|r| {
                let value = r["value"][1].as_str().context("a sample without a value")?.parse::<f64>()?;
                Ok((r["metric"].clone(), value))
            })
            .collect()
    }

    /// Waits until `promql` has a series whose value satisfies `ok`; the series' values.
    pub fn wait_for_value(&self, limit: Duration, promql: &str, ok: impl Fn(f64) -> bool) -> Result<Vec<f64>> {
        let deadline = Instant::now() + limit;
        loop {
            let values: Vec<f64> = self.query(promql)?.into_iter().map(|(_, v)| v).collect();
            if values.iter().any(|v| ok(*v)) {
                return Ok(values);
            }
            if Instant::now() > deadline {
                bail!("{promql} never satisfied the check within {limit:?}: {values:?}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn wait_ready(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok((200, _)) = http::get(self.addr, "/-/ready", None) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("prometheus not ready within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A loopback address with a port free right now.
pub fn free_addr() -> Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}
