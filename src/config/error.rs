//! [`ConfigError`], the one error type of `config`: why a configuration was
//! refused, placed at its file, line and dotted key so the daemon, `pgmaint
//! config check` and the tests can all print or inspect it the same way.

/// Why a configuration was refused. `Display` gives `FILE:LINE: what, where`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read the configuration: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}:{line}: TOML syntax error: {message}")]
    Syntax { file: String, line: usize, message: String },
    #[error("{file}:{line}: unknown section [{name}] (expected one of {})", .expected.join(", "))]
    UnknownSection { file: String, line: usize, name: String, expected: Vec<String> },
    #[error("{file}:{line}: unknown key \"{key}\" {} (expected one of {})", place(.section), .expected.join(", "))]
    UnknownKey { file: String, line: usize, section: Option<String>, key: String, expected: Vec<String> },
    #[error("{file}:{line}: bad value for \"{key}\" {}: {problem}", place(.section))]
    Invalid { file: String, line: usize, section: Option<String>, key: String, problem: String },
    /// A key a section cannot do without; the line is the section's.
    #[error("{file}:{line}: missing key \"{key}\" in [{section}]: {problem}")]
    Missing { file: String, line: usize, section: String, key: String, problem: String },
    /// A command-line override that is not valid (`--state-url`, `--node`, `--data-dir`).
    #[error("{flag}: {problem}")]
    Flag { flag: &'static str, problem: String },
}

fn place(section: &Option<String>) -> String {
    match section {
        Some(section) => format!("in [{section}]"),
        None => "at the top level".to_string(),
    }
}

impl ConfigError {
    /// The file the error is about, as it was named.
    pub fn file(&self) -> &str {
        match self {
            ConfigError::Read { file, .. }
            | ConfigError::Syntax { file, .. }
            | ConfigError::UnknownSection { file, .. }
            | ConfigError::UnknownKey { file, .. }
            | ConfigError::Invalid { file, .. }
            | ConfigError::Missing { file, .. } => file,
            ConfigError::Flag { flag, .. } => flag,
        }
    }

    /// The 1-based line, for errors about the content.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } | ConfigError::Flag { .. } => None,
            ConfigError::Syntax { line, .. }
            | ConfigError::UnknownSection { line, .. }
            | ConfigError::UnknownKey { line, .. }
            | ConfigError::Invalid { line, .. }
            | ConfigError::Missing { line, .. } => Some(*line),
        }
    }

    /// The dotted key at fault (`smtp.hots`, `daemon.tick`, `smpt`), if any.
    pub fn key(&self) -> Option<String> {
        match self {
            ConfigError::Read { .. } | ConfigError::Syntax { .. } | ConfigError::Flag { .. } => None,
            ConfigError::UnknownSection { name, .. } => Some(name.clone()),
            ConfigError::UnknownKey { section, key, .. } | ConfigError::Invalid { section, key, .. } => {
                Some(match section {
                    Some(section) => format!("{section}.{key}"),
                    None => key.clone(),
                })
            }
            ConfigError::Missing { section, key, .. } => Some(format!("{section}.{key}")),
        }
    }
}
