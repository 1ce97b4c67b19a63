//! Finding a system program a test needs (Chromium, Prometheus): the one an environment variable
//! names, else the first of its names on the path. Without it the test says it is skipped and
//! passes, unless the `require` variable is `1` (CI sets it after installing the package), which
//! makes a missing program a failure.

use std::io::Write as _;
use std::path::PathBuf;

/// What to look for and what to say when it is missing.
pub struct Tool<'a> {
    /// Names the binary to use instead of searching (a wrong name reads as missing).
    pub env: &'a str,
    pub names: &'a [&'a str],
    /// `1` turns a missing binary into a failure.
    pub require: &'a str,
    /// How to install it, for the messages.
    pub install: &'a str,
}

impl Tool<'_> {
    /// The binary, or `None` after saying why the test is skipped.
    pub fn find(&self) -> Option<PathBuf> {
        let found = match std::env::var_os(self.env) {
            Some(named) => Some(PathBuf::from(named)).filter(|p| p.is_file()),
            None => {
                let path = std::env::var_os("PATH").unwrap_or_default();
                std::env::split_paths(&path)
                    .chain([PathBuf::from("/usr/bin")])
                    .flat_map(|dir| self.names.iter().map(move |name| dir.join(name)))
                    .find(|p| p.is_file())
            }
        };
        if found.is_none() {
            let name = self.names.first().copied().unwrap_or_default();
            assert!(
                std::env::var(self.require).as_deref() != Ok("1"),
                "{}=1 but no {name} found ({}, or set {})",
                self.require,
                self.install,
                self.env
            );
            // The harness is a library, whose prints the lints refuse; the notice must still
            // reach whoever runs the tests.
            let _ =
                writeln!(std::io::stderr(), "skipped: no {name}; {} ({}=1 fails instead)", self.install, self.require);
        }
        found
    }
}
