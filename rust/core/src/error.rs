//! The one error type of the engine. The Python binding maps each variant onto one class of
//! `tokensieve.exceptions`, so every message here names what is wrong and where.

use std::path::PathBuf;

use crate::io::SkipReason;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A caller passed a value outside the accepted range or vocabulary.
    #[error("{0}")]
    InvalidArgument(String),

    /// Reading or decompressing a file failed (missing file, permission, truncated stream).
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    /// A file is not in a format we can read (bad Parquet footer, text column of the wrong type).
    #[error("{path}: {detail}")]
    Format { path: PathBuf, detail: String },

    /// The caller's progress callback asked to stop (in Python: it raised, e.g. on Ctrl-C).
    #[error("stopped by the caller")]
    Stopped,

    /// A fastText model file is truncated, oversized or inconsistent, or the model cannot
    /// predict (it produced NaN).
    #[error("{path}: {detail}")]
    Model { path: PathBuf, detail: String },

    /// A record could not be turned into a document and the caller asked to raise on bad input.
    #[error("{path}:{line}: {reason}: {detail}", reason = reason.name())]
    BadRecord { path: String, line: u64, reason: SkipReason, detail: String },
}

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    /// Wraps an I/O error with the file it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
