//! `shoal bench parity`: the same training on the CPU engine and on another device (a GPU in
//! fp32), from the same seed and data, then every parameter of the two final checkpoints compared.
//! Two workloads: the peers' reference MLP (SGD) and the digits CNN of `examples/digits-cnn.toml`
//! (AdamW, a step schedule). A third record resumes across devices: the CNN trains on the device,
//! drains halfway (checkpoint), resumes on the CPU engine and finishes; its final parameters and
//! loss curve must match the CPU run's.
//!
//! The relative difference of two values is `|a - b| / max(|a|, |b|, FLOOR)`: relative for
//! ordinary values, absolute below `FLOOR`, where a parameter near zero would make any rounding
//! difference look huge. A NaN or infinity on one side only is an infinite difference.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Tensor;
use serde_json::{Value, json};
use shoal_common::spec::TrainConfig;
use shoal_train::backend::{Backend, candle_values};
use shoal_train::{Host, Outcome, Peers, Report, RunOptions, Stop, checkpoint, data, train};

use super::device::{Opened, precision_name};
use super::error::BenchError;
use super::train::threads;
use super::workloads;

/// Below this magnitude differences count as absolute.
pub const FLOOR: f64 = 1e-3;
/// The agreement the GPU must reach: relative difference at most this.
pub const TOLERANCE: f64 = 1e-4;
/// Steps between the loss points compared.
const LOG_EVERY: u64 = 10;

/// How far apart two sets of parameters are.
#[derive(Clone, Debug, PartialEq)]
pub struct Diff {
    pub tensors: usize,
    /// Values compared.
    pub values: usize,
    pub max_abs: f64,
    /// Largest `|a - b| / max(|a|, |b|, FLOOR)`.
    pub max_rel: f64,
    /// `|a - b|₂ / |a|₂` over all values together.
    pub rel_l2: f64,
    /// The tensor holding the largest relative difference.
    pub worst: String,
}

/// The relative difference of one pair of values (module docs).
pub fn relative(a: f64, b: f64) -> f64 {
    if a == b {
        return 0.0;
    }
    let d = (a - b).abs() / a.abs().max(b.abs()).max(FLOOR);
    if d.is_nan() { f64::INFINITY } else { d }
}

/// Compares every tensor of `reference` with the tensor of the same name in `other`; both must
/// hold the same names and shapes.
pub fn compare(reference: &HashMap<String, Tensor>, other: &HashMap<String, Tensor>) -> Result<Diff, BenchError> {
    if let Some(extra) = other.keys().find(|k| !reference.contains_key(*k)) {
        return Err(BenchError::Layout { tensor: extra.clone(), reason: "only in the second checkpoint".into() });
    }
    let mut names: Vec<&String> = reference.keys().collect();
    names.sort();
    let mut diff = Diff { tensors: 0, values: 0, max_abs: 0.0, max_rel: 0.0, rel_l2: 0.0, worst: String::new() };
    let (mut diff_sq, mut ref_sq) = (0.0f64, 0.0f64);
    for name in names {
        let a = &reference[name];
        let b = other.get(name).ok_or_else(|| BenchError::Layout {
            tensor: name.clone(),
            reason: "only in the first checkpoint".into(),
        })?;
        if a.dims() != b.dims() {
            return Err(BenchError::Layout {
                tensor: name.clone(),
                reason: format!("shape {:?} against {:?}", a.dims(), b.dims()),
            });
        }
        let values =
            |t: &Tensor| candle_values(t).map_err(|source| BenchError::Tensor { tensor: name.clone(), source });
        let (va, vb) = (values(a)?, values(b)?);
        for (&x, &y) in va.iter().zip(&vb) {
            let (x, y) = (f64::from(x), f64::from(y));
            let rel = relative(x, y);
            let abs = if x == y { 0.0 } else { (x - y).abs() };
            diff.max_abs = diff.max_abs.max(if abs.is_nan() { f64::INFINITY } else { abs });
            if rel > diff.max_rel {
                diff.max_rel = rel;
                diff.worst = name.clone();
            }
            diff_sq += if x == y { 0.0 } else { (x - y) * (x - y) };
            ref_sq += x * x;
        }
        diff.tensors += 1;
        diff.values += va.len();
    }
    diff.rel_l2 = if diff_sq == 0.0 { 0.0 } else { (diff_sq / ref_sq.max(f64::MIN_POSITIVE)).sqrt() };
    if diff.rel_l2.is_nan() {
        diff.rel_l2 = f64::INFINITY;
    }
    Ok(diff)
}

/// The largest relative difference between two loss curves at the steps both recorded.
fn curve_diff(reference: &[(u64, f64)], other: &[(u64, f64)]) -> Option<f64> {
    let at: HashMap<u64, f64> = reference.iter().copied().collect();
    other.iter().filter_map(|(step, loss)| at.get(step).map(|r| relative(*r, *loss))).reduce(f64::max)
}

/// A host that records the loss curve and can drain the run before a given step.
struct Recorder {
    losses: Vec<(u64, f64)>,
    drain_at: Option<u64>,
    polls: Cell<u64>,
}

impl Host for Recorder {
    fn report(&mut self, report: Report) {
        if let Report::Train(p) = report {
            self.losses.push((p.step, p.loss));
        }
    }

    /// The loop asks once before each step, so the k-th question (from 0) comes before step k of
    /// a fresh run.
    fn stop(&self) -> Option<Stop> {
        let n = self.polls.get();
        self.polls.set(n + 1);
        (self.drain_at == Some(n)).then_some(Stop::Drain)
    }
}

/// One run's final checkpoint and loss curve.
struct Trained {
    checkpoint: PathBuf,
    losses: Vec<(u64, f64)>,
}

/// Where one run trains and from where it starts.
struct Leg<'a> {
    what: &'a str,
    backend: Option<Arc<dyn Backend>>,
    resume_from: Option<PathBuf>,
    drain_at: Option<u64>,
}

fn run_leg(cfg: &TrainConfig, leg: Leg<'_>, dir: &Path) -> Result<Trained, BenchError> {
    let splits = data::load(&cfg.dataset)?;
    let opts = RunOptions {
        checkpoint_dir: Some(dir.to_path_buf()),
        resume_from: leg.resume_from,
        threads: threads(),
        keep_checkpoints: 1,
        backend: leg.backend,
        ..Default::default()
    };
    let mut host = Recorder { losses: Vec::new(), drain_at: leg.drain_at, polls: Cell::new(0) };
    let checkpoint = match train(cfg, splits, &opts, &mut host, Peers::Alone)? {
        Outcome::Completed(summary) => summary.checkpoint,
        Outcome::Interrupted { checkpoint, .. } if leg.drain_at.is_some() => checkpoint,
        _ => return Err(BenchError::StoppedEarly { rank: 0 }),
    };
    let checkpoint = checkpoint.ok_or_else(|| BenchError::NoCheckpoint { what: leg.what.to_owned() })?;
    Ok(Trained { checkpoint, losses: host.losses })
}

fn model_of(t: &Trained) -> Result<HashMap<String, Tensor>, BenchError> {
    Ok(checkpoint::load(&t.checkpoint)?.model)
}

fn diff_fields(out: &mut Value, d: &Diff) {
    out["params"] = json!(d.values);
    out["tensors"] = json!(d.tensors);
    out["max_abs_diff"] = json!(d.max_abs);
    out["max_rel_diff"] = json!(d.max_rel);
    out["rel_l2_diff"] = json!(d.rel_l2);
    out["worst_tensor"] = json!(d.worst);
    out["within_1e-4"] = json!(d.max_rel <= TOLERANCE);
    out["ok"] = json!(d.max_rel <= TOLERANCE);
}

fn last(losses: &[(u64, f64)]) -> Option<f64> {
    losses.last().map(|(_, l)| *l)
}

/// Trains `cfg` on the CPU engine and on `device` and compares them; with `resume`, also trains
/// on `device` up to half the steps and finishes on the CPU. Returns one record per comparison.
fn compare_workload(
    model: &str,
    cfg: &TrainConfig,
    device: &Opened,
    steps: u64,
    resume: bool,
    scratch: &Path,
) -> Result<Vec<Value>, BenchError> {
    let dir = |leg: &str| scratch.join(format!("{model}-{leg}"));
    let cpu_leg = Leg { what: "CPU", backend: None, resume_from: None, drain_at: None };
    let cpu = run_leg(cfg, cpu_leg, &dir("cpu"))?;
    let device_leg = Leg { what: "device", backend: device.backend.clone(), resume_from: None, drain_at: None };
    let on_device = run_leg(cfg, device_leg, &dir("device"))?;
    let reference = model_of(&cpu)?;
    let diff = compare(&reference, &model_of(&on_device)?)?;
    let mut out = json!({
        "bench": "parity", "kind": "parity", "model": model, "steps": steps,
        "device": device.device.to_string(), "gpu": device.gpu, "precision": precision_name(device.precision),
        "floor": FLOOR, "loss_final_cpu": last(&cpu.losses), "loss_final_device": last(&on_device.losses),
        "max_loss_rel_diff": curve_diff(&cpu.losses, &on_device.losses),
    });
    diff_fields(&mut out, &diff);
    let mut records = vec![out];
    if resume {
        // At a report boundary, so that the resumed run's loss points average the same steps as
        // the CPU run's (the steps after the last report before draining are reported by no one).
        let every = cfg.training.log_every.max(1);
        let half = match (steps / 2) / every * every {
            0 => steps / 2,
            h => h,
        };
        let first =
            Leg { what: "first half", backend: device.backend.clone(), resume_from: None, drain_at: Some(half) };
        let before = run_leg(cfg, first, &dir("resume-device"))?;
        let second =
            Leg { what: "resumed", backend: None, resume_from: Some(before.checkpoint.clone()), drain_at: None };
        let after = run_leg(cfg, second, &dir("resume-cpu"))?;
        let diff = compare(&reference, &model_of(&after)?)?;
        let curve: Vec<(u64, f64)> = before.losses.iter().chain(&after.losses).copied().collect();
        let at_resume = cpu.losses.iter().find(|(s, _)| *s == half).map(|(_, l)| *l);
        let mut out = json!({
            "bench": "parity", "kind": "resume", "model": model, "steps": steps, "resumed_at": half,
            "from": device.device.to_string(), "to": "cpu", "gpu": device.gpu,
            "precision": precision_name(device.precision), "floor": FLOOR,
            "loss_before_resume": last(&before.losses), "loss_after_resume": after.losses.first().map(|(_, l)| *l),
            "cpu_loss_at_resume": at_resume, "loss_final_cpu": last(&cpu.losses), "loss_final": last(&after.losses),
            "max_loss_rel_diff": curve_diff(&cpu.losses, &curve),
        });
        diff_fields(&mut out, &diff);
        records.push(out);
    }
    Ok(records)
}

/// The reference MLP and the digits CNN, `steps` steps each on the CPU and on `device`, and the
/// CNN resumed from `device` onto the CPU.
pub fn run(steps: u64, device: &Opened) -> Result<Vec<Value>, BenchError> {
    let scratch =
        tempfile::Builder::new().prefix("shoal-parity-").tempdir().map_err(|source| BenchError::Scratch { source })?;
    let mut mlp = workloads::reference_mlp(steps, 128)?;
    mlp.training.log_every = LOG_EVERY;
    let cnn = workloads::digits_cnn(steps, LOG_EVERY)?;
    let mut records = compare_workload("mlp", &mlp, device, steps, false, scratch.path())?;
    records.extend(compare_workload("cnn", &cnn, device, steps, true, scratch.path())?);
    Ok(records)
}

#[cfg(test)]
mod tests {
    use shoal_train::backend::HOST;

    use super::*;

    fn tensors(entries: &[(&str, &[f32])]) -> HashMap<String, Tensor> {
        entries.iter().map(|(n, v)| ((*n).to_owned(), Tensor::from_slice(v, v.len(), &HOST).expect("tensor"))).collect()
    }

    #[test]
    fn relative_differences_are_relative_above_the_floor_and_absolute_below() {
        assert_eq!(relative(2.0, 2.0), 0.0);
        assert!((relative(1.0, 1.0001) - 1e-4 / 1.0001).abs() < 1e-12);
        assert!((relative(-100.0, -100.5) - 0.5 / 100.5).abs() < 1e-12);
        // Both below the floor: the difference over the floor.
        assert!((relative(1e-6, -1e-6) - 2e-6 / FLOOR).abs() < 1e-12);
        assert_eq!(relative(1.0, f64::NAN), f64::INFINITY);
        assert_eq!(relative(f64::INFINITY, 1.0), f64::INFINITY);
    }

    #[test]
    fn identical_checkpoints_differ_by_nothing() {
        let a = tensors(&[("w", &[1.0, -2.0, 3.5]), ("b", &[0.0, 1e-7])]);
        let d = compare(&a, &a.clone()).expect("same layout");
        assert_eq!(d, Diff { tensors: 2, values: 5, max_abs: 0.0, max_rel: 0.0, rel_l2: 0.0, worst: String::new() });
    }

    #[test]
    fn a_perturbed_checkpoint_reports_the_worst_value_and_its_tensor() {
        let a = tensors(&[("a.w", &[1.0, -2.0, 4.0]), ("b.b", &[0.0, 0.5])]);
        // a.w[2]: 4 -> 4.002 (relative 0.002/4.002); b.b[0]: 0 -> 1e-5 (absolute below the floor:
        // 1e-5 / 1e-3 = 0.01, the worst).
        let b = tensors(&[("a.w", &[1.0, -2.0, 4.002]), ("b.b", &[1e-5, 0.5])]);
        let d = compare(&a, &b).expect("same layout");
        assert_eq!((d.tensors, d.values), (2, 5));
        assert_eq!(d.worst, "b.b");
        assert!((d.max_rel - 0.01).abs() < 1e-4, "{d:?}");
        assert!((d.max_abs - 0.002).abs() < 1e-6, "{d:?}");
        let l2 = ((0.002f64.powi(2) + 1e-10) / (1.0 + 4.0 + 16.0 + 0.25)).sqrt();
        assert!((d.rel_l2 - l2).abs() < 1e-6, "{d:?} against {l2}");
        assert!(d.max_rel > TOLERANCE);
    }

    #[test]
    fn checkpoints_of_other_layouts_are_errors_that_name_the_tensor() {
        let a = tensors(&[("w", &[1.0, 2.0])]);
        let longer = tensors(&[("w", &[1.0, 2.0, 3.0])]);
        let err = compare(&a, &longer).expect_err("shapes differ").to_string();
        assert!(err.contains("`w`") && err.contains("shape"), "{err}");
        let renamed = tensors(&[("v", &[1.0, 2.0])]);
        assert!(compare(&a, &renamed).expect_err("names differ").to_string().contains("`v`"));
        let more = tensors(&[("w", &[1.0, 2.0]), ("x", &[0.0])]);
        assert!(compare(&a, &more).expect_err("extra tensor").to_string().contains("`x`"));
        assert!(compare(&more, &a).expect_err("missing tensor").to_string().contains("`x`"));
    }

    #[test]
    fn a_nan_parameter_fails_the_comparison() {
        let a = tensors(&[("w", &[1.0, 2.0])]);
        let b = tensors(&[("w", &[1.0, f32::NAN])]);
        let d = compare(&a, &b).expect("same layout");
        assert_eq!(d.max_rel, f64::INFINITY);
        assert_eq!(d.max_abs, f64::INFINITY);
        assert!(d.max_rel > TOLERANCE);
    }

    #[test]
    fn loss_curves_are_compared_where_both_have_a_point() {
        let cpu = [(10, 2.0), (20, 1.0), (30, 0.5)];
        assert_eq!(curve_diff(&cpu, &cpu), Some(0.0));
        let other = [(20, 1.01), (30, 0.5), (40, 9.0)];
        let d = curve_diff(&cpu, &other).expect("common steps");
        assert!((d - 0.01 / 1.01).abs() < 1e-12, "{d}");
        assert_eq!(curve_diff(&cpu, &[(5, 1.0)]), None);
    }

    /// The whole comparison with the CPU on both sides: the CPU engine is deterministic, so both
    /// runs, and the run drained halfway and resumed, end with bit-identical parameters.
    #[test]
    fn the_cpu_against_itself_agrees_exactly_also_across_a_resume() {
        let scratch = tempfile::tempdir().expect("scratch");
        let steps = 10;
        let cnn = workloads::digits_cnn(steps, 2).expect("the CNN");
        let records = compare_workload("cnn", &cnn, &Opened::cpu(), steps, true, scratch.path()).expect("runs");
        assert_eq!(records.len(), 2);
        for r in &records {
            assert_eq!(r["max_rel_diff"], 0.0, "{r}");
            assert_eq!(r["max_abs_diff"], 0.0, "{r}");
            assert_eq!(r["within_1e-4"], true, "{r}");
            assert_eq!(r["max_loss_rel_diff"], 0.0, "{r}");
            assert!(r["params"].as_u64().expect("count") > 1000, "{r}");
        }
        let resume = &records[1];
        assert_eq!(resume["kind"], "resume");
        // Half of 10 steps rounded down to a report boundary (every 2 steps).
        assert_eq!(resume["resumed_at"], 4);
        // The drained half wrote its checkpoint at step 4 and the resumed half started from it.
        assert_eq!(resume["loss_final"], records[0]["loss_final_cpu"]);
        assert!(resume["loss_after_resume"].is_f64(), "{resume}");
        assert_eq!(resume["loss_before_resume"], resume["cpu_loss_at_resume"], "{resume}");
    }
}
