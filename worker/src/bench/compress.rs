//! `shoal bench compress`: the compression peer's workload (`compress_mlp.py`): the reference MLP
//! trained on one thread, then each compressed variant made by the same jobs and commands a user
//! runs, every artifact timed for inference at batch 1 and 256 on one thread. One record per
//! variant with the peer's fields: `fp32`, `int8` (post-training, minmax calibration), `pruned`
//! (magnitude, global, sparse storage), `structured` (half the hidden units removed: a smaller
//! dense model) and `distilled` (a half-width student of the fp32 model).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use shoal_train::compress::{self, Artifact, Calibration, QuantizeOptions};
use shoal_train::data;

use super::error::BenchError;
use super::train::train_job;
use super::workloads;
use crate::compress::{accuracy, measure};

/// What `shoal bench compress` runs.
#[derive(Clone, Debug)]
pub struct CompressPlan {
    /// Training steps of the fp32 model and of the distilled student.
    pub train_steps: u64,
    /// Fine-tuning steps after pruning.
    pub finetune_steps: u64,
    /// Share of weights magnitude pruning removes.
    pub sparsity: f64,
    /// Timed seconds per batch size and variant.
    pub seconds: f64,
    /// Which variants to make and time (fp32 is always made: the others start from it).
    pub variants: Vec<String>,
    /// Where the artifacts go (kept for `shoal compare` and `shoal predict`).
    pub dir: PathBuf,
}

pub const VARIANTS: &[&str] = &["fp32", "int8", "pruned", "structured", "distilled"];

const HIDDEN: &str = "[{ width = 512 }, { width = 512 }]";
const STUDENT: &str = "[{ width = 256 }, { width = 256 }]";

/// Trains one job of the reference workload (`tail` adds sections) and returns its final checkpoint.
fn run_job(dir: &Path, name: &str, steps: u64, layers: &str, tail: &str) -> Result<PathBuf, BenchError> {
    let text = format!("{}\n{tail}\n", workloads::reference_mlp_toml(steps, 128, layers));
    train_job(&dir.join(name), text, "bench-compress")
}

fn quote(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// Makes each variant and returns its record.
pub fn run(plan: &CompressPlan) -> Result<Vec<Value>, BenchError> {
    std::fs::create_dir_all(&plan.dir).map_err(|source| BenchError::Scratch { source })?;
    let fp32 = run_job(&plan.dir, "fp32", plan.train_steps, HIDDEN, "")?;
    let inherit = format!("[inherit]\ncheckpoint = {}", quote(&fp32));
    let mut made: Vec<(String, PathBuf, u64)> = vec![("fp32".into(), fp32.clone(), plan.train_steps)];
    for variant in plan.variants.iter().filter(|v| *v != "fp32") {
        let path = match variant.as_str() {
            "int8" => {
                let out = plan.dir.join("int8");
                let _ = std::fs::remove_dir_all(&out);
                let opts = QuantizeOptions {
                    calibration: Calibration::MinMax,
                    batches: 8,
                    batch: 128,
                    max_accuracy_drop: None,
                };
                compress::quantize(&fp32, &out, &opts)?;
                (out, 0)
            }
            "pruned" => {
                let tail = format!("{inherit}\n[prune]\nmethod = \"magnitude\"\nsparsity = {}\n", plan.sparsity);
                (run_job(&plan.dir, "pruned", plan.finetune_steps, HIDDEN, &tail)?, plan.finetune_steps)
            }
            "structured" => {
                let tail = format!("{inherit}\n[prune]\nmethod = \"structured\"\nsparsity = 0.5\n");
                (run_job(&plan.dir, "structured", plan.finetune_steps, HIDDEN, &tail)?, plan.finetune_steps)
            }
            "distilled" => {
                let tail = format!("[distill]\nteacher = {}\n", quote(&fp32));
                (run_job(&plan.dir, "distilled", plan.train_steps, STUDENT, &tail)?, plan.train_steps)
            }
            other => {
                return Err(BenchError::Workload {
                    workload: "bench-compress",
                    reason: format!("unknown variant `{other}`"),
                });
            }
        };
        made.push((variant.clone(), path.0, path.1));
    }
    let validation = data::load(&workloads::reference_mlp(plan.train_steps, 128)?.dataset)?
        .validation
        .ok_or(BenchError::Workload { workload: "bench-compress", reason: "no held-out set".into() })?;
    let mut records = Vec::new();
    let mut base = None;
    for (variant, path, steps) in made {
        let artifact = Artifact::open(&path, validation.features, validation.image)?;
        let acc = accuracy(&artifact, &validation)?;
        let base_acc = *base.get_or_insert(acc);
        let mut rec = json!({
            "bench": "shoal_compress",
            "variant": variant,
            "eval_acc": acc,
            "acc_drop": base_acc - acc,
            "state_dict_bytes": artifact.bytes,
            "params": artifact.params,
            "sparsity": artifact.sparsity(),
            "format": artifact.format.name(),
            "threads": 1,
            "train_steps": steps,
            "artifact": path.display().to_string(),
        });
        for b in [1usize, 256] {
            let (sps, ms) = measure(&artifact, &validation, b, plan.seconds)?;
            rec[format!("samples_per_s_b{b}")] = json!(sps);
            rec[format!("latency_ms_b{b}")] = json!(ms);
        }
        records.push(rec);
    }
    Ok(records)
}
