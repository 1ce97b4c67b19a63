//! Finds the commit the binaries are built from: `SHOAL_GIT_COMMIT` when set (builds from a
//! tarball, packagers), else `git rev-parse` on the checkout, else `unknown`. Reruns when the
//! checkout moves to another commit, so the figure is never stale.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

/// The files whose change means another commit: HEAD, the branch it names, the packed refs.
fn watched() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        files.push(PathBuf::from(head));
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git(&["rev-parse", "--git-path", &branch])
    {
        files.push(PathBuf::from(path));
    }
    if let Some(packed) = git(&["rev-parse", "--git-path", "packed-refs"]) {
        files.push(PathBuf::from(packed));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    files.into_iter().map(|f| if f.is_absolute() { f } else { root.join(f) }).filter(|f| f.exists()).collect()
}

fn main() {
    println!("cargo:rerun-if-env-changed=SHOAL_GIT_COMMIT");
    let commit = match std::env::var("SHOAL_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_owned(),
        _ => {
            for f in watched() {
                println!("cargo:rerun-if-changed={}", f.display());
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=SHOAL_GIT_COMMIT={commit}");
}
