use super::*;
use crate::space::Space;

const TEMPLATE: &str = r#"
name = "digits-search"
[model]
kind = "mlp"
activation = "relu"
layers = [{ width = 32 }]
[dataset]
kind = "digits"
[optimizer]
kind = "adamw"
lr = 0.01
[training]
batch_size = 32
steps = 90
seed = 3
"#;

fn errors_of(search: &str) -> Vec<String> {
    let spec = shoal_common::spec::parse_toml(&format!("{TEMPLATE}\n{search}")).expect("parse");
    match validate(&spec) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(|f| format!("{}: {}", f.path, f.reason)).collect(),
    }
}

fn job(search: &str) -> SearchJob {
    let spec = shoal_common::spec::parse_toml(&format!("{TEMPLATE}\n{search}")).expect("parse");
    validate(&spec).unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn a_search_section_becomes_a_space_and_trials_become_jobs() {
    let j = job(r#"
[search]
strategy = "evolution"
max_trials = 8
max_concurrent = 2
params = [
  { name = "optimizer.lr", type = "float", low = 1e-4, high = 0.1, log = true },
  { name = "optimizer.kind", values = ["sgd", "adamw"] },
  { name = "optimizer.momentum", low = 0.0, high = 0.95, when = { param = "optimizer.kind", values = ["sgd"] } },
  { name = "training.batch_size", type = "int", low = 16, high = 128, log = true },
]
arch = { min_depth = 1, max_depth = 3, widths = [16, 32, 64], activations = ["relu", "tanh"] }
asha = { eta = 3, min_budget = 10 }
fidelity = { steps = 60, data = 0.5 }
"#);
    assert_eq!(j.config.strategy, StrategyKind::Evolution);
    assert_eq!(j.config.max_budget, 60.0);
    assert!(j.config.maximize);
    assert_eq!(j.config.asha, Some(Asha { eta: 3.0, min_budget: 10.0 }));
    let names: Vec<&str> = j.config.space.params.iter().map(|p| p.name.as_str()).collect();
    assert!(names.contains(&"arch.layers[2].activation"), "{names:?}");
    let mut rng = crate::rng::Rng::new(1);
    for _ in 0..20 {
        let cfg = j.config.space.sample(&mut rng);
        let spec = trial_spec(&j, &cfg, None, false);
        let tc = shoal_common::spec::validate(&spec).expect("every trial is a valid job");
        assert_eq!(spec.optimizer.as_ref().expect("opt").lr, cfg["optimizer.lr"].as_f64());
        assert_eq!(tc.model.layers.len() as i64, cfg["arch.depth"].as_i64().expect("depth"));
        assert_eq!(tc.training.duration, shoal_common::spec::Duration::Steps(60));
        assert_eq!(tc.dataset.train_fraction, 0.5);
        let params: Config = serde_json::from_str(&tc.trial_params).expect("json");
        assert_eq!(Space::key(&params), Space::key(&cfg));
        // Full fidelity for the best configuration's job file.
        let full = shoal_common::spec::validate(&trial_spec(&j, &cfg, None, true)).expect("valid");
        assert_eq!(full.training.duration, shoal_common::spec::Duration::Steps(90));
        assert_eq!(full.dataset.train_fraction, 1.0);
    }
}

#[test]
fn invalid_spaces_get_clear_errors() {
    let e = errors_of(
        r#"
[search]
params = [
  { name = "optimizer.kind", values = [] , type = "choice" },
  { name = "optimizer.lr", low = 0.1, high = 0.01 },
  { name = "optimizer.weight_decay", low = 0.0, high = 0.1, log = true },
  { name = "optimizer.lrr", low = 0.1, high = 1.0 },
  { name = "model.dropout", type = "normal", low = 0.0, high = 0.5 },
]
"#,
    );
    let want = [
        "search.params[0].values: must list at least one choice",
        "search.params[1].low: must be <= high (0.1 > 0.01)",
        "search.params[2].low: a log scale needs low > 0, got 0",
        "search.params[3].name: the trial template has no field `optimizer.lrr`",
        "search.params[4].type: must be choice, int or float, got `normal`",
    ];
    for w in want {
        assert!(e.iter().any(|x| x == w), "missing `{w}` in {e:#?}");
    }
}

#[test]
fn trials_that_would_be_invalid_jobs_are_refused_up_front() {
    let e = errors_of(
        r#"
[search]
params = [{ name = "training.batch_size", type = "int", low = 0, high = 64 }]
"#,
    );
    assert!(
        e.iter()
            .any(|x| x.starts_with("search.params[0]: with training.batch_size = 0, training.batch_size: must be > 0")),
        "{e:#?}"
    );
    let e = errors_of(
        r#"
[search]
strategy = "annealing"
inherit = true
asha = { eta = 1 }
params = [{ name = "optimizer.lr", low = 0.001, high = 0.1 }]
"#,
    );
    assert!(e.iter().any(|x| x.starts_with("search.strategy: unknown strategy `annealing`")), "{e:#?}");
    assert!(e.iter().any(|x| x.starts_with("search.asha.eta: must be in (1, 100]")), "{e:#?}");
    assert!(e.iter().any(|x| x.starts_with("search.inherit:")), "{e:#?}");
    assert_eq!(errors_of("[search]\n"), vec!["search: searches nothing: add search.params or search.arch".to_owned()]);
}

#[test]
fn minimising_is_inferred_from_loss_metrics() {
    let j = job(
        "[search]\nmetric = \"validation_loss\"\nparams = [{ name = \"optimizer.lr\", low = 0.001, high = 0.1 }]\n",
    );
    assert!(!j.config.maximize);
    let m = MetricPoint { step: 30, loss: 0.25, accuracy: Some(0.9), ..Default::default() };
    assert_eq!(metric_value(&j.metric, &m), Some(0.25));
    assert_eq!(metric_value("validation_accuracy", &m), Some(0.9));
    assert_eq!(budget_of(&j, &m), 30.0);
}

#[test]
fn a_template_that_clashes_with_the_space_is_reported_once() {
    let e = errors_of(
        "[search]\nparams = [{ name = \"optimizer.kind\", values = [\"adamw\", \"sgd\"] }, { name = \"optimizer.lr\", low = 0.001, high = 0.1 }]\n",
    )
    .into_iter()
    .collect::<Vec<_>>();
    let spec_with_momentum = e.is_empty();
    assert!(spec_with_momentum, "no clash without momentum: {e:?}");
    let spec = shoal_common::spec::parse_toml(&format!(
        "{}\n[search]\nparams = [{{ name = \"optimizer.kind\", values = [\"sgd\", \"adamw\"] }}, {{ name = \"optimizer.lr\", low = 0.001, high = 0.1 }}]\n",
        TEMPLATE.replace("kind = \"adamw\"", "kind = \"sgd\"\nmomentum = 0.9")
    ))
    .expect("parse");
    let errors = validate(&spec).expect_err("adamw with momentum");
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("optimizer.kind = \"adamw\"") && lines[0].contains("optimizer.momentum"), "{lines:#?}");
}

#[test]
fn cell_searches_build_stacked_cells_after_a_stem() {
    let j = job(
        "[search]\narch = { cell_nodes = 3, cell_ops = [\"zero\", \"identity\", \"linear\"], min_cells = 1, max_cells = 3, cell_width = 48 }\n",
    );
    assert!(j.micro.is_some() && j.config.arch.is_none());
    let mut rng = crate::rng::Rng::new(4);
    for _ in 0..10 {
        let cfg = j.config.space.sample(&mut rng);
        let spec = trial_spec(&j, &cfg, None, false);
        let tc = shoal_common::spec::validate(&spec).unwrap_or_else(|e| panic!("{e:?}"));
        let cells = cfg.get("arch.cells").and_then(Value::as_i64).expect("cells");
        assert_eq!(tc.model.layers.len() as i64, 1 + cells);
        assert!(matches!(tc.model.layers[0], shoal_common::spec::LayerConfig::Linear { width: 48, .. }));
        match &tc.model.layers[1] {
            shoal_common::spec::LayerConfig::Cell { ops, .. } => {
                assert_eq!(ops.len(), 6);
                assert_eq!(ops[0].name(), cfg["arch.cell.ops[0]"].as_str().expect("op"));
            }
            other => panic!("{other:?}"),
        }
    }
    let e = errors_of("[search]\narch = { cell_nodes = 9 }\n");
    assert!(e.iter().any(|x| x.starts_with("search.arch.cell_nodes: must be in 1..=6")), "{e:?}");
    let e = errors_of("[search]\narch = { cell_nodes = 2, max_depth = 3, min_depth = 1, widths = [8] }\n");
    assert!(e.iter().any(|x| x.contains("not both")), "{e:?}");
    let e = errors_of("[search]\narch = { cell_nodes = 2, cell_ops = [\"conv\"] }\n");
    assert!(e.iter().any(|x| x.starts_with("search.arch.cell_ops[0]: unknown operation `conv`")), "{e:?}");
}

#[test]
fn macro_skips_become_skip_layers_of_equal_width() {
    let j = job("[search]\narch = { min_depth = 2, max_depth = 4, widths = [16, 32], skips = true }\n");
    let mut rng = crate::rng::Rng::new(2);
    let mut skips = 0;
    for _ in 0..30 {
        let cfg = j.config.space.sample(&mut rng);
        let tc = shoal_common::spec::validate(&trial_spec(&j, &cfg, None, false)).unwrap_or_else(|e| panic!("{e:?}"));
        skips += tc
            .model
            .layers
            .iter()
            .filter(|l| matches!(l, shoal_common::spec::LayerConfig::Linear { skip: true, .. }))
            .count();
    }
    assert!(skips > 0);
}

#[test]
fn every_trial_of_a_search_distills_from_the_template_teacher() {
    let j = job(r#"
[distill]
teacher = "/ckpt/teacher/step-0000000300"
temperature = 3.0
[search]
strategy = "random"
max_trials = 4
arch = { min_depth = 1, max_depth = 2, widths = [8, 16], activations = ["relu"] }
"#);
    let mut rng = crate::rng::Rng::new(4);
    for _ in 0..4 {
        let cfg = j.config.space.sample(&mut rng);
        let trial = shoal_common::spec::validate(&trial_spec(&j, &cfg, None, true)).expect("valid trial");
        let d = trial.distill.expect("the trial distills");
        assert_eq!(d.teacher, std::path::PathBuf::from("/ckpt/teacher/step-0000000300"));
        assert_eq!(d.temperature, 3.0);
    }
}

#[test]
fn every_trial_carries_the_template_transforms_and_may_vary_them() {
    let template = TEMPLATE.replace(
        "kind = \"digits\"",
        "kind = \"digits\"\ntransforms = [{ kind = \"standardize\" }, { kind = \"pca\", components = 32 }]",
    );
    let search = r#"
[search]
strategy = "random"
max_trials = 6
params = [{ name = "dataset.transforms[1].components", values = [8, 16] }, { name = "optimizer.lr", low = 0.001, high = 0.1 }]
"#;
    let spec = shoal_common::spec::parse_toml(&format!("{template}\n{search}")).expect("parse");
    let j = validate(&spec).unwrap_or_else(|e| panic!("{e:?}"));
    let mut rng = crate::rng::Rng::new(2);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let cfg = j.config.space.sample(&mut rng);
        let trial = shoal_common::spec::validate(&trial_spec(&j, &cfg, None, false)).expect("valid trial");
        use shoal_common::spec::TransformSpec;
        let [TransformSpec::Standardize {}, TransformSpec::Pca { components: Some(k), variance: None }] =
            trial.dataset.transforms[..]
        else {
            panic!("the template's transforms: {:?}", trial.dataset.transforms)
        };
        assert_eq!(Some(k as i64), cfg["dataset.transforms[1].components"].as_i64());
        seen.insert(k);
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [8, 16]);
}
