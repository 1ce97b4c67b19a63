//! Property tests of search specs: whatever a job file's `[search]` section holds, validation
//! either accepts it or names fields, and every trial of an accepted search is a valid job.
//! Longer runs: `PROPTEST_CASES=100000 cargo test --release -p shoal-search --test fuzz`.

use proptest::prelude::*;
use shoal_search::rng::Rng;
use shoal_search::spec::{trial_spec, validate};

const TEMPLATE: &str = "name = \"f\"\n[model]\nkind = \"mlp\"\nlayers = [{ width = 16 }]\n[dataset]\nkind = \"digits\"\n\
                        [optimizer]\nkind = \"sgd\"\nlr = 0.1\n[training]\nbatch_size = 16\nsteps = 30\n";

fn search_section() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        (-5i64..200).prop_map(|v| v.to_string()),
        (-2.0f64..2.0).prop_map(|v| format!("{v:?}")),
        Just("1e-9".to_owned()),
        Just("0".to_owned()),
    ];
    let name = prop_oneof![
        Just("optimizer.lr"),
        Just("model.dropout"),
        Just("training.batch_size"),
        Just("model.layers[0].width"),
        Just("model.layers[5].width"),
        Just("trial.x"),
        Just("nope.field"),
        Just(""),
    ];
    let ty = prop_oneof![Just("float"), Just("int"), Just("choice"), Just("bogus"), Just("")];
    let param =
        (name, ty, number.clone(), number.clone(), any::<bool>(), proptest::collection::vec(number.clone(), 0..4))
            .prop_map(|(n, t, lo, hi, log, values)| {
                format!(
                    "{{ name = \"{n}\", type = \"{t}\", low = {lo}, high = {hi}, log = {log}, values = [{}] }}",
                    values.join(", ")
                )
            });
    let strategy =
        prop_oneof![Just("grid"), Just("random"), Just("tpe"), Just("evolution"), Just("reinforce"), Just("x")];
    let arch = prop_oneof![
        Just(String::new()),
        (0i64..5, 0i64..6, proptest::collection::vec(-2i64..64, 0..4)).prop_map(|(a, b, w)| format!(
            "arch = {{ min_depth = {a}, max_depth = {b}, widths = [{}] }}\n",
            w.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        )),
        (0i64..8, 0i64..4, 0i64..4).prop_map(|(n, a, b)| format!(
            "arch = {{ cell_nodes = {n}, min_cells = {a}, max_cells = {b}, cell_width = 8 }}\n"
        )),
    ];
    (strategy, proptest::collection::vec(param, 0..4), arch, number.clone(), number).prop_map(
        |(s, params, arch, trials, eta)| {
            format!(
                "[search]\nstrategy = \"{s}\"\nmax_trials = {trials}\nasha = {{ eta = {eta} }}\nparams = [{}]\n{arch}",
                params.join(", ")
            )
        },
    )
}

/// Cases per property: `PROPTEST_CASES` when set (long runs), else a quick default for CI.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(400), ..ProptestConfig::default() })]

    #[test]
    fn search_specs_are_accepted_or_explained(section in search_section()) {
        let Ok(spec) = shoal_common::spec::parse_toml(&format!("{TEMPLATE}{section}")) else { return Ok(()) };
        match validate(&spec) {
            Ok(job) => {
                let mut rng = Rng::new(1);
                for _ in 0..5 {
                    let cfg = job.config.space.sample(&mut rng);
                    let trial = trial_spec(&job, &cfg, None, false);
                    prop_assert!(shoal_common::spec::validate(&trial).is_ok(), "{section}\n{cfg:?}");
                }
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in errors {
                    prop_assert!(!e.path.is_empty() && !e.reason.is_empty());
                }
            }
        }
    }
}
