//! The entry point: `train` picks the way this rank cooperates from its [`Peers`] and runs the
//! step loop with it. The loop and its report types live in `engine`; they are re-exported here
//! under the paths the worker has always used.

use shoal_common::spec::TrainConfig;

use crate::collective::{Collective, ParamStore};
use crate::compress::{Distill, Pruner, quantize_job};
use crate::coop::{AllReduce, Alone, ParamServer, Pipeline};
use crate::data::Splits;
pub use crate::engine::{EvalPoint, Host, Outcome, Report, RunOptions, Stop, Summary, TrainPoint, evaluate};
use crate::engine::{Labels, Objective};
use crate::error::Result;
use crate::link::PipePeers;

/// Who else takes part in training, if anyone.
pub enum Peers<'a> {
    /// A single worker.
    Alone,
    /// Data-parallel ranks that sum gradients every step.
    AllReduce(&'a mut dyn Collective),
    /// Data-parallel ranks synchronised through parameter servers.
    ParamServer(&'a mut dyn ParamStore),
    /// One stage of a pipeline (and its replicas).
    Pipeline(PipePeers<'a>),
}

/// Trains `cfg` on already loaded data. With peers this runs one data-parallel rank on its shard
/// of the data: gradients are summed across ranks every step (all-reduce), or pushed to parameter
/// servers that apply the optimizer and serve the parameters back; or one pipeline stage.
///
/// The loss is the labels', or for `[distill]` jobs the teacher's softened outputs as well.
/// `[prune]` jobs are masked on their schedule; their final checkpoint is rewritten as the
/// compressed artifact and the summary carries the sparsity report. `[quantize]` jobs (trained
/// with fake quantization when `aware`) get an int8 artifact inside their final checkpoint, and
/// its report in the summary.
pub fn train(
    cfg: &TrainConfig,
    data: Splits,
    opts: &RunOptions,
    host: &mut dyn Host,
    peers: Peers<'_>,
) -> Result<Outcome> {
    let mut teacher = match &cfg.distill {
        Some(d) => {
            let (teacher, line) =
                Distill::load(d, &data.train.shape(), data.transforms.as_ref(), &opts.backend(), opts.threads.max(1))?;
            tracing::info!("{line}");
            Some(teacher)
        }
        None => None,
    };
    let objective: &mut dyn Objective = match teacher.as_mut() {
        Some(t) => t,
        None => &mut Labels,
    };
    let outcome = match cfg.prune {
        None => train_with(cfg, data, opts, host, peers, objective)?,
        Some(prune) => {
            let mut pruner = Pruner::new(prune, &cfg.model, objective);
            let outcome = train_with(cfg, data, opts, host, peers, &mut pruner)?;
            let Outcome::Completed(mut summary) = outcome else { return Ok(outcome) };
            if let Some(dir) = &summary.checkpoint {
                pruner.finish(dir)?;
            }
            summary.extra.extend(pruner.report());
            Outcome::Completed(summary)
        }
    };
    // Quantization comes last, so that a pruned model is quantized at its final size.
    match (outcome, &cfg.quantize) {
        (Outcome::Completed(mut summary), Some(q)) => {
            if let Some(dir) = &summary.checkpoint {
                let report = quantize_job(q, dir)?;
                tracing::info!(
                    artifact = %report.artifact.display(),
                    accuracy = report.accuracy,
                    fp32_accuracy = report.fp32_accuracy,
                    bytes = report.bytes,
                    "quantized the final checkpoint to int8"
                );
                summary.extra.extend(report.figures());
            }
            Ok(Outcome::Completed(summary))
        }
        (outcome, _) => Ok(outcome),
    }
}

/// [`train`] with the loss of each micro-batch taken from `objective` (distillation, penalties).
pub fn train_with(
    cfg: &TrainConfig,
    data: Splits,
    opts: &RunOptions,
    host: &mut dyn Host,
    peers: Peers<'_>,
    objective: &mut dyn Objective,
) -> Result<Outcome> {
    match peers {
        Peers::Alone => crate::engine::run(cfg, data, opts, host, &mut Alone, objective),
        Peers::AllReduce(c) => crate::engine::run(cfg, data, opts, host, &mut AllReduce::new(c), objective),
        Peers::ParamServer(s) => crate::engine::run(cfg, data, opts, host, &mut ParamServer::new(s), objective),
        Peers::Pipeline(p) => crate::engine::run(cfg, data, opts, host, &mut Pipeline::new(p), objective),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::Arc;

    use shoal_common::spec::load_toml;

    use super::*;
    use crate::backend::{Backend, Tensor};
    use crate::checkpoint;
    use crate::data;
    use crate::model::Model;
    use crate::nn::loss::{LossOutput, Targets, loss_and_grad};
    use crate::nn::{Ctx, Mode};
    use crate::rng::Rng;

    struct Recorder {
        reports: Vec<Report>,
        stop_after: Option<(u64, Stop)>,
        steps_seen: std::cell::Cell<u64>,
    }

    impl Recorder {
        fn new() -> Self {
            Self { reports: Vec::new(), stop_after: None, steps_seen: std::cell::Cell::new(0) }
        }
    }

    impl Host for Recorder {
        fn report(&mut self, report: Report) {
            if let Report::Train(p) = &report {
                self.steps_seen.set(p.step);
            }
            self.reports.push(report);
        }

        fn stop(&self) -> Option<Stop> {
            self.stop_after.and_then(|(at, s)| (self.steps_seen.get() >= at).then_some(s))
        }
    }

    fn config(extra: &str) -> TrainConfig {
        load_toml(&config_text(extra)).expect("valid spec").1
    }

    fn config_text(extra: &str) -> String {
        format!(
            r#"
            name = "unit"
            [model]
            kind = "mlp"
            layers = [{{ width = 32 }}]
            [dataset]
            kind = "synthetic_classification"
            samples = 1200
            features = 10
            classes = 3
            validation_split = 0.25
            [optimizer]
            kind = "sgd"
            lr = 0.1
            momentum = 0.9
            [training]
            batch_size = 32
            seed = 5
            log_every = 5
            {extra}
            "#
        )
    }

    #[test]
    fn loss_falls_on_a_learnable_task() {
        let cfg = config("epochs = 6");
        let splits = data::load(&cfg.dataset).expect("data");
        let mut host = Recorder::new();
        let outcome = train(&cfg, splits, &RunOptions { threads: 1, ..Default::default() }, &mut host, Peers::Alone)
            .expect("train");
        let Outcome::Completed(s) = outcome else { panic!("not completed: {outcome:?}") };
        assert_eq!(s.steps, 6 * 29);
        assert!(s.last10_loss < 0.5 * s.first_loss, "loss {} -> {}", s.first_loss, s.last10_loss);
        let val = s.validation.expect("validation");
        assert!(val.accuracy.expect("accuracy") > 0.8, "{val:?}");
        let trains = host.reports.iter().filter(|r| matches!(r, Report::Train(_))).count();
        assert_eq!(trains, (6 * 29) / 5 + 1);
        let evals = host.reports.iter().filter(|r| matches!(r, Report::Validation(_))).count();
        assert_eq!(evals, 6, "one validation per epoch end");
    }

    #[test]
    fn a_drained_run_resumes_to_the_same_parameters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config("steps = 40\ncheckpoint_every = 15");
        let opts = |sub: &str, resume: Option<PathBuf>| RunOptions {
            checkpoint_dir: Some(dir.path().join(sub)),
            resume_from: resume,
            threads: 1,
            spec_toml: String::new(),
            keep_checkpoints: 3,
            ..Default::default()
        };
        let straight =
            train(&cfg, data::load(&cfg.dataset).expect("data"), &opts("a", None), &mut Recorder::new(), Peers::Alone)
                .expect("train");
        let Outcome::Completed(straight) = straight else { panic!("not completed") };

        let mut host = Recorder::new();
        host.stop_after = Some((20, Stop::Drain));
        let first = train(&cfg, data::load(&cfg.dataset).expect("data"), &opts("b", None), &mut host, Peers::Alone)
            .expect("train");
        let Outcome::Interrupted { step, checkpoint } = first else { panic!("not interrupted: {first:?}") };
        assert_eq!(step, 20);
        let resumed = train(
            &cfg,
            data::load(&cfg.dataset).expect("data"),
            &opts("b", checkpoint),
            &mut Recorder::new(),
            Peers::Alone,
        )
        .expect("resume");
        let Outcome::Completed(resumed) = resumed else { panic!("not completed") };

        let a = checkpoint::load(&straight.checkpoint.expect("ckpt")).expect("load");
        let b = checkpoint::load(&resumed.checkpoint.expect("ckpt")).expect("load");
        assert_eq!(a.state.step, 40);
        for (name, t) in &a.model {
            let u = t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("vec");
            let v = b.model[name].flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("vec");
            assert_eq!(u, v, "{name} differs after resuming");
        }
    }

    #[test]
    fn transforms_are_saved_with_each_checkpoint_and_applied_on_resume() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = config_text("steps = 40\ncheckpoint_every = 15").replace(
            "classes = 3",
            "classes = 3\ntransforms = [{ kind = \"standardize\" }, { kind = \"pca\", components = 4 }]",
        );
        let cfg = load_toml(&text).expect("valid spec").1;
        let opts = |resume: Option<PathBuf>| RunOptions {
            checkpoint_dir: Some(dir.path().join("job")),
            resume_from: resume,
            threads: 1,
            spec_toml: text.clone(),
            keep_checkpoints: 3,
            ..Default::default()
        };
        let splits = data::load(&cfg.dataset).expect("data");
        let fitted = splits.transforms.clone().expect("fitted");
        assert_eq!(splits.train.shape().features, 4, "the model reads the transforms' outputs");
        let mut host = Recorder::new();
        host.stop_after = Some((20, Stop::Drain));
        let first = train(&cfg, splits, &opts(None), &mut host, Peers::Alone).expect("train");
        let Outcome::Interrupted { checkpoint: Some(at), .. } = first else { panic!("not interrupted: {first:?}") };
        let every = checkpoint::list(&dir.path().join("job"));
        assert_eq!(every.len(), 2, "steps 15 and 20: {every:?}");
        for d in &every {
            assert_eq!(checkpoint::load(d).expect("load").transforms.as_ref(), Some(&fitted), "{}", d.display());
        }

        // The saved pipeline is what a resumed run applies: replaced by one fitted on other
        // rows, it is that one the run goes on with, and data fitted afresh is refused.
        let raw_cfg = shoal_common::spec::DatasetConfig { transforms: Vec::new(), ..cfg.dataset.clone() };
        let raw = data::load(&raw_cfg).expect("raw");
        let other =
            shoal_analysis::reduce::Pipeline::fit(&cfg.dataset.transforms, &raw.train.x[..100 * 10], 100, 10, None, 0)
                .expect("fit");
        assert_ne!(other, fitted);
        std::fs::write(at.join(checkpoint::TRANSFORMS_FILE), serde_json::to_vec(&other).expect("json")).expect("write");
        let err = train(
            &cfg,
            data::load(&cfg.dataset).expect("data"),
            &opts(Some(at.clone())),
            &mut Recorder::new(),
            Peers::Alone,
        )
        .expect_err("refitted data is refused");
        assert!(err.to_string().contains("its saved transforms are not the ones the data went through"), "{err}");
        let continued = data::load_continuing(&cfg.dataset, Some(&at)).expect("data");
        assert_eq!(continued.transforms.as_ref(), Some(&other));
        let val = continued.validation.clone().expect("validation");
        let resumed = train(&cfg, continued, &opts(Some(at)), &mut Recorder::new(), Peers::Alone).expect("resume");
        let Outcome::Completed(s) = resumed else { panic!("not completed: {resumed:?}") };
        let last = s.checkpoint.expect("final checkpoint");
        assert_eq!(checkpoint::load(&last).expect("load").transforms, Some(other.clone()));

        // Predicting from the final checkpoint prepares raw rows into the validation features.
        let prep = data::Preparation::of_artifact(&last, &cfg).expect("preparation");
        assert_eq!((prep.inputs(), prep.outputs(10)), (Some(10), 4));
        let raw_val = raw.validation.expect("validation");
        assert_eq!(prep.prepare(raw_val.x.clone(), 10).expect("prepare"), val.x);
        let err = prep.prepare(raw_val.x[..9].to_vec(), 9).expect_err("width");
        assert_eq!(err.to_string(), "--data: has 9 features, the model's transforms take 10");
        assert!(data::Preparation::of(&cfg.dataset).is_err(), "a job with transforms is prepared from its artifact");
        // Gradients of the model's 4 inputs go back to the 10 raw columns through the transforms.
        let mut grad = vec![1.0; 2 * 4];
        prep.pull_back(&mut grad);
        assert_eq!(grad, other.pull_back(&[1.0; 8], 2));
        assert_eq!(grad.len(), 2 * 10);
    }

    #[test]
    fn cancellation_stops_between_steps() {
        let cfg = config("steps = 1000");
        let mut host = Recorder::new();
        host.stop_after = Some((10, Stop::Cancel));
        let outcome = train(
            &cfg,
            data::load(&cfg.dataset).expect("data"),
            &RunOptions { threads: 1, ..Default::default() },
            &mut host,
            Peers::Alone,
        )
        .expect("train");
        assert!(matches!(outcome, Outcome::Cancelled { step: 10 }), "{outcome:?}");
    }

    #[test]
    fn regression_reports_r2() {
        let text = r#"
            name = "reg"
            [model]
            kind = "mlp"
            layers = [{ width = 16, activation = "tanh" }]
            [dataset]
            kind = "synthetic_regression"
            samples = 800
            features = 5
            noise = 0.05
            [optimizer]
            kind = "adamw"
            lr = 0.01
            [training]
            batch_size = 32
            epochs = 15
        "#;
        let cfg = load_toml(text).expect("valid").1;
        let outcome = train(
            &cfg,
            data::load(&cfg.dataset).expect("data"),
            &RunOptions { threads: 1, ..Default::default() },
            &mut Recorder::new(),
            Peers::Alone,
        )
        .expect("train");
        let Outcome::Completed(s) = outcome else { panic!("not completed") };
        let val = s.validation.expect("validation");
        assert!(val.accuracy.is_none());
        assert!(val.r2.expect("r2") > 0.9, "{val:?}");
    }

    /// A distillation-shaped objective, written without touching the loop: the labels' loss plus
    /// `weight` times the squared distance to a teacher's outputs (here the same architecture from
    /// another seed), with the two gradients summed.
    struct Distill {
        teacher: Model,
        weight: f32,
        calls: usize,
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
            self.calls += 1;
            let (soft, _) = self.teacher.forward(input, &mut Ctx::new(Mode::Eval, 1, Rng::new(0)))?;
            let soft = Targets::Values { width: soft.dims()[1], values: backend.to_host(&soft)? };
            let hard = loss_and_grad(backend, output, targets, scale)?;
            let pull = loss_and_grad(backend, output, &soft, scale * self.weight)?;
            Ok(LossOutput {
                loss_sum: hard.loss_sum + f64::from(self.weight) * pull.loss_sum,
                correct: hard.correct,
                rows: hard.rows,
                grad: backend.add(&hard.grad, &pull.grad)?,
            })
        }
    }

    #[test]
    fn a_custom_objective_plugs_into_the_loop() {
        let cfg = config("steps = 40");
        let opts = RunOptions { threads: 1, ..Default::default() };
        let splits = data::load(&cfg.dataset).expect("data");
        let teacher = Model::build(&cfg.model, &splits.train.shape(), 99).expect("teacher");
        let mut distill = Distill { teacher, weight: 1.0, calls: 0 };
        let outcome = train_with(&cfg, splits, &opts, &mut Recorder::new(), Peers::Alone, &mut distill).expect("train");
        let Outcome::Completed(d) = outcome else { panic!("not completed: {outcome:?}") };
        assert_eq!(distill.calls, 40, "one loss per micro-batch");
        let plain = train(&cfg, data::load(&cfg.dataset).expect("data"), &opts, &mut Recorder::new(), Peers::Alone)
            .expect("train");
        let Outcome::Completed(p) = plain else { panic!("not completed") };
        assert!(d.first_loss > p.first_loss, "the teacher term adds to the loss: {} vs {}", d.first_loss, p.first_loss);
        assert!(d.last10_loss < d.first_loss, "loss {} -> {}", d.first_loss, d.last10_loss);
    }

    /// Rank 0 of two whose twin holds the same values: host sums double, broadcasts change
    /// nothing, device sums are only recorded (nothing is read or written through their spans).
    #[derive(Default)]
    struct Twin {
        host_sums: Vec<usize>,
        device_groups: Vec<usize>,
        finishes: usize,
    }

    impl Collective for Twin {
        fn rank(&self) -> usize {
            0
        }

        fn world_size(&self) -> usize {
            2
        }

        fn all_reduce(&mut self, buf: &mut [f32], op: crate::ReduceOp) -> Result<(), crate::CollectiveError> {
            self.host_sums.push(buf.len());
            if op == crate::ReduceOp::Sum {
                buf.iter_mut().for_each(|v| *v *= 2.0);
            }
            Ok(())
        }

        fn broadcast(&mut self, _: &mut [f32], _: usize) -> Result<(), crate::CollectiveError> {
            Ok(())
        }

        fn all_gather_u64(&mut self, value: u64) -> Result<Vec<u64>, crate::CollectiveError> {
            Ok(vec![value, value])
        }

        fn on_device(&mut self) -> Option<&mut dyn crate::DeviceCollective> {
            Some(self)
        }
    }

    impl crate::DeviceCollective for Twin {
        fn queue_sum(&mut self, spans: &[crate::DeviceSpan], _: u64) -> Result<(), crate::CollectiveError> {
            self.device_groups.push(spans.len());
            Ok(())
        }

        fn finish(&mut self, _: u64) -> Result<(), crate::CollectiveError> {
            self.finishes += 1;
            Ok(())
        }
    }

    #[test]
    fn gradients_in_device_memory_go_to_the_device_collective_bucket_by_bucket() {
        // Parameters 10x32 + 32, 32x3 + 3 values; 256-value buckets from the last parameter:
        // [3, 96, 32] and [320], the stop flag riding in the last.
        let cfg = config("steps = 4\n[allreduce]\nbucket_mb = 0.0009765625");
        let splits = data::load(&cfg.dataset).expect("data");
        let opts = RunOptions {
            threads: 1,
            backend: Some(Arc::new(crate::backend::spanned::Spanned::new())),
            ..Default::default()
        };
        let mut twin = Twin::default();
        let outcome = train(&cfg, splits, &opts, &mut Recorder::new(), Peers::AllReduce(&mut twin)).expect("train");
        let Outcome::Completed(s) = outcome else { panic!("not completed: {outcome:?}") };
        assert_eq!(s.steps, 4);
        assert_eq!(twin.device_groups, [3, 2].repeat(4), "two buckets a step, the flag in the second");
        assert_eq!(twin.finishes, 4, "one wait a step");
        assert!(twin.host_sums.iter().all(|&n| n < 32), "no gradient went through host buffers: {:?}", twin.host_sums);
    }

    /// A digits MLP run to completion; `tail` holds sections after `[training]`.
    fn digits_run(
        layers: &str,
        dataset: &str,
        training: &str,
        tail: &str,
        checkpoints: Option<&std::path::Path>,
    ) -> Summary {
        digits_model_run(&format!("kind = \"mlp\"\nlayers = {layers}"), dataset, training, tail, checkpoints)
    }

    /// [`digits_run`] with the whole `[model]` section.
    fn digits_model_run(
        model: &str,
        dataset: &str,
        training: &str,
        tail: &str,
        checkpoints: Option<&std::path::Path>,
    ) -> Summary {
        let text = format!(
            "name = \"digits\"\n[model]\n{model}\n[dataset]\nkind = \"digits\"\n{dataset}\n\
             [optimizer]\nkind = \"sgd\"\nlr = 0.05\nmomentum = 0.9\n[training]\nbatch_size = 32\n{training}\n{tail}\n"
        );
        let cfg = load_toml(&text).expect("valid spec").1;
        let opts = RunOptions {
            threads: 1,
            checkpoint_dir: checkpoints.map(std::path::Path::to_path_buf),
            spec_toml: text.clone(),
            keep_checkpoints: 1,
            ..Default::default()
        };
        let outcome = train(&cfg, data::load(&cfg.dataset).expect("data"), &opts, &mut Recorder::new(), Peers::Alone)
            .expect("train");
        let Outcome::Completed(s) = outcome else { panic!("not completed: {outcome:?}") };
        s
    }

    /// Final validation accuracy of a digits MLP, trained alone or distilled.
    fn digits_accuracy(
        layers: &str,
        dataset: &str,
        training: &str,
        distill: &str,
        checkpoints: Option<&std::path::Path>,
    ) -> f64 {
        let s = digits_run(layers, dataset, training, distill, checkpoints);
        s.validation.and_then(|v| v.accuracy).expect("accuracy")
    }

    /// Validation accuracy of the model in a checkpoint, built from the job file saved with it.
    fn accuracy_of_artifact(dir: &std::path::Path) -> f64 {
        let text = std::fs::read_to_string(dir.join(checkpoint::SPEC_FILE)).expect("job file");
        let cfg = load_toml(&text).expect("valid job file").1;
        let splits = data::load(&cfg.dataset).expect("data");
        let mut model = Model::build(&cfg.model, &splits.train.shape(), 0).expect("model");
        model.load_named(&checkpoint::load(dir).expect("load").model, dir).expect("weights fit");
        let started = std::time::Instant::now();
        let val = splits.validation.as_ref().expect("validation");
        let point = evaluate(&model, val, 1, 0, 0, started, None).expect("evaluate");
        point.accuracy.expect("accuracy")
    }

    fn model_bytes(dir: &std::path::Path) -> u64 {
        std::fs::metadata(dir.join(checkpoint::MODEL_FILE)).expect("model file").len()
    }

    #[test]
    fn structured_pruning_halves_the_hidden_units_and_keeps_the_accuracy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layers = "[{ width = 128 }, { width = 128 }]";
        let base = digits_run(layers, "", "epochs = 20\nseed = 1", "", Some(&dir.path().join("base")));
        let base_dir = base.checkpoint.expect("checkpoint");
        let base_acc = base.validation.and_then(|v| v.accuracy).expect("accuracy");
        let tail = format!(
            "[inherit]\ncheckpoint = \"{}\"\nmodel = {{ kind = \"mlp\", layers = {layers} }}\n\
             [prune]\nmethod = \"structured\"\nsparsity = 0.5\n",
            base_dir.display()
        );
        let pruned = digits_run(layers, "", "steps = 200\nseed = 1", &tail, Some(&dir.path().join("pruned")));
        let pruned_dir = pruned.checkpoint.clone().expect("checkpoint");
        let acc = pruned.validation.as_ref().and_then(|v| v.accuracy).expect("accuracy");
        assert!(acc >= base_acc - 0.02, "pruned {acc:.4}, base {base_acc:.4}");
        let report: HashMap<String, f64> = pruned.extra.iter().cloned().collect();
        assert_eq!(report["width/layers.0"], 64.0, "{report:?}");
        assert_eq!(report["width/layers.1"], 64.0, "{report:?}");
        assert!(model_bytes(&pruned_dir) * 2 <= model_bytes(&base_dir), "the artifact must halve");
        let job = std::fs::read_to_string(pruned_dir.join(checkpoint::SPEC_FILE)).expect("job file");
        assert!(!job.contains("[prune]") && !job.contains("[inherit]"), "{job}");
        let again = accuracy_of_artifact(&pruned_dir);
        assert!((again - acc).abs() < 1e-9, "the smaller model computes what the masked one did: {again} vs {acc}");
    }

    /// Conv channels go as whole filters: the next conv loses their input channels, the linear
    /// layer after the pooling their pooled pixels, and the smaller CNN computes what the masked
    /// one did.
    #[test]
    fn structured_pruning_removes_conv_channels() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = "kind = \"cnn\"\nlayers = [{ type = \"conv\", channels = 8, kernel = 3, padding = 1 }, \
                     { type = \"pool\", pool = \"max\", size = 2 }, { type = \"conv\", channels = 8, kernel = 3, padding = 1 }, \
                     { width = 32 }]";
        let base = digits_model_run(model, "", "epochs = 4\nseed = 1", "", Some(&dir.path().join("base")));
        let base_dir = base.checkpoint.expect("checkpoint");
        let base_acc = base.validation.and_then(|v| v.accuracy).expect("accuracy");
        let tail = format!(
            "[inherit]\ncheckpoint = \"{}\"\n[prune]\nmethod = \"structured\"\nsparsity = 0.5\n",
            base_dir.display()
        );
        let pruned = digits_model_run(model, "", "steps = 100\nseed = 1", &tail, Some(&dir.path().join("pruned")));
        let pruned_dir = pruned.checkpoint.clone().expect("checkpoint");
        let acc = pruned.validation.as_ref().and_then(|v| v.accuracy).expect("accuracy");
        let report: HashMap<String, f64> = pruned.extra.iter().cloned().collect();
        assert_eq!(report["width/layers.0"], 4.0, "{report:?}");
        assert_eq!(report["width/layers.2"], 4.0, "{report:?}");
        assert_eq!(report["width/layers.3"], 16.0, "{report:?}");
        assert!(acc >= base_acc - 0.03, "pruned {acc:.4}, base {base_acc:.4}");
        let job = std::fs::read_to_string(pruned_dir.join(checkpoint::SPEC_FILE)).expect("job file");
        assert_eq!(job.matches("channels = 4").count(), 2, "{job}");
        let again = accuracy_of_artifact(&pruned_dir);
        assert!((again - acc).abs() < 1e-9, "the smaller model computes what the masked one did: {again} vs {acc}");
        assert!(model_bytes(&pruned_dir) * 2 <= model_bytes(&base_dir), "the artifact must halve");
    }

    #[test]
    fn gradual_magnitude_pruning_stores_the_weights_sparsely() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tail = "[prune]\nmethod = \"magnitude\"\nsparsity = 0.8\nschedule = \"gradual\"\n\
                    begin_step = 100\nend_step = 400\nfrequency = 50\n";
        let layers = "[{ width = 128 }]";
        let dense = digits_run(layers, "", "steps = 600\nseed = 1", "", Some(&dir.path().join("dense")));
        let pruned = digits_run(layers, "", "steps = 600\nseed = 1", tail, Some(&dir.path().join("pruned")));
        let pruned_dir = pruned.checkpoint.clone().expect("checkpoint");
        let report: HashMap<String, f64> = pruned.extra.iter().cloned().collect();
        assert!((report["sparsity"] - 0.8).abs() < 1e-3, "{report:?}");
        let acc = pruned.validation.as_ref().and_then(|v| v.accuracy).expect("accuracy");
        let dense_acc = dense.validation.and_then(|v| v.accuracy).expect("accuracy");
        assert!(acc >= dense_acc - 0.03, "pruned {acc:.4}, dense {dense_acc:.4}");
        let (small, big) = (model_bytes(&pruned_dir), model_bytes(&dense.checkpoint.expect("checkpoint")));
        assert!(small * 2 < big, "sparse storage: {small} bytes vs {big} dense");
        let again = accuracy_of_artifact(&pruned_dir);
        assert!((again - acc).abs() < 1e-9, "the sparse artifact loads to the same model: {again} vs {acc}");
    }

    /// A 16-unit student that sees a tenth of the digits learns far more from a wide teacher's
    /// softened outputs than from its labels alone, from the same seed and steps.
    #[test]
    fn a_distilled_student_beats_the_same_student_trained_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let teacher =
            digits_accuracy("[{ width = 256 }, { width = 128 }]", "", "epochs = 30\nseed = 1", "", Some(dir.path()));
        let (student, data, training) = ("[{ width = 16 }]", "train_fraction = 0.1", "steps = 300\nseed = 2");
        let alone = digits_accuracy(student, data, training, "", None);
        let distill = format!("[distill]\nteacher = \"{}\"\ntemperature = 4.0\nalpha = 0.7", dir.path().display());
        let distilled = digits_accuracy(student, data, training, &distill, None);
        assert!(teacher > 0.95, "teacher {teacher}");
        assert!(distilled > alone + 0.03, "teacher {teacher:.4}: alone {alone:.4}, distilled {distilled:.4}");
    }

    /// Clipping at the 20th percentile wrecks int8; with a budget the layers go back to fp32,
    /// most sensitive first, until it holds, and the report says which.
    #[test]
    fn quantization_under_a_budget_returns_layers_to_fp32_until_it_holds() {
        use crate::compress::{Calibration, QuantizeOptions, quantize};
        let dir = tempfile::tempdir().expect("tempdir");
        let base = digits_run("[{ width = 64 }, { width = 64 }]", "", "epochs = 10\nseed = 1", "", Some(dir.path()));
        let ckpt = base.checkpoint.expect("checkpoint");
        let opts = |budget| QuantizeOptions {
            calibration: Calibration::Percentile(20.0),
            batches: 4,
            batch: 64,
            max_accuracy_drop: budget,
        };
        let wrecked = quantize(&ckpt, &dir.path().join("a"), &opts(None)).expect("quantize");
        assert!(wrecked.accuracy_drop > 0.05, "{wrecked:?}");
        let held = quantize(&ckpt, &dir.path().join("b"), &opts(Some(0.01))).expect("quantize");
        assert!(held.met && held.accuracy_drop <= 0.01, "{held:?}");
        assert!(held.precision.iter().any(|(_, p)| *p == "fp32"), "{held:?}");
        assert!(held.accuracy > wrecked.accuracy);
    }

    /// Fake quantization changes what trains (same seed, different losses) and the int8 artifact
    /// the job exports computes what the job validated, to a few samples.
    #[test]
    fn quantization_aware_training_trains_what_int8_computes() {
        let figures = |s: &Summary| -> HashMap<String, f64> { s.extra.iter().cloned().collect() };
        let (layers, training) = ("[{ width = 32 }]", "epochs = 4\nseed = 3");
        let dir = tempfile::tempdir().expect("tempdir");
        let ptq = digits_run(layers, "", training, "[quantize]", Some(&dir.path().join("ptq")));
        let qat = digits_run(layers, "", training, "[quantize]\naware = true", Some(&dir.path().join("qat")));
        assert_ne!(ptq.last_loss, qat.last_loss, "fake quantization must change training");
        let (p, q) = (figures(&ptq), figures(&qat));
        let validated = qat.validation.as_ref().and_then(|v| v.accuracy).expect("accuracy");
        assert!((q["int8/accuracy"] - validated).abs() <= 3.0 / 360.0, "{q:?} vs {validated}");
        assert!(q["int8/accuracy"] >= p["int8/accuracy"] - 1.0 / 360.0, "qat {q:?}, ptq {p:?}");
        let artifact = qat.checkpoint.expect("checkpoint").join(crate::compress::JOB_ARTIFACT_DIR);
        assert!(artifact.join(crate::compress::REPORT_FILE).is_file());
    }
}
