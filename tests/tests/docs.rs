//! What the binaries say about themselves: `--version` with the commit they were built from, and
//! `shoal`'s completion scripts and man pages, generated from its own definition.

use std::process::Command;

use shoal_tests::{bin, code, stdout};

#[test]
fn every_binary_prints_its_version_and_commit() -> anyhow::Result<()> {
    let head = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output()?;
    let commit = String::from_utf8(head.stdout)?.trim().to_owned();
    for name in ["shoal", "shoal-coordinator", "shoal-worker", "shoal-param-server"] {
        let out = Command::new(bin(name)).arg("--version").output()?;
        assert_eq!(code(&out), 0, "{name} --version");
        let text = stdout(&out);
        let wanted = format!("{name} {} (commit ", env!("CARGO_PKG_VERSION"));
        assert!(text.starts_with(&wanted), "{name}: {text:?}");
        // In a checkout the binaries name its commit (built by `bin`, so they are up to date).
        if head.status.success() && !commit.is_empty() {
            assert!(text.contains(&commit), "{name} does not name commit {commit}: {text:?}");
        }
    }
    Ok(())
}

#[test]
fn completions_cover_the_commands_and_parse_in_bash() -> anyhow::Result<()> {
    let out = Command::new(bin("shoal")).args(["completions", "bash"]).output()?;
    assert_eq!(code(&out), 0);
    let script = stdout(&out);
    for word in ["submit", "watch", "local", "bench", "--coordinator", "--tls-ca"] {
        assert!(script.contains(word), "the bash script lacks {word}");
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("shoal.bash");
    std::fs::write(&path, &script)?;
    let checked = Command::new("bash").arg("-n").arg(&path).output()?;
    assert!(checked.status.success(), "bash -n: {}", String::from_utf8_lossy(&checked.stderr));
    for shell in ["zsh", "fish"] {
        let out = Command::new(bin("shoal")).args(["completions", shell]).output()?;
        assert_eq!(code(&out), 0, "{shell}");
        assert!(stdout(&out).contains("submit"), "{shell}");
    }
    let bad = Command::new(bin("shoal")).args(["completions", "tcsh"]).output()?;
    assert_eq!(code(&bad), 2, "an unknown shell is a usage error");
    Ok(())
}

#[test]
fn man_pages_are_written_for_shoal_and_each_command() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = Command::new(bin("shoal")).args(["man", "--dir"]).arg(dir.path()).output()?;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let main = std::fs::read_to_string(dir.path().join("shoal.1"))?;
    assert!(main.contains(".TH shoal 1"), "{main}");
    assert!(main.contains("submit"), "shoal.1 lists the commands");
    let submit = std::fs::read_to_string(dir.path().join("shoal-submit.1"))?;
    assert!(submit.contains(".TH shoal-submit 1"), "{submit}");
    assert!(submit.contains("priority"), "shoal-submit.1 documents --priority");
    let pages = std::fs::read_dir(dir.path())?.count();
    assert!(pages > 15, "one page per command: {pages}");
    // Pages a man reader can render.
    if let Ok(rendered) = Command::new("man").arg("-l").arg(dir.path().join("shoal-submit.1")).output()
        && rendered.status.success()
    {
        assert!(String::from_utf8_lossy(&rendered.stdout).contains("priority"));
    }
    Ok(())
}
