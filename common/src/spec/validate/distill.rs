//! The `distill` section: which teacher, its temperature and weight, and what the student must
//! share with it (classification, the same outputs, a whole model on each rank).

use std::path::PathBuf;

use super::model::{model, raw_data};
use crate::proto;
use crate::spec::config::{DatasetConfig, DistillConfig, ParallelConfig, Task};
use crate::spec::errors::FieldErrors;

const DEFAULT_TEMPERATURE: f64 = 4.0;
const DEFAULT_ALPHA: f64 = 0.7;

pub(super) fn distill(
    c: &mut FieldErrors,
    d: &proto::DistillSpec,
    dataset: &DatasetConfig,
    parallel: &ParallelConfig,
) -> DistillConfig {
    let teacher = d.teacher.trim();
    let job = d.teacher_job.trim();
    match (teacher.is_empty(), job.is_empty()) {
        (true, true) => c.fail("distill.teacher", "name the teacher's checkpoint (or distill.teacher_job)"),
        (false, false) if d.teacher_model.is_none() => {
            c.fail("distill.teacher_job", "set either distill.teacher or distill.teacher_job, not both")
        }
        _ => {}
    }
    let temperature = d.temperature.unwrap_or(DEFAULT_TEMPERATURE);
    if !(temperature.is_finite() && temperature > 0.0 && temperature <= 100.0) {
        c.fail("distill.temperature", format!("must be in (0, 100], got {temperature}"));
    }
    let alpha = c.in_range("distill.alpha", d.alpha.unwrap_or(DEFAULT_ALPHA), 0.0, 1.0, true);
    if dataset.task() != Task::Classification {
        c.fail("distill", "distillation matches class probabilities: the dataset must be a classification task");
    }
    if parallel.pipeline.stages > 1 {
        c.fail(
            "distill",
            "the teacher reads the raw batch, which only the first pipeline stage sees: use pipeline = 1",
        );
    }
    let teacher_model = d.teacher_model.as_ref().map(|m| {
        let mut sub = FieldErrors::new();
        let parsed = model(&mut sub, Some(m), dataset);
        c.absorb("distill.teacher_", sub);
        parsed
    });
    let student_outputs = raw_data(dataset, None).map_or(0, |s| s.outputs);
    if d.teacher_outputs < 0 {
        c.fail("distill.teacher_outputs", "must be >= 0");
    } else if d.teacher_outputs > 0 && student_outputs > 0 && d.teacher_outputs as usize != student_outputs {
        c.fail(
            "distill.teacher",
            format!(
                "the teacher has {} outputs but the student's dataset has {student_outputs} classes",
                d.teacher_outputs
            ),
        );
    }
    DistillConfig { teacher: PathBuf::from(teacher), teacher_job: job.to_owned(), teacher_model, temperature, alpha }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{DIGITS, errors_of};
    use crate::spec::load_toml;

    #[test]
    fn a_teacher_gets_the_default_temperature_and_weight() {
        let text = format!("{DIGITS}\n[distill]\nteacher = \"ckpt/teacher\"\n");
        let (_, cfg) = load_toml(&text).expect("valid");
        let d = cfg.distill.expect("distill");
        assert_eq!(d.teacher, std::path::PathBuf::from("ckpt/teacher"));
        assert_eq!((d.temperature, d.alpha), (4.0, 0.7));
        assert!(d.teacher_model.is_none());
    }

    #[test]
    fn bad_distillation_settings_name_their_field() {
        let text = format!(
            "{DIGITS}\n[distill]\nteacher_job = \"job-1\"\ntemperature = 0.0\nalpha = 1.5\nteacher_outputs = 3\n\
             [distill.teacher_model]\nkind = \"mlp\"\nlayers = [{{ width = 0 }}]\n"
        );
        let errors = errors_of(&text);
        for expected in [
            "distill.temperature: must be in (0, 100], got 0",
            "distill.alpha: must be in [0, 1], got 1.5",
            "distill.teacher: the teacher has 3 outputs but the student's dataset has 10 classes",
            "distill.teacher_model.layers[0].width: must be > 0 (required)",
        ] {
            assert!(errors.iter().any(|e| e == expected), "missing `{expected}` in {errors:#?}");
        }
        assert_eq!(
            errors_of(&format!("{DIGITS}\n[distill]\nalpha = 0.5\n")),
            ["distill.teacher: name the teacher's checkpoint (or distill.teacher_job)"]
        );
    }

    #[test]
    fn regression_and_pipelines_cannot_distill() {
        let text = r#"
            name = "reg"
            [model]
            kind = "mlp"
            layers = [{ width = 8 }]
            [dataset]
            kind = "synthetic_regression"
            samples = 100
            features = 4
            targets = 1
            [training]
            batch_size = 8
            steps = 10
            [parallelism]
            pipeline = 2
            [distill]
            teacher = "t"
        "#;
        let errors = errors_of(text);
        assert!(
            errors.iter().any(|e| e.starts_with("distill: distillation matches class probabilities")),
            "{errors:#?}"
        );
        assert!(errors.iter().any(|e| e.starts_with("distill: the teacher reads the raw batch")), "{errors:#?}");
    }
}
