//! The `training` section: batch size, duration, seed, evaluation, checkpoint and log cadence,
//! accumulation, collective timeout and retries.

use crate::proto;
use crate::spec::config::{Duration, Precision, TrainingConfig};
use crate::spec::errors::FieldErrors;

const DEFAULT_LOG_EVERY: i64 = 10;
const DEFAULT_COLLECTIVE_TIMEOUT_S: f64 = 60.0;
/// Automatic restarts after infrastructure failures, unless the job says otherwise.
const DEFAULT_MAX_RETRIES: i64 = 3;

pub(super) fn training(c: &mut FieldErrors, t: Option<&proto::TrainingSpec>) -> TrainingConfig {
    let default = proto::TrainingSpec::default();
    // A missing section is one error; a present one, even empty, has its fields checked.
    let (t, present) = match t {
        Some(t) => (t, true),
        None => {
            c.fail("training", "required (at least batch_size and epochs or steps)");
            (&default, false)
        }
    };
    let batch_size = if present { c.size("training.batch_size", t.batch_size) } else { 1 };
    let duration = match (t.epochs, t.steps) {
        (e, 0) if e > 0 => Duration::Epochs(e as u64),
        (0, s) if s > 0 => Duration::Steps(s as u64),
        (0, 0) => {
            if present {
                c.fail("training.epochs", "set training.epochs or training.steps (must be > 0)");
            }
            Duration::Steps(1)
        }
        (e, s) if e > 0 && s > 0 => {
            c.fail("training.steps", "set either training.epochs or training.steps, not both");
            Duration::Steps(1)
        }
        (e, s) => {
            if e < 0 {
                c.fail("training.epochs", "must be > 0");
            }
            if s < 0 {
                c.fail("training.steps", "must be > 0");
            }
            Duration::Steps(1)
        }
    };
    let (Duration::Epochs(n) | Duration::Steps(n)) = duration;
    if n > 1 << 40 {
        c.fail("training", "epochs or steps is unreasonably large");
    }
    let seed = c.non_negative("training.seed", t.seed);
    let eval_every = c.non_negative("training.eval_every", t.eval_every);
    let checkpoint_every = c.non_negative("training.checkpoint_every", t.checkpoint_every);
    let log_every = c.size_or("training.log_every", t.log_every, DEFAULT_LOG_EVERY) as u64;
    let accumulate_steps = c.size_or("training.accumulate_steps", t.accumulate_steps, 1);
    if accumulate_steps > 1024 {
        c.fail("training.accumulate_steps", "must be at most 1024");
    }
    let timeout = t.collective_timeout.unwrap_or(DEFAULT_COLLECTIVE_TIMEOUT_S);
    if !(timeout.is_finite() && timeout > 0.0 && timeout <= 86_400.0) {
        c.fail("training.collective_timeout", format!("must be seconds in (0, 86400], got {timeout}"));
    }
    let max_retries = t.max_retries.unwrap_or(DEFAULT_MAX_RETRIES);
    if !(0..=100).contains(&max_retries) {
        c.fail("training.max_retries", format!("must be in 0..=100, got {max_retries}"));
    }
    let precision = Precision::parse(&t.precision).unwrap_or_else(|| {
        let reason = format!("must be one of {}, got {:?}", Precision::NAMES.join(", "), t.precision);
        c.fail("training.precision", reason);
        Precision::Fp32
    });
    TrainingConfig {
        precision,
        max_retries: max_retries.clamp(0, 100) as u32,
        accumulate_steps,
        collective_timeout: std::time::Duration::from_secs_f64(if timeout.is_finite() && timeout > 0.0 {
            timeout.min(86_400.0)
        } else {
            1.0
        }),
        batch_size,
        duration,
        seed,
        eval_every,
        checkpoint_every,
        log_every,
        shuffle: t.shuffle.unwrap_or(true),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{DIGITS, errors_of};

    #[test]
    fn epochs_and_steps_are_exclusive() {
        let errors = errors_of(&DIGITS.replace("epochs = 5", "epochs = 5\nsteps = 100"));
        assert_eq!(errors, vec!["training.steps: set either training.epochs or training.steps, not both"]);
        let errors = errors_of(&DIGITS.replace("epochs = 5", "epochs = -5"));
        assert_eq!(errors, vec!["training.epochs: must be > 0"]);
    }

    #[test]
    fn an_empty_training_section_is_checked_field_by_field() {
        // Protobuf cannot tell `[training]` with zeros from no fields at all; both are refused.
        let start = DIGITS.find("[training]").expect("a training section");
        let rest = &DIGITS[start + "[training]".len()..];
        let end = rest.find("\n[").map_or(DIGITS.len(), |i| start + "[training]".len() + i);
        let empty = format!("{}[training]\nbatch_size = 0\n{}", &DIGITS[..start], &DIGITS[end..]);
        let errors = errors_of(&empty);
        assert!(errors.iter().any(|e| e.starts_with("training.batch_size: ")), "{errors:?}");
        assert!(
            errors.iter().any(|e| e.starts_with("training.epochs: set training.epochs or training.steps")),
            "{errors:?}"
        );
    }

    #[test]
    fn precision_is_fp32_tf32_or_bf16() {
        use crate::spec::{Precision, load_toml};
        let (_, cfg) = load_toml(DIGITS).expect("digits");
        assert_eq!(cfg.training.precision, Precision::Fp32, "the default");
        let (_, cfg) = load_toml(&DIGITS.replace("epochs = 5", "epochs = 5\nprecision = \"tf32\"")).expect("tf32");
        assert_eq!(cfg.training.precision, Precision::Tf32);
        let errors = errors_of(&DIGITS.replace("epochs = 5", "epochs = 5\nprecision = \"fp16\""));
        assert_eq!(errors, vec!["training.precision: must be one of fp32, tf32, bf16, got \"fp16\""]);
        let (_, cfg) = load_toml(&DIGITS.replace("epochs = 5", "epochs = 5\nprecision = \"bf16\"")).expect("bf16");
        assert_eq!(cfg.training.precision, Precision::Bf16);
    }
}
