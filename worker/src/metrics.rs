//! The worker's Prometheus series, served at `/metrics` on `metrics_listen`: its training
//! throughput, step time and the shares of a step spent waiting for data and in collectives (from
//! the newest training point of its jobs), the jobs it runs, and per GPU its memory and
//! utilization (from the heartbeat's sample). Labels are GPU indices only, never job ids.

use std::collections::HashMap;
use std::sync::Mutex;

use shoal_common::metrics::{Counter, EncodeLabelSet, Family, FloatGauge, Gauge, Registry, render};
use shoal_common::proto::{GpuUsage, MetricPoint, Split, WorkerMessage, worker_message};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GpuLabel {
    pub gpu: String,
}

pub struct WorkerMetrics {
    registry: Registry,
    samples_per_second: FloatGauge,
    step_seconds: FloatGauge,
    comm_share: FloatGauge,
    data_wait_share: FloatGauge,
    points: Counter,
    jobs_running: Gauge,
    gpu_memory_used: Family<GpuLabel, Gauge>,
    gpu_memory_total: Family<GpuLabel, Gauge>,
    gpu_utilization: Family<GpuLabel, FloatGauge>,
    /// Each job's previous training point: (step, elapsed seconds), for the step time.
    previous: Mutex<HashMap<String, (u64, f64)>>,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("shoal_worker");
        let m = WorkerMetrics {
            registry: Registry::default(),
            samples_per_second: FloatGauge::default(),
            step_seconds: FloatGauge::default(),
            comm_share: FloatGauge::default(),
            data_wait_share: FloatGauge::default(),
            points: Counter::default(),
            jobs_running: Gauge::default(),
            gpu_memory_used: Family::default(),
            gpu_memory_total: Family::default(),
            gpu_utilization: Family::default(),
            previous: Mutex::new(HashMap::new()),
        };
        registry.register(
            "samples_per_second",
            "Training throughput of the newest training point",
            m.samples_per_second.clone(),
        );
        registry.register(
            "step_seconds",
            "Mean step time between the newest two training points",
            m.step_seconds.clone(),
        );
        registry.register("comm_share", "Share of the step time spent in collectives", m.comm_share.clone());
        registry.register(
            "data_wait_share",
            "Share of the step time spent waiting for data",
            m.data_wait_share.clone(),
        );
        registry.register("training_points", "Training points reported", m.points.clone());
        registry.register("jobs_running", "Job ranks running on this worker", m.jobs_running.clone());
        registry.register("gpu_memory_used_bytes", "GPU memory in use", m.gpu_memory_used.clone());
        registry.register("gpu_memory_total_bytes", "GPU memory in all", m.gpu_memory_total.clone());
        registry.register(
            "gpu_utilization_ratio",
            "Share of the sample period a kernel ran",
            m.gpu_utilization.clone(),
        );
        WorkerMetrics { registry, ..m }
    }

    /// Reads a report on its way to the coordinator.
    pub fn observe(&self, msg: &WorkerMessage) {
        let mut previous = self.previous.lock().unwrap_or_else(|p| p.into_inner());
        match &msg.kind {
            Some(worker_message::Kind::Metric(m)) => {
                let Some(p) = m.point.as_ref().filter(|p| p.split == Split::Train as i32) else { return };
                self.point(p, previous.insert(m.job_id.clone(), (p.step, p.elapsed_s)));
            }
            Some(worker_message::Kind::Finished(f)) => {
                previous.remove(&f.job_id);
            }
            _ => {}
        }
    }

    fn point(&self, p: &MetricPoint, before: Option<(u64, f64)>) {
        self.points.inc();
        self.samples_per_second.set(p.samples_per_s);
        if let Some((step, elapsed)) = before
            && p.step > step
            && p.elapsed_s > elapsed
        {
            self.step_seconds.set((p.elapsed_s - elapsed) / (p.step - step) as f64);
        }
        if let Some(v) = p.extra.get("comm_share") {
            self.comm_share.set(*v);
        }
        if let Some(v) = p.extra.get("data_wait_share") {
            self.data_wait_share.set(*v);
        }
    }

    /// What a heartbeat says: the ranks running and the GPUs' use.
    pub fn heartbeat(&self, running: usize, gpus: &[GpuUsage]) {
        self.jobs_running.set(running as i64);
        for g in gpus {
            let label = GpuLabel { gpu: g.index.to_string() };
            self.gpu_memory_used.get_or_create(&label).set(g.memory_used_bytes as i64);
            self.gpu_memory_total.get_or_create(&label).set(g.memory_total_bytes as i64);
            if let Some(u) = g.utilization_percent {
                self.gpu_utilization.get_or_create(&label).set(f64::from(u) / 100.0);
            }
        }
    }

    pub fn render(&self) -> String {
        render(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_common::proto::JobMetric;

    fn point(step: u64, elapsed_s: f64) -> WorkerMessage {
        let mut p =
            MetricPoint { step, elapsed_s, samples_per_s: 1000.0, split: Split::Train as i32, ..Default::default() };
        p.extra.insert("comm_share".into(), 0.25);
        WorkerMessage {
            kind: Some(worker_message::Kind::Metric(JobMetric { job_id: "j".into(), attempt: 0, point: Some(p) })),
            seq: 0,
        }
    }

    #[test]
    fn training_points_and_heartbeats_become_series() {
        let m = WorkerMetrics::new();
        m.observe(&point(10, 1.0));
        m.observe(&point(30, 2.0));
        m.heartbeat(
            1,
            &[GpuUsage { index: 0, memory_used_bytes: 5, memory_total_bytes: 10, utilization_percent: Some(50) }],
        );
        let text = m.render();
        assert!(text.contains("shoal_worker_step_seconds 0.05"), "{text}");
        assert!(text.contains("shoal_worker_samples_per_second 1000.0"), "{text}");
        assert!(text.contains("shoal_worker_comm_share 0.25"), "{text}");
        assert!(text.contains("shoal_worker_training_points_total 2"), "{text}");
        assert!(text.contains("shoal_worker_gpu_utilization_ratio{gpu=\"0\"} 0.5"), "{text}");
        assert!(text.contains("shoal_worker_gpu_memory_used_bytes{gpu=\"0\"} 5"), "{text}");
    }
}
