//! Confining user-supplied paths (dataset files, parent checkpoints, working folders) to the roots
//! a worker's operator allowed. Paths are resolved (symlinks followed, `..` removed) before the
//! check, so neither `..` nor a symlink can lead outside.

use std::path::{Path, PathBuf};

/// `path` resolved, if it lies under one of `roots` (all of them allowed when `roots` is empty).
/// `field` names the spec field in the error.
pub fn confine(field: &str, path: &Path, roots: &[PathBuf]) -> Result<PathBuf, String> {
    if roots.is_empty() {
        return Ok(path.to_path_buf());
    }
    let resolved = path.canonicalize().map_err(|e| format!("{field}: {}: {e}", path.display()))?;
    for root in roots {
        if let Ok(root) = root.canonicalize()
            && resolved.starts_with(&root)
        {
            return Ok(resolved);
        }
    }
    let allowed: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    Err(format!(
        "{field}: {} resolves to {}, outside the folders this worker may read ({})",
        path.display(),
        resolved.display(),
        allowed.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_stay_under_a_root_after_resolution() {
        let dir = tempfile::tempdir().expect("dir");
        let root = dir.path().join("data");
        std::fs::create_dir_all(&root).expect("mkdir");
        std::fs::write(root.join("train.csv"), "x,y\n").expect("write");
        std::fs::write(dir.path().join("secret"), "no").expect("write");
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).expect("symlink");
        let roots = vec![root.clone()];
        assert!(confine("dataset.path", &root.join("train.csv"), &roots).is_ok());
        let up = confine("dataset.path", &root.join("../secret"), &roots).expect_err("..");
        assert!(up.starts_with("dataset.path: ") && up.contains("outside the folders"), "{up}");
        assert!(confine("dataset.path", &root.join("link"), &roots).is_err(), "symlink escape");
        assert!(
            confine("dataset.path", &root.join("missing.csv"), &roots).expect_err("missing").contains("missing.csv")
        );
        assert!(confine("dataset.path", &dir.path().join("secret"), &[]).is_ok(), "no roots: unconfined");
    }
}
