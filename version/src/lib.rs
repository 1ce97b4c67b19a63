//! The version every Shoal binary prints for `--version`: the package version and the git commit
//! it was built from, so a report or a bug names exactly what ran.

/// The git commit, 12 hex digits (or `unknown` outside a checkout without `SHOAL_GIT_COMMIT`).
pub const COMMIT: &str = env!("SHOAL_GIT_COMMIT");

/// `0.1.0 (commit 0123456789ab)`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("SHOAL_GIT_COMMIT"), ")");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_names_the_package_version_and_a_commit() {
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")), "{VERSION}");
        assert!(
            COMMIT == "unknown" || (COMMIT.len() >= 7 && COMMIT.chars().all(|c| c.is_ascii_hexdigit())),
            "commit {COMMIT:?}"
        );
        assert!(VERSION.ends_with(&format!("(commit {COMMIT})")), "{VERSION}");
    }
}
