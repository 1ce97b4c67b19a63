//! The `evaluate` section: an evaluation job scores a trained artifact on a CSV file and trains
//! nothing, so the sections that describe training are placeholders, and those a user gives are
//! refused.

use std::path::PathBuf;

use crate::proto::{self, JobSpec};
use crate::spec::config::EvaluateConfig;
use crate::spec::errors::FieldErrors;

/// The validated section, with its defaults.
pub(super) fn evaluate(c: &mut FieldErrors, e: &proto::EvaluateSpec) -> EvaluateConfig {
    let artifact = e.artifact.trim();
    if artifact.is_empty() {
        c.fail(
            "evaluate.artifact",
            "must name the artifact to score (a checkpoint step directory or an int8 artifact)",
        );
    }
    let data = e.data.trim();
    if data.is_empty() {
        c.fail("evaluate.data", "must name the CSV file to score");
    }
    let buckets = bounded(
        c,
        "evaluate.buckets",
        e.buckets,
        EvaluateConfig::DEFAULT_BUCKETS,
        EvaluateConfig::MIN_BUCKETS,
        EvaluateConfig::MAX_BUCKETS,
    );
    let resamples = bounded(
        c,
        "evaluate.resamples",
        e.resamples,
        EvaluateConfig::DEFAULT_RESAMPLES,
        1,
        EvaluateConfig::MAX_RESAMPLES,
    );
    let seed = e.seed.map_or(EvaluateConfig::DEFAULT_SEED, |s| c.non_negative("evaluate.seed", s));
    let slice_by = e.slice_by.iter().enumerate().map(|(i, s)| slice(c, i, s)).collect();
    let groups = given(&e.groups);
    let baseline = given(&e.baseline);
    if baseline.is_some() && groups.is_none() {
        c.fail("evaluate.baseline", "needs evaluate.groups (the column whose groups it is one of)");
    }
    let ignore = e
        .ignore
        .iter()
        .enumerate()
        .map(|(i, col)| {
            if col.trim().is_empty() {
                c.fail(format!("evaluate.ignore[{i}]"), "must name a column");
            }
            col.trim().to_owned()
        })
        .collect();
    EvaluateConfig {
        artifact: PathBuf::from(artifact),
        data: PathBuf::from(data),
        label_column: given(&e.label_column),
        slice_by,
        buckets,
        groups,
        baseline,
        positive_class: given(&e.positive_class),
        resamples,
        seed,
        ignore,
        output: given(&e.output).map(PathBuf::from),
        html: given(&e.html).map(PathBuf::from),
    }
}

/// Refuses what an evaluation job cannot have: the sections that describe a model and its
/// training (they come from the artifact), the other job kinds and model treatments, pipeline
/// stages, an elastic range and parameter servers.
pub(super) fn refuse_training(c: &mut FieldErrors, spec: &JobSpec) {
    let from_artifact = "an evaluation job reads its model and data preparation from evaluate.artifact";
    for (section, given) in
        [("model", spec.model.is_some()), ("dataset", spec.dataset.is_some()), ("optimizer", spec.optimizer.is_some())]
    {
        if given {
            c.fail(section, format!("{from_artifact}; remove [{section}]"));
        }
    }
    let trains_nothing = "an evaluation job trains nothing";
    for (section, given, what) in [
        ("search", spec.search.is_some(), "it cannot be a search"),
        ("command", spec.command.is_some(), "it cannot run an external trial"),
        ("inherit", spec.inherit.is_some(), "name the parent's checkpoint in evaluate.artifact instead"),
        ("distill", spec.distill.is_some(), "it cannot distill"),
        ("prune", spec.prune.is_some(), "prune with a training job, then evaluate its checkpoint"),
        ("quantize", spec.quantize.is_some(), "quantize with a training job, then evaluate its int8 artifact"),
        ("training.qat", spec.training.as_ref().is_some_and(|t| t.qat), "it cannot train quantization-aware"),
    ] {
        if given {
            c.fail(section, format!("{trains_nothing}: {what}"));
        }
    }
    let p = spec.parallelism.unwrap_or_default();
    if p.pipeline.is_some_and(|n| n != 1) {
        c.fail(
            "parallelism.pipeline",
            "must be 1: each rank of an evaluation job scores its rows with the whole model",
        );
    }
    if p.data_min.is_some() {
        c.fail("parallelism.data", "an evaluation job runs on a fixed number of ranks, not an elastic range");
    }
    if spec.sync == "ps" {
        c.fail("sync", "an evaluation job has no parameters to keep in step: parameter servers do not apply");
    }
}

/// `spec` with harmless placeholders in the sections an evaluation job does not use, so that the
/// rest of validation checks only what applies (ranks, resources, timeouts). Whatever the user gave
/// there has been refused by [`refuse_training`].
pub(super) fn placeholders(spec: &JobSpec) -> JobSpec {
    let mut filled = spec.clone();
    filled.model = Some(proto::ModelSpec { kind: "mlp".into(), ..Default::default() });
    filled.dataset = Some(proto::DatasetSpec { kind: "digits".into(), ..Default::default() });
    filled.optimizer = None;
    let t = filled.training.get_or_insert_with(Default::default);
    t.qat = false;
    if t.batch_size == 0 {
        t.batch_size = 1;
    }
    if t.epochs == 0 && t.steps == 0 {
        t.steps = 1;
    }
    if let Some(p) = filled.parallelism.as_mut() {
        p.pipeline = None;
        p.data_min = None;
    }
    filled.command = None;
    filled.inherit = None;
    filled.distill = None;
    filled.prune = None;
    filled.quantize = None;
    filled
}

/// A trimmed string, `None` when empty.
fn given(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// A count in [lo, hi], `default` when unset; the default stands in for a bad value.
fn bounded(c: &mut FieldErrors, path: &str, value: Option<i64>, default: usize, lo: usize, hi: usize) -> usize {
    let Some(v) = value else { return default };
    if v < lo as i64 || v > hi as i64 {
        c.fail(path, format!("must be in [{lo}, {hi}], got {v}"));
        return default;
    }
    v as usize
}

/// One `slice_by` entry: a column, or a cross of two columns `a*b` (spaces around the parts are
/// dropped), checked by the same rule the evaluation slices by.
fn slice(c: &mut FieldErrors, i: usize, entry: &str) -> String {
    let path = format!("evaluate.slice_by[{i}]");
    match shoal_analysis::slice::columns_of(entry, &path) {
        Ok(parts) => parts.join("*"),
        Err(e) => {
            let reason = match e {
                shoal_analysis::AnalysisError::Invalid { reason, .. } => reason,
                other => other.to_string(),
            };
            c.fail(path, reason);
            entry.trim().to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::fixtures::{DIGITS, errors_of};
    use crate::spec::{EvaluateConfig, load_toml, parse_toml, to_toml};

    const EVALUATE: &str = r#"
        name = "scores"
        [evaluate]
        artifact = "ckpt/digits/step-500"
        data = "data/holdout.csv"
    "#;

    #[test]
    fn a_good_evaluation_job_gets_its_defaults() {
        let (_, cfg) = load_toml(EVALUATE).expect("valid");
        let e = cfg.evaluate.expect("evaluate");
        assert_eq!(
            e,
            EvaluateConfig {
                artifact: PathBuf::from("ckpt/digits/step-500"),
                data: PathBuf::from("data/holdout.csv"),
                label_column: None,
                slice_by: Vec::new(),
                buckets: 4,
                groups: None,
                baseline: None,
                positive_class: None,
                resamples: 1000,
                seed: 0,
                ignore: Vec::new(),
                output: None,
                html: None,
            }
        );
        assert_eq!(cfg.parallel.data, 1);
        assert!(cfg.command.is_none() && cfg.quantize.is_none() && cfg.distill.is_none());
    }

    #[test]
    fn every_setting_is_read_and_trimmed() {
        let text = r#"
            name = "fairness"
            [evaluate]
            artifact = " ckpt/step-9/int8 "
            data = "rows.csv"
            label_column = "income"
            slice_by = ["region", "age * sex"]
            buckets = 10
            groups = "sex"
            baseline = "female"
            positive_class = ">50k"
            resamples = 200
            seed = 3
            ignore = ["id", " row "]
            output = "out/eval.json"
            html = ""
            [parallelism]
            data = 4
            [resources]
            cpus = 2
            [training]
            collective_timeout = 120
        "#;
        let (_, cfg) = load_toml(text).expect("valid");
        assert_eq!((cfg.parallel.data, cfg.parallel.min_data, cfg.resources.cpus), (4, 4, 2));
        assert_eq!(cfg.training.collective_timeout, std::time::Duration::from_secs(120));
        let e = cfg.evaluate.expect("evaluate");
        assert_eq!(e.artifact, PathBuf::from("ckpt/step-9/int8"));
        assert_eq!(e.label_column.as_deref(), Some("income"));
        assert_eq!(e.slice_by, ["region", "age*sex"]);
        assert_eq!((e.buckets, e.resamples, e.seed), (10, 200, 3));
        assert_eq!((e.groups.as_deref(), e.baseline.as_deref()), (Some("sex"), Some("female")));
        assert_eq!(e.positive_class.as_deref(), Some(">50k"));
        assert_eq!(e.ignore, ["id", "row"]);
        assert_eq!(e.output, Some(PathBuf::from("out/eval.json")));
        assert_eq!(e.html, None, "empty is unset");
    }

    #[test]
    fn every_bad_evaluation_field_is_reported_with_its_path() {
        let text = r#"
            name = "bad"
            [evaluate]
            artifact = "  "
            data = ""
            slice_by = ["region", " ", "a*b*c", "a*", "*b"]
            buckets = 1
            baseline = "female"
            resamples = 0
            seed = -1
            ignore = ["id", ""]
        "#;
        let errors = errors_of(text);
        let expected = [
            "evaluate.artifact: must name the artifact to score (a checkpoint step directory or an int8 artifact)",
            "evaluate.data: must name the CSV file to score",
            "evaluate.buckets: must be in [2, 100], got 1",
            "evaluate.resamples: must be in [1, 100000], got 0",
            "evaluate.seed: must be >= 0",
            "evaluate.slice_by[1]: a slice names an empty column",
            "evaluate.slice_by[2]: `a*b*c`: a slice is one column or a cross of two (`a*b`)",
            "evaluate.slice_by[3]: a slice names an empty column",
            "evaluate.slice_by[4]: a slice names an empty column",
            "evaluate.baseline: needs evaluate.groups (the column whose groups it is one of)",
            "evaluate.ignore[1]: must name a column",
        ];
        for e in expected {
            assert!(errors.iter().any(|got| got == e), "missing `{e}` in {errors:#?}");
        }
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        let errors = errors_of(&EVALUATE.replace("[evaluate]", "[evaluate]\nbuckets = 101\nresamples = 100001"));
        assert_eq!(
            errors,
            [
                "evaluate.buckets: must be in [2, 100], got 101",
                "evaluate.resamples: must be in [1, 100000], got 100001"
            ]
        );
    }

    #[test]
    fn training_sections_are_refused() {
        // DIGITS gives [model], [dataset], [optimizer] and [training]; only the first three are refused.
        let errors = errors_of(&format!("{DIGITS}\n[evaluate]\nartifact = \"a\"\ndata = \"d.csv\"\n"));
        let from = "an evaluation job reads its model and data preparation from evaluate.artifact";
        assert_eq!(
            errors,
            [
                format!("model: {from}; remove [model]"),
                format!("dataset: {from}; remove [dataset]"),
                format!("optimizer: {from}; remove [optimizer]"),
            ]
        );
    }

    #[test]
    fn other_job_kinds_and_treatments_are_refused() {
        let text = format!(
            "{EVALUATE}\n[command]\nargv = [\"run\"]\n[inherit]\ncheckpoint = \"p\"\n[distill]\nteacher = \"t\"\n\
             [prune]\nsparsity = 0.5\n[quantize]\n[training]\nqat = true\n[search]\nstrategy = \"random\"\n"
        );
        let errors = errors_of(&text);
        let expected = [
            "search: an evaluation job trains nothing: it cannot be a search",
            "command: an evaluation job trains nothing: it cannot run an external trial",
            "inherit: an evaluation job trains nothing: name the parent's checkpoint in evaluate.artifact instead",
            "distill: an evaluation job trains nothing: it cannot distill",
            "prune: an evaluation job trains nothing: prune with a training job, then evaluate its checkpoint",
            "quantize: an evaluation job trains nothing: quantize with a training job, then evaluate its int8 artifact",
            "training.qat: an evaluation job trains nothing: it cannot train quantization-aware",
        ];
        assert_eq!(errors, expected);
    }

    #[test]
    fn pipelines_elastic_ranges_and_parameter_servers_are_refused() {
        let errors = errors_of(&format!("sync = \"ps\"\n{EVALUATE}\n[parallelism]\ndata = \"2..4\"\npipeline = 2\n"));
        assert_eq!(
            errors,
            [
                "parallelism.pipeline: must be 1: each rank of an evaluation job scores its rows with the whole model",
                "parallelism.data: an evaluation job runs on a fixed number of ranks, not an elastic range",
                "sync: an evaluation job has no parameters to keep in step: parameter servers do not apply",
            ]
        );
        let (_, cfg) = load_toml(&format!("{EVALUATE}\n[parallelism]\ndata = 3\npipeline = 1\n")).expect("valid");
        assert_eq!((cfg.parallel.data, cfg.parallel.pipeline.stages), (3, 1));
    }

    #[test]
    fn the_evaluate_section_round_trips_through_toml() {
        let text = format!(
            "{EVALUATE}\nslice_by = [\"a\", \"b*c\"]\nbuckets = 8\nseed = 0\ngroups = \"g\"\nhtml = \"r.html\"\n\
             [parallelism]\ndata = 2\n"
        );
        let (spec, cfg) = load_toml(&text).expect("valid");
        let rendered = to_toml(&spec);
        assert!(rendered.contains("[evaluate]"), "{rendered}");
        let again = parse_toml(&rendered).expect("re-parse");
        assert_eq!(spec, again);
        let (_, cfg_again) = load_toml(&rendered).expect("still valid");
        assert_eq!(cfg, cfg_again);
        assert_eq!(cfg.evaluate.expect("evaluate").seed, 0);
    }
}
