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

/// The files a data set path names: the file itself; or, for formats read from many files
/// (`extensions` not empty), every file in a folder with one of `extensions`, or every file
/// matching a name pattern with `*` in its last component (`data/part-*.parquet`). Sorted by name,
/// so every rank sees the same order. Errors say what is missing.
pub fn data_files(path: &Path, extensions: &[&str]) -> Result<Vec<PathBuf>, String> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let (folder, pattern) = if !extensions.is_empty() && path.is_dir() {
        (path.to_path_buf(), None)
    } else if !extensions.is_empty() && name.contains('*') {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        (parent.to_path_buf(), Some(name))
    } else if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    } else {
        return Err(format!("{}: no such file", path.display()));
    };
    let entries = std::fs::read_dir(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            let file = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            match pattern {
                Some(pattern) => matches(pattern, file),
                None => extensions.iter().any(|ext| file.ends_with(&format!(".{ext}"))),
            }
        })
        .collect();
    files.sort();
    if files.is_empty() {
        let wanted = match pattern {
            Some(_) => "files matching it".to_owned(),
            None => format!("`.{}` files", extensions.join("` or `.")),
        };
        return Err(format!("{}: has no {wanted}", path.display()));
    }
    Ok(files)
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_set_is_a_file_a_folder_or_a_name_pattern() {
        let dir = tempfile::tempdir().expect("dir");
        for f in ["part-1.parquet", "part-0.parquet", "other.parquet", "notes.txt"] {
            std::fs::write(dir.path().join(f), "x").expect("write");
        }
        let names = |files: Vec<PathBuf>| -> Vec<String> {
            files.iter().map(|p| p.file_name().expect("name").to_string_lossy().into_owned()).collect()
        };
        let exts = &["parquet"];
        assert_eq!(
            names(data_files(dir.path(), exts).expect("folder")),
            ["other.parquet", "part-0.parquet", "part-1.parquet"]
        );
        assert_eq!(
            names(data_files(&dir.path().join("part-*.parquet"), exts).expect("glob")),
            ["part-0.parquet", "part-1.parquet"]
        );
        assert_eq!(names(data_files(&dir.path().join("notes.txt"), exts).expect("file")), ["notes.txt"]);
        assert!(
            data_files(&dir.path().join("x-*.parquet"), exts).expect_err("none").contains("has no files matching it")
        );
        assert!(data_files(&dir.path().join("missing.parquet"), exts).expect_err("missing").contains("no such file"));
        assert!(data_files(dir.path(), &[]).is_err(), "a folder is not one file");
        assert!(matches("a*b*c", "axxbyyc") && matches("*", "") && !matches("a*c", "ab") && matches("p-*", "p-"));
    }

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
