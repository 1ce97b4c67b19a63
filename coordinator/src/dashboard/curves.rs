//! A job's metric points as the job page draws them: one series per split and rank, as columns,
//! thinned on the server so that a job with a hundred thousand points still opens at once.
//!
//! Thinning keeps each series' first and last points and, from every bucket of consecutive
//! points in between, the ones with the lowest and the highest loss: the curve keeps its spikes
//! and its shape, and the page draws at most about `max` points per series.

use serde::Serialize;
use shoal_common::proto::{JobEvent, MetricPoint, Split, job_event};

/// One point: its event's sequence number and the values the charts draw.
#[derive(Clone, Debug, PartialEq)]
struct Point {
    step: u64,
    loss: f64,
    accuracy: Option<f64>,
    lr: f64,
    samples_per_s: f64,
    comm_share: Option<f64>,
}

impl Point {
    fn of(m: &MetricPoint) -> Self {
        Self {
            step: m.step,
            loss: m.loss,
            accuracy: m.accuracy,
            lr: m.lr,
            samples_per_s: m.samples_per_s,
            comm_share: m.extra.get("comm_share").copied(),
        }
    }
}

/// One split of one rank, as columns (what uPlot takes).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Series {
    pub split: &'static str,
    pub rank: u32,
    /// Points this series had before thinning.
    pub points: usize,
    pub step: Vec<u64>,
    pub loss: Vec<f64>,
    pub accuracy: Vec<Option<f64>>,
    pub lr: Vec<f64>,
    pub samples_per_s: Vec<f64>,
    pub comm_share: Vec<Option<f64>>,
}

/// Every series of a stretch of a job's events.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Curves {
    pub series: Vec<Series>,
    /// Points in the stretch, before thinning.
    pub points: usize,
    /// Points kept.
    pub shown: usize,
}

fn split_name(split: i32) -> &'static str {
    if split == Split::Validation as i32 { "validation" } else { "train" }
}

/// The metric points among `events`, at most about `max` per series (0 = all).
pub fn collect(events: &[JobEvent], max: usize) -> Curves {
    let mut by_key: Vec<((&'static str, u32), Vec<Point>)> = Vec::new();
    for e in events {
        let Some(job_event::Kind::Metric(m)) = &e.kind else { continue };
        let key = (split_name(m.split), m.rank);
        match by_key.iter_mut().find(|(k, _)| *k == key) {
            Some((_, points)) => points.push(Point::of(m)),
            None => by_key.push((key, vec![Point::of(m)])),
        }
    }
    by_key.sort_by_key(|((split, rank), _)| (*split != "train", *rank));
    let mut curves = Curves::default();
    for ((split, rank), points) in by_key {
        curves.points += points.len();
        let total = points.len();
        let kept = thin(points, max);
        curves.shown += kept.len();
        curves.series.push(columns(split, rank, total, kept));
    }
    curves
}

fn columns(split: &'static str, rank: u32, points: usize, kept: Vec<Point>) -> Series {
    let mut s = Series { split, rank, points, ..Default::default() };
    for p in kept {
        s.step.push(p.step);
        s.loss.push(p.loss);
        s.accuracy.push(p.accuracy);
        s.lr.push(p.lr);
        s.samples_per_s.push(p.samples_per_s);
        s.comm_share.push(p.comm_share);
    }
    s
}

/// At most about `max` of `points` (all when `max` is 0 or they fit): the first, the last, and
/// the lowest- and highest-loss point of each bucket between them, in their original order.
fn thin(points: Vec<Point>, max: usize) -> Vec<Point> {
    if max == 0 || points.len() <= max.max(4) {
        return points;
    }
    let inner = &points[1..points.len() - 1];
    let buckets = ((max - 2) / 2).max(1);
    let size = inner.len().div_ceil(buckets);
    let mut kept = vec![points[0].clone()];
    for bucket in inner.chunks(size) {
        let by_loss = |a: &&Point, b: &&Point| a.loss.total_cmp(&b.loss);
        let (low, high) = (bucket.iter().min_by(by_loss), bucket.iter().max_by(by_loss));
        let (Some(low), Some(high)) = (low, high) else { continue };
        let (first, second) = if low.step <= high.step { (low, high) } else { (high, low) };
        kept.push(first.clone());
        if second != first {
            kept.push(second.clone());
        }
    }
    kept.push(points[points.len() - 1].clone());
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(seq: u64, split: Split, rank: u32, step: u64, loss: f64) -> JobEvent {
        JobEvent {
            seq,
            kind: Some(job_event::Kind::Metric(MetricPoint {
                step,
                split: split as i32,
                rank,
                loss,
                extra: [("comm_share".to_owned(), 0.25)].into(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn series_are_split_by_split_and_rank_train_first() {
        let events = vec![
            metric(1, Split::Validation, 0, 10, 0.5),
            metric(2, Split::Train, 1, 10, 0.9),
            metric(3, Split::Train, 0, 10, 1.0),
            metric(4, Split::Train, 0, 20, 0.8),
            JobEvent { seq: 5, ..Default::default() },
        ];
        let c = collect(&events, 0);
        let keys: Vec<(&str, u32, usize)> = c.series.iter().map(|s| (s.split, s.rank, s.step.len())).collect();
        assert_eq!(keys, vec![("train", 0, 2), ("train", 1, 1), ("validation", 0, 1)]);
        assert_eq!((c.points, c.shown), (4, 4));
        assert_eq!(c.series[0].loss, vec![1.0, 0.8]);
        assert_eq!(c.series[0].comm_share, vec![Some(0.25), Some(0.25)]);
    }

    #[test]
    fn thinning_keeps_the_ends_and_every_spike_within_the_limit() {
        let events: Vec<JobEvent> = (0..100_000u64)
            .map(|i| {
                let loss = if i == 31_337 {
                    50.0
                } else if i == 77_777 {
                    -3.0
                } else {
                    1.0 / (1.0 + i as f64)
                };
                metric(i + 1, Split::Train, 0, i, loss)
            })
            .collect();
        let c = collect(&events, 1000);
        let s = &c.series[0];
        assert_eq!(s.points, 100_000);
        assert!(s.step.len() <= 1000 && s.step.len() >= 900, "kept {}", s.step.len());
        assert_eq!((s.step[0], *s.step.last().expect("a last point")), (0, 99_999));
        assert!(s.step.contains(&31_337) && s.step.contains(&77_777), "a spike was dropped");
        assert!(s.step.windows(2).all(|w| w[0] < w[1]), "steps out of order");
    }
}
