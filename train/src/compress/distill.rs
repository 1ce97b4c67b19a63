//! Knowledge distillation: the student learns the teacher's softened class probabilities as well
//! as the labels. The teacher is a trained checkpoint, run forward (no dropout, no gradients) on
//! the student's own micro-batches and backend, so it works wherever a micro-batch's loss is
//! computed: alone, data-parallel ranks, parameter-server workers, search trials.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use shoal_analysis::reduce::Pipeline;
use shoal_common::spec::DistillConfig;

use crate::backend::{Backend, Tensor};
use crate::checkpoint;
use crate::engine::Objective;
use crate::error::{Result, TrainError};
use crate::model::{DataShape, Model};
use crate::nn::loss::{LossOutput, Targets};
use crate::nn::{Ctx, Mode};
use crate::rng::Rng;

/// The distillation objective: `alpha · T² · KL(softmax(teacher / T) ‖ softmax(student / T)) +
/// (1 − alpha) · cross_entropy(labels)`.
pub struct Distill {
    teacher: Model,
    temperature: f64,
    alpha: f64,
    threads: usize,
}

impl Distill {
    /// Loads the teacher named by `cfg` onto `backend` for a student on data of `shape` that went
    /// through `transforms`. Returns the objective and a line for the job's log.
    pub fn load(
        cfg: &DistillConfig,
        shape: &DataShape,
        transforms: Option<&Pipeline>,
        backend: &Arc<dyn Backend>,
        threads: usize,
    ) -> Result<(Self, String)> {
        let dir = teacher_dir(cfg)?;
        // The teacher runs on the student's batches, so it must have been trained on the same
        // features: a teacher with other transforms (or none) would read them as something else.
        if checkpoint::transforms(&dir)?.as_ref() != transforms {
            return Err(teacher_error(
                &dir,
                "the teacher's saved transforms are not the student's dataset.transforms as fitted: \
                 distill from a teacher trained on the same features"
                    .into(),
            ));
        }
        let model_cfg = match &cfg.teacher_model {
            Some(m) => m.clone(),
            None => checkpoint::model_of(&dir).map_err(|e| teacher_error(&dir, e.to_string()))?,
        };
        let saved = checkpoint::load(&dir)?;
        if let Some(out) = saved.model.get("output.weight")
            && out.dims().first() != Some(&shape.outputs)
        {
            return Err(teacher_error(
                &dir,
                format!(
                    "the teacher has {} outputs but the student's dataset has {} classes",
                    out.dims()[0],
                    shape.outputs
                ),
            ));
        }
        let mut teacher = Model::build_on(&model_cfg, shape, 0, backend)
            .map_err(|e| teacher_error(&dir, format!("its model does not fit the student's data: {e}")))?;
        teacher
            .load_named(&saved.model, &dir)
            .map_err(|e| teacher_error(&dir, format!("the checkpoint does not match its job file: {e}")))?;
        let line = format!(
            "distilling from {} ({} parameters, T = {}, alpha = {})",
            dir.display(),
            teacher.param_count(),
            cfg.temperature,
            cfg.alpha
        );
        Ok((Self { teacher, temperature: cfg.temperature, alpha: cfg.alpha, threads }, line))
    }
}

impl Objective for Distill {
    fn loss(
        &mut self,
        backend: &dyn Backend,
        input: &Tensor,
        output: &Tensor,
        targets: &Targets,
        scale: f32,
    ) -> Result<LossOutput> {
        let Targets::Classes(labels) = targets else {
            return Err(TrainError::Dataset {
                field: "distill".into(),
                reason: "distillation needs class labels, the batch has regression targets".into(),
            });
        };
        let (rows, classes) = output.dims2()?;
        let mut ctx = Ctx::new(Mode::Eval, self.threads, Rng::new(0));
        let (teacher_out, _) = self.teacher.forward(input, &mut ctx)?;
        let hard = backend.cross_entropy(output, labels, scale * (1.0 - self.alpha) as f32)?;
        let mut grad = backend.to_host(&hard.grad)?;
        let student = backend.to_host(output)?;
        let teacher = backend.to_host(&teacher_out)?;
        let soft =
            soft_target_loss(&student, &teacher, classes, self.temperature, self.alpha * f64::from(scale), &mut grad);
        Ok(LossOutput {
            loss_sum: (1.0 - self.alpha) * hard.loss_sum + self.alpha * soft,
            correct: hard.correct,
            rows,
            grad: backend.from_host(grad, &[rows, classes])?,
        })
    }
}

/// `T² · Σ_rows KL(softmax(teacher / T) ‖ softmax(student / T))` over `classes`-wide rows of
/// logits. Adds the gradient of `weight` times that sum with respect to the student's logits,
/// `weight · T · (softmax(student / T) − softmax(teacher / T))`, into `grad`.
pub fn soft_target_loss(
    student: &[f32],
    teacher: &[f32],
    classes: usize,
    temperature: f64,
    weight: f64,
    grad: &mut [f32],
) -> f64 {
    let mut total = 0.0;
    let (mut p, mut q) = (vec![0f64; classes], vec![0f64; classes]);
    let rows = student.chunks_exact(classes).zip(teacher.chunks_exact(classes)).zip(grad.chunks_exact_mut(classes));
    for ((s, t), g) in rows {
        let log_zp = log_softmax(t, temperature, &mut p);
        let log_zq = log_softmax(s, temperature, &mut q);
        let mut kl = 0.0;
        for i in 0..classes {
            // p and q hold the tempered logits; log p_i = p_i − log Zp.
            let (lp, lq) = (p[i] - log_zp, q[i] - log_zq);
            let (pi, qi) = (lp.exp(), lq.exp());
            kl += pi * (lp - lq);
            g[i] += (weight * temperature * (qi - pi)) as f32;
        }
        total += temperature * temperature * kl.max(0.0);
    }
    total
}

/// Writes `logits / T` into `out` and returns its log-sum-exp.
fn log_softmax(logits: &[f32], temperature: f64, out: &mut [f64]) -> f64 {
    let mut max = f64::NEG_INFINITY;
    for (o, &v) in out.iter_mut().zip(logits) {
        *o = f64::from(v) / temperature;
        max = max.max(*o);
    }
    max + out.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
}

/// The step directory holding the teacher: the named one, or the newest under a job's folder.
fn teacher_dir(cfg: &DistillConfig) -> Result<PathBuf> {
    if cfg.teacher.as_os_str().is_empty() {
        return Err(teacher_error(
            &cfg.teacher,
            format!("not resolved: teacher_job `{}` must be submitted through a coordinator", cfg.teacher_job),
        ));
    }
    if cfg.teacher.join("model.safetensors").is_file() {
        return Ok(cfg.teacher.clone());
    }
    checkpoint::latest(&cfg.teacher)
        .ok_or_else(|| teacher_error(&cfg.teacher, "no checkpoint there (model.safetensors or step-* folders)".into()))
}

fn teacher_error(path: &Path, reason: String) -> TrainError {
    TrainError::Teacher { path: path.to_path_buf(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loss_at(student: &[f32], teacher: &[f32], classes: usize, t: f64) -> f64 {
        let mut g = vec![0f32; student.len()];
        soft_target_loss(student, teacher, classes, t, 1.0, &mut g)
    }

    #[test]
    fn the_gradient_matches_finite_differences() {
        let student = [0.3f32, -1.2, 2.0, 0.5, 0.1, -0.4];
        let teacher = [1.5f32, 0.2, -0.7, -0.3, 0.9, 0.0];
        for t in [1.0, 4.0] {
            let mut g = vec![0f32; 6];
            soft_target_loss(&student, &teacher, 3, t, 1.0, &mut g);
            for i in 0..6 {
                let h = 1e-3f32;
                let (mut up, mut down) = (student, student);
                up[i] += h;
                down[i] -= h;
                let numeric = (loss_at(&up, &teacher, 3, t) - loss_at(&down, &teacher, 3, t)) / (2.0 * f64::from(h));
                assert!((numeric - f64::from(g[i])).abs() < 1e-3, "T = {t}, logit {i}: {numeric} vs {}", g[i]);
            }
        }
    }

    #[test]
    fn a_student_that_matches_its_teacher_has_no_soft_loss() {
        let logits = [2.0f32, -1.0, 0.5, 0.0, 0.0, 3.0];
        let mut g = vec![0.25f32; 6];
        let loss = soft_target_loss(&logits, &logits, 3, 2.0, 1.0, &mut g);
        assert!(loss.abs() < 1e-12, "{loss}");
        assert!(g.iter().all(|&v| (v - 0.25).abs() < 1e-6), "the gradient is added, and zero here: {g:?}");
        assert!(loss_at(&[0.0, 0.0, 4.0], &[4.0, 0.0, 0.0], 3, 2.0) > 1.0);
    }
}
