//! Reading job files: parse, default the name to the file name, resolve dataset and checkpoint
//! paths against the file's folder (reading the teacher's and parent's job files), validate, and
//! check that dataset files exist here.

use std::path::{Path, PathBuf};

use shoal_common::proto::JobSpec;
use shoal_common::spec::{self, FieldError, SpecError};

use crate::checkpoints;
use crate::error::CliError;

/// A job file, ready to submit.
pub struct JobFile {
    pub spec: JobSpec,
    pub config: spec::TrainConfig,
    /// Set for search jobs.
    pub search: Option<shoal_search::spec::SearchJob>,
}

fn render_errors(path: &Path, errors: &[FieldError]) -> String {
    let mut out =
        format!("{}: {} invalid field{}:", path.display(), errors.len(), if errors.len() == 1 { "" } else { "s" });
    for e in errors {
        out.push_str("\n  ");
        out.push_str(&e.to_string());
    }
    out
}

/// Parses and validates job-file text; `origin` names it in errors and anchors relative paths.
pub fn load_text(text: &str, origin: &Path, check_paths: bool) -> Result<JobFile, CliError> {
    let mut spec = match spec::parse_toml(text) {
        Ok(s) => s,
        Err(SpecError::Parse { message }) => {
            return Err(CliError::usage(format!("{}: {message}", origin.display())));
        }
        Err(SpecError::Invalid(errors)) => {
            return Err(CliError::usage(render_errors(origin, &errors)));
        }
    };
    if spec.name.trim().is_empty()
        && let Some(stem) = origin.file_stem().and_then(|s| s.to_str())
    {
        spec.name = stem.to_owned();
    }
    let base = origin.parent().map(Path::to_path_buf).unwrap_or_default();
    if let Some(d) = spec.dataset.as_mut() {
        for p in [
            &mut d.images,
            &mut d.labels,
            &mut d.validation_images,
            &mut d.validation_labels,
            &mut d.path,
            &mut d.validation_path,
        ] {
            if !p.is_empty() && Path::new(p.as_str()).is_relative() {
                let abs = base.join(p.as_str());
                *p = std::path::absolute(&abs).unwrap_or(abs).display().to_string();
            }
        }
    }
    // An evaluation job's files are named relative to the job file too, the report's included.
    if let Some(e) = spec.evaluate.as_mut() {
        for p in [&mut e.artifact, &mut e.data, &mut e.output, &mut e.html] {
            let named = p.trim();
            if !named.is_empty() && Path::new(named).is_relative() {
                let abs = base.join(named);
                *p = std::path::absolute(&abs).unwrap_or(abs).display().to_string();
            }
        }
    }
    // External trials run relative to the job file's folder unless told otherwise.
    if let Some(c) = spec.command.as_mut()
        && c.workdir.trim().is_empty()
    {
        c.workdir = std::path::absolute(&base).unwrap_or(base.clone()).display().to_string();
    }
    let checkpoint_error = |e: FieldError| CliError::usage(render_errors(origin, &[e]));
    if let Some(d) = spec.distill.as_mut() {
        checkpoints::resolve_teacher(d, &base, check_paths).map_err(checkpoint_error)?;
    }
    if let Some(i) = spec.inherit.as_mut() {
        checkpoints::resolve_parent(i, &base, check_paths).map_err(checkpoint_error)?;
    }
    let config = spec::validate(&spec).map_err(|errors| CliError::usage(render_errors(origin, &errors)))?;
    let search = match spec.search {
        Some(_) => Some(
            shoal_search::spec::validate(&spec).map_err(|errors| CliError::usage(render_errors(origin, &errors)))?,
        ),
        None => None,
    };
    if check_paths {
        // An evaluation job reads no dataset (its placeholder names no files), but its artifact
        // (a file or a folder) and its rows.
        // A folder or name pattern of a columnar data set must name at least one file.
        let exts = config.dataset.extensions();
        let mut wanted: Vec<(&str, &Path, bool, &str)> = config
            .dataset
            .files()
            .into_iter()
            .map(|(field, p)| (field, p.as_path(), shoal_common::paths::data_files(p, exts).is_ok(), "file"))
            .collect();
        if let Some(e) = &config.evaluate {
            wanted.push(("evaluate.artifact", &e.artifact, e.artifact.exists(), "artifact"));
            wanted.push(("evaluate.data", &e.data, e.data.is_file(), "file"));
        }
        let missing: Vec<FieldError> = wanted
            .into_iter()
            .filter(|(_, _, found, _)| !found)
            .map(|(field, p, _, what)| {
                FieldError::new(
                    field,
                    format!(
                        "{what} not found: {} (pass --no-path-check if it exists on the workers only)",
                        p.display()
                    ),
                )
            })
            .collect();
        if !missing.is_empty() {
            return Err(CliError::usage(render_errors(origin, &missing)));
        }
    }
    Ok(JobFile { spec, config, search })
}

/// Reads a job file from disk.
pub fn load(path: &Path, check_paths: bool) -> Result<JobFile, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("cannot read job file {}: {e}", path.display())))?;
    load_text(&text, &absolute(path), check_paths)
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::load_text;

    #[test]
    fn an_evaluation_job_names_its_files_relative_to_the_job_file() {
        let text = "[evaluate]\nartifact = \"ckpt/step-9\"\ndata = \" rows.csv \"\nhtml = \"/abs/report.html\"\n";
        let job = load_text(text, Path::new("/jobs/eval.toml"), false).expect("valid");
        let e = job.config.evaluate.expect("evaluate");
        assert_eq!(job.config.name, "eval", "named after the file");
        assert_eq!(e.artifact, PathBuf::from("/jobs/ckpt/step-9"));
        assert_eq!(e.data, PathBuf::from("/jobs/rows.csv"));
        assert_eq!((e.output, e.html), (None, Some(PathBuf::from("/abs/report.html"))));
        let missing =
            load_text(text, Path::new("/nonexistent-shoal-dir/eval.toml"), true).err().expect("missing files");
        assert!(missing.message.contains("evaluate.artifact: artifact not found"), "{}", missing.message);
        assert!(missing.message.contains("evaluate.data: file not found"), "{}", missing.message);
    }
}
