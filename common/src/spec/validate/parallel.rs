//! The `parallelism`, `sync`, `ps` and `allreduce` sections: how many ranks, elastic ranges, and
//! how ranks synchronise.

use crate::proto::JobSpec;
use crate::spec::config::{Backend, ModelConfig, ParallelConfig, PsMode, Resources, SyncKind, TrainingConfig};
use crate::spec::errors::FieldErrors;

const DEFAULT_BUCKET_MB: f64 = 25.0;
const DEFAULT_CHECKSUM_EVERY: i64 = 100;
/// Most data-parallel ranks one job may ask for.
pub(super) const MAX_RANKS: i64 = 256;
/// Most parameter-server shards one job may ask for.
const MAX_SHARDS: i64 = 64;

pub(super) fn parallel(
    c: &mut FieldErrors,
    spec: &JobSpec,
    resources: &Resources,
    model: &ModelConfig,
    training: &TrainingConfig,
) -> ParallelConfig {
    let p = spec.parallelism.unwrap_or_default();
    let data = match p.data {
        None => 1,
        Some(n) if n < 1 => {
            c.fail("parallelism.data", "must be >= 1");
            1
        }
        Some(n) if n > MAX_RANKS => {
            c.fail("parallelism.data", format!("must be at most {MAX_RANKS}"));
            1
        }
        Some(n) => n as usize,
    };
    let ps = spec.ps.clone().unwrap_or_default();
    let sync = match spec.sync.as_str() {
        "" | "allreduce" => {
            if spec.ps.is_some() {
                c.fail("ps", "applies only with sync = \"ps\"");
            }
            SyncKind::AllReduce
        }
        "ps" => {
            let shards = match ps.shards {
                None => 1,
                Some(n) if !(1..=MAX_SHARDS).contains(&n) => {
                    c.fail("ps.shards", format!("must be between 1 and {MAX_SHARDS}"));
                    1
                }
                Some(n) => n as usize,
            };
            let mode = match ps.mode.as_str() {
                "" | "async" => PsMode::Async,
                "sync" => PsMode::Sync,
                "ssp" => PsMode::Ssp { staleness: c.non_negative("ps.staleness", ps.staleness.unwrap_or(2)) },
                other => {
                    c.fail("ps.mode", format!("unknown value `{other}` (expected async, ssp or sync)"));
                    PsMode::Async
                }
            };
            if !matches!(mode, PsMode::Ssp { .. }) && ps.staleness.is_some() {
                c.fail("ps.staleness", "applies only with ps.mode = \"ssp\"");
            }
            if spec.allreduce.is_some() {
                c.fail("allreduce", "does not apply with sync = \"ps\"");
            }
            SyncKind::ParamServer { shards, mode }
        }
        other => {
            c.fail("sync", format!("unknown value `{other}` (expected allreduce or ps)"));
            SyncKind::AllReduce
        }
    };
    let a = spec.allreduce.clone().unwrap_or_default();
    let backend = c
        .choice(
            "allreduce.backend",
            &a.backend,
            Some(Backend::Auto),
            |b| match b {
                "auto" => Some(Backend::Auto),
                "ring" => Some(Backend::Ring),
                "nccl" => Some(Backend::Nccl),
                _ => None,
            },
            &["auto", "ring", "nccl"],
        )
        .unwrap_or(Backend::Auto);
    if backend == Backend::Nccl && resources.gpus == 0 {
        c.fail("allreduce.backend", "nccl needs a GPU per rank: set resources.gpus >= 1");
    }
    let bucket_mb = a.bucket_mb.unwrap_or(DEFAULT_BUCKET_MB);
    if !(bucket_mb.is_finite() && bucket_mb > 0.0 && bucket_mb <= 1024.0) {
        c.fail("allreduce.bucket_mb", format!("must be in (0, 1024], got {bucket_mb}"));
    }
    let checksum_every = c.non_negative("allreduce.checksum_every", a.checksum_every.unwrap_or(DEFAULT_CHECKSUM_EVERY));
    let pipeline = super::pipeline::pipeline(c, spec, model, training, data, &sync, backend);
    let min_data = match p.data_min {
        None => data,
        Some(n) if n < 1 || n as usize > data => {
            c.fail("parallelism.data", format!("elastic range {n}..{data}: MIN must be between 1 and MAX"));
            data
        }
        Some(n) => {
            if !matches!(sync, SyncKind::AllReduce) {
                c.fail("parallelism.data", "an elastic range applies to all-reduce jobs, not sync = \"ps\"");
            }
            if pipeline.stages > 1 {
                c.fail("parallelism.data", "an elastic range applies to data parallelism without pipeline stages");
            }
            n as usize
        }
    };
    ParallelConfig {
        data,
        min_data,
        pipeline,
        sync,
        backend,
        bucket_bytes: ((bucket_mb.clamp(1.0 / 1024.0, 1024.0)) * 1024.0 * 1024.0) as usize,
        checksum_every,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{DIGITS, errors_of};
    use crate::spec::{Backend, PsMode, SyncKind, load_toml};

    #[test]
    fn parameter_server_settings_are_checked() {
        let ps = |extra: &str| format!("sync = \"ps\"\n{DIGITS}\n[parallelism]\ndata = 3\n[ps]\n{extra}\n");
        let (_, cfg) = load_toml(&ps("shards = 2\nmode = \"ssp\"\nstaleness = 3")).expect("valid");
        assert_eq!(cfg.parallel.sync, SyncKind::ParamServer { shards: 2, mode: PsMode::Ssp { staleness: 3 } });
        let (_, cfg) = load_toml(&ps("")).expect("valid");
        assert_eq!(cfg.parallel.sync, SyncKind::ParamServer { shards: 1, mode: PsMode::Async });
        assert_eq!(errors_of(&ps("shards = 0")), vec!["ps.shards: must be between 1 and 64"]);
        assert_eq!(
            errors_of(&ps("mode = \"eventual\"")),
            vec!["ps.mode: unknown value `eventual` (expected async, ssp or sync)"]
        );
        assert_eq!(
            errors_of(&ps("mode = \"sync\"\nstaleness = 1")),
            vec!["ps.staleness: applies only with ps.mode = \"ssp\""]
        );
    }

    #[test]
    fn data_parallel_settings_are_checked() {
        let text = format!(
            "{DIGITS}\naccumulate_steps = 4\ncollective_timeout = 5\n[parallelism]\ndata = 3\n\
             [allreduce]\nbackend = \"ring\"\nbucket_mb = 2\n"
        );
        let (_, cfg) = load_toml(&text).expect("valid");
        assert_eq!(cfg.parallel.data, 3);
        assert_eq!(cfg.parallel.backend, Backend::Ring);
        assert_eq!(cfg.parallel.bucket_bytes, 2 << 20);
        assert_eq!(cfg.training.accumulate_steps, 4);
        let bad = format!(
            "{DIGITS}\naccumulate_steps = 0\ncollective_timeout = -1\n[parallelism]\ndata = 0\n\
             [allreduce]\nbackend = \"nccl\"\n"
        );
        let errors = errors_of(&bad);
        for expected in [
            "training.accumulate_steps: must be > 0 (required)",
            "training.collective_timeout: must be seconds in (0, 86400], got -1",
            "parallelism.data: must be >= 1",
            "allreduce.backend: nccl needs a GPU per rank: set resources.gpus >= 1",
        ] {
            assert!(errors.iter().any(|e| e == expected), "missing `{expected}` in {errors:#?}");
        }
    }
}
