//! The one error type of the engine, shared by everything above it.

use std::io;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A peer sent bytes that do not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Bytes on disk that are not what we wrote.
    #[error("corrupted {what}: {detail}")]
    Corrupted { what: String, detail: String },
    /// Input from a user or peer that is well-formed but not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// An operating-system call failed; `context` says what we were doing.
    /// The OS error is part of the message and not a `source()`, so error
    /// chains print it once.
    #[error("{context}: {cause}")]
    Io { context: String, cause: io::Error },
    /// The remote side answered with an error.
    #[error("{0}")]
    Remote(crate::msg::RemoteError),
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            cause: source,
        }
    }

    pub fn corrupted(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Corrupted {
            what: what.into(),
            detail: detail.into(),
        }
    }

    /// True when the error came from the operating system saying the disk is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Io { cause: source, .. } if source.raw_os_error() == Some(libc::ENOSPC))
    }

    /// True for errors after which the connection can't be trusted or reused.
    pub fn is_connection_error(&self) -> bool {
        matches!(self, Error::Io { .. } | Error::Protocol(_))
    }
}

/// Adds a context to io results: `file.sync_all().context("sync block file")?`.
pub trait IoContext<T> {
    fn context(self, context: impl Into<String>) -> Result<T>;
    fn with_context<S: Into<String>>(self, context: impl FnOnce() -> S) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|source| Error::io(context, source))
    }
    fn with_context<S: Into<String>>(self, context: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|source| Error::io(context(), source))
    }
}
