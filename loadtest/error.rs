//! The harness's error type: what went wrong and how to fix it.

use std::io;

/// Why a run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Bad or inconsistent options (exit status 2).
    #[error("{0}")]
    Usage(String),
    /// The run could not be set up or completed (exit status 1).
    #[error("{0}")]
    Run(String),
    /// An I/O error, with what was being done.
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

impl LoadError {
    /// Wraps an I/O error with what was being attempted.
    pub fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> LoadError {
        let what = what.into();
        move |source| LoadError::Io { what, source }
    }

    /// The process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            LoadError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Result of the harness's operations.
pub type Result<T> = std::result::Result<T, LoadError>;
