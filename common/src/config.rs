//! Layered configuration for the binaries: built-in defaults, then a TOML file, then `SHOAL_*`
//! environment variables, then command-line flags (each overrides the one before). Unknown keys in
//! the file are errors that name the key; the environment may hold variables meant for other
//! Shoal binaries, so unknown variables there are ignored.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("configuration: {0}")]
    Invalid(String),
}

/// Builds `T` from its defaults, an optional TOML file, `SHOAL_*` variables and flag overrides
/// (`(key, value)` pairs; `None` values are skipped).
pub fn load<T: DeserializeOwned + Serialize + Default>(
    file: Option<&Path>,
    overrides: &[(&str, Option<String>)],
) -> Result<T, ConfigError> {
    let defaults = config::Config::try_from(&T::default()).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let mut builder = config::Config::builder().add_source(defaults);
    if let Some(path) = file {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::File { path: shown.clone(), reason: e.to_string() })?;
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| ConfigError::File { path: shown.clone(), reason: e.to_string() })?;
        let known = toml::Table::try_from(T::default()).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let Some(unknown) = table.keys().find(|k| !known.contains_key(*k)) {
            let mut keys: Vec<&String> = known.keys().collect();
            keys.sort();
            let keys: Vec<&str> = keys.into_iter().map(String::as_str).collect();
            return Err(ConfigError::File {
                path: shown,
                reason: format!("unknown key `{unknown}` (known keys: {})", keys.join(", ")),
            });
        }
        builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
    }
    builder = builder.add_source(config::Environment::with_prefix("SHOAL").try_parsing(true));
    for (key, value) in overrides {
        if let Some(v) = value {
            builder = builder.set_override(*key, v.as_str()).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
    }
    let built = builder.build().map_err(|e| ConfigError::Invalid(e.to_string()))?;
    built.try_deserialize().map_err(|e| ConfigError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(default)]
    struct Demo {
        listen: String,
        timeout_ms: u64,
        name: String,
    }

    impl Default for Demo {
        fn default() -> Self {
            Self { listen: "127.0.0.1:1".into(), timeout_ms: 5, name: "d".into() }
        }
    }

    #[test]
    fn flags_beat_environment_beat_file_beat_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:9\"\ntimeout_ms = 7\nname = \"file\"\n").expect("write");
        // SAFETY: this is the only test in the process that touches these variables.
        unsafe {
            std::env::set_var("SHOAL_TIMEOUT_MS", "11");
            std::env::set_var("SHOAL_NAME", "env");
        }
        let c: Demo = load(Some(&file), &[("name", Some("flag".into())), ("listen", None)]).expect("load");
        assert_eq!(c, Demo { listen: "0.0.0.0:9".into(), timeout_ms: 11, name: "flag".into() });
        unsafe {
            std::env::remove_var("SHOAL_TIMEOUT_MS");
            std::env::remove_var("SHOAL_NAME");
        }
        std::fs::write(&file, "listn = \"x\"\n").expect("write");
        let err = load::<Demo>(Some(&file), &[]).expect_err("unknown key");
        assert!(err.to_string().contains("unknown key `listn`"), "{err}");
    }
}
