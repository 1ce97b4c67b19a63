//! Property tests ("fuzzing") of everything that reads outside input: job files (TOML) through
//! parsing and validation, and every protocol message decoder. Whatever the bytes, nothing may
//! panic; validation either accepts a spec or names fields. Longer runs:
//! `PROPTEST_CASES=100000 cargo test --release -p shoal-common --test fuzz`.

use proptest::prelude::*;
use prost::Message;
use shoal_common::proto;
use shoal_common::spec;

const VALID: &str = include_str!("../../examples/digits-mlp.toml");
const PIPELINE: &str = include_str!("../../examples/digits-pipeline.toml");
const SEARCH: &str = include_str!("../../examples/digits-search.toml");

/// A valid job file with a few bytes changed, inserted or cut.
fn mutated() -> impl Strategy<Value = String> {
    let base = prop_oneof![Just(VALID), Just(PIPELINE), Just(SEARCH)];
    (base, proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8)).prop_map(
        |(text, edits)| {
            let mut bytes = text.as_bytes().to_vec();
            for (at, byte, kind) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                match kind {
                    0 => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ => {
                        bytes.truncate(i);
                    }
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        },
    )
}

/// Job files built from plausible keys with arbitrary values.
fn assembled() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("batch_size"),
        Just("steps"),
        Just("epochs"),
        Just("width"),
        Just("lr"),
        Just("data"),
        Just("pipeline"),
        Just("micro_batches"),
        Just("validation_split"),
        Just("kind"),
        Just("layers"),
        Just("cuts"),
        Just("max_trials"),
    ];
    let value = prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| if v.is_finite() { format!("{v:?}") } else { "nan".into() }),
        "[a-z_]{0,12}".prop_map(|s| format!("\"{s}\"")),
        Just("[]".to_owned()),
        Just("[{ width = -1 }, { width = 0 }]".to_owned()),
        Just("[1, 2, 3]".to_owned()),
    ];
    let section = prop_oneof![
        Just("model"),
        Just("dataset"),
        Just("optimizer"),
        Just("training"),
        Just("parallelism"),
        Just("pipeline"),
        Just("ps"),
        Just("search")
    ];
    proptest::collection::vec((section, key, value), 0..12).prop_map(|entries| {
        let mut out = String::from("name = \"fuzz\"\n[model]\nkind = \"mlp\"\n[dataset]\nkind = \"digits\"\n[training]\nbatch_size = 8\nsteps = 3\n");
        for (section, key, value) in entries {
            out.push_str(&format!("[{section}]\n{key} = {value}\n"));
        }
        out
    })
}

fn check_text(text: &str) {
    if let Ok(spec) = spec::parse_toml(text) {
        if let Err(errors) = spec::validate(&spec) {
            assert!(!errors.is_empty());
            for e in &errors {
                assert!(!e.path.is_empty() && !e.reason.is_empty(), "{e:?}");
            }
        }
        // What parses must survive the wire and TOML round trips.
        let again = proto::JobSpec::decode(spec.encode_to_vec().as_slice()).expect("re-decode");
        assert_eq!(again, spec);
        let _ = spec::to_toml(&spec);
    }
}

/// Cases per property: `PROPTEST_CASES` when set (long runs), else a quick default for CI.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(600), ..ProptestConfig::default() })]

    #[test]
    fn mutated_job_files_never_panic(text in mutated()) {
        check_text(&text);
    }

    #[test]
    fn assembled_job_files_never_panic(text in assembled()) {
        check_text(&text);
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        check_text(&text);
    }

    #[test]
    fn protocol_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(spec) = proto::JobSpec::decode(bytes.as_slice()) {
            let _ = spec::validate(&spec);
        }
        let _ = proto::Job::decode(bytes.as_slice());
        let _ = proto::JobEvent::decode(bytes.as_slice());
        let _ = proto::SubmitJobRequest::decode(bytes.as_slice());
        let _ = proto::ListTrialsResponse::decode(bytes.as_slice());
        let _ = proto::WorkerMessage::decode(bytes.as_slice());
        let _ = proto::CoordinatorMessage::decode(bytes.as_slice());
        let _ = proto::RegisterRequest::decode(bytes.as_slice());
        let _ = proto::InitChunk::decode(bytes.as_slice());
        let _ = proto::PushChunk::decode(bytes.as_slice());
        let _ = proto::PullChunk::decode(bytes.as_slice());
        let mut dst = vec![0f32; 16];
        let offset = bytes.first().map_or(0, |b| *b as usize % 24);
        let _ = shoal_common::chunks::place(&mut dst, offset, &bytes);
    }
}
