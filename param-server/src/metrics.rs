//! The parameter server's Prometheus series, served at `/metrics` on `metrics_listen`: the
//! shards it holds, the jobs they belong to, and the duration of each push, pull and other RPC.

use std::sync::Arc;

use shoal_common::metrics::{Gauge, Registry as Series, RpcDurations, render, router as metrics_router};

use crate::Registry;

/// A router answering `GET /metrics` for a server holding `shards` and timing into `rpc`.
pub fn router(shards: Arc<Registry>, rpc: RpcDurations) -> axum::Router {
    let mut series = Series::with_prefix("shoal_ps");
    let held: Gauge = Gauge::default();
    let jobs: Gauge = Gauge::default();
    series.register("shards", "Parameter shards held", held.clone());
    series.register("jobs", "Job attempts with a shard here", jobs.clone());
    series.register("rpc_duration_seconds", "RPC handling time to the response, by service and method", rpc);
    metrics_router(Arc::new(move || {
        held.set(shards.shard_count() as i64);
        jobs.set(shards.jobs().len() as i64);
        render(&series)
    }))
}
