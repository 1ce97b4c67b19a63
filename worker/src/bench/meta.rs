//! The header record that opens every benchmark's output: what ran, on which machine, when.

use serde_json::{Value, json};

/// The header record of a benchmark run.
pub fn header(bench: &str) -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    json!({
        "bench": bench,
        "kind": "meta",
        "shoal_version": shoal_common::version::VERSION,
        "cpu": cpu,
        "cpu_count": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "rayon_num_threads": std::env::var("RAYON_NUM_THREADS").ok(),
        "time": shoal_common::time::now_ms(),
    })
}
