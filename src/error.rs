//! The top-level error: any failure, classified into the exit-code table. Adapter modules keep
//! their own `thiserror` enums and say which class each variant belongs to.

use std::fmt;

use crate::exit;

/// Which row of the exit-code table a failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A gate said no.
    Gate,
    /// Bad flags, inputs or configuration.
    Usage,
    /// An outside service failed or was unreachable after retries.
    Dependency,
    /// A deadline passed.
    Timeout,
    /// The rollback itself failed.
    RollbackFailed,
}

impl Kind {
    /// The process exit code of this kind of failure.
    pub(crate) fn exit_code(self) -> u8 {
        self.status().code()
    }

    pub(crate) fn status(self) -> exit::Status {
        match self {
            Kind::Gate => exit::Status::GateFailed,
            Kind::Usage => exit::Status::Usage,
            Kind::Dependency => exit::Status::Dependency,
            Kind::Timeout => exit::Status::Timeout,
            Kind::RollbackFailed => exit::Status::RollbackFailed,
        }
    }
}

/// Where in a file the problem is (a config or suite error), so the annotation can pin it on
/// that file, line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) file: String,
    pub(crate) line: usize,
    pub(crate) column: usize,
}

/// A failure with its class, its cause chain and, for errors in a file, where.
pub(crate) struct Error {
    kind: Kind,
    inner: anyhow::Error,
    location: Option<Box<Location>>,
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn new(kind: Kind, message: impl fmt::Display) -> Self {
        Error {
            kind,
            inner: anyhow::anyhow!("{message}"),
            location: None,
        }
    }

    /// The same error, pinned on `file:line:column`.
    pub(crate) fn at(mut self, file: impl Into<String>, line: usize, column: usize) -> Self {
        self.location = Some(Box::new(Location {
            file: file.into(),
            line,
            column,
        }));
        self
    }

    pub(crate) fn location(&self) -> Option<&Location> {
        self.location.as_deref()
    }

    pub(crate) fn gate(message: impl fmt::Display) -> Self {
        Self::new(Kind::Gate, message)
    }

    pub(crate) fn usage(message: impl fmt::Display) -> Self {
        Self::new(Kind::Usage, message)
    }

    pub(crate) fn dependency(message: impl fmt::Display) -> Self {
        Self::new(Kind::Dependency, message)
    }

    pub(crate) fn timeout(message: impl fmt::Display) -> Self {
        Self::new(Kind::Timeout, message)
    }

    /// Wraps an error of an adapter module, keeping its chain.
    pub(crate) fn from_source<E>(kind: Kind, source: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Error {
            kind,
            inner: anyhow::Error::new(source),
            location: None,
        }
    }

    /// Adds context in front of the message, keeping the class.
    pub(crate) fn context(self, message: impl fmt::Display + Send + Sync + 'static) -> Self {
        Error {
            kind: self.kind,
            inner: self.inner.context(message),
            location: self.location,
        }
    }

    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// The outermost message.
    pub(crate) fn message(&self) -> String {
        self.inner.to_string()
    }

    /// The messages of the causes, outermost first, without the top one.
    pub(crate) fn causes(&self) -> Vec<String> {
        self.inner.chain().skip(1).map(|c| c.to_string()).collect()
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {:#}", self.kind, self.inner)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.inner)
    }
}

/// Classifies any adapter error into an [`Error`].
pub(crate) trait Classify {
    fn kind(&self) -> Kind;
}

impl<E> From<E> for Error
where
    E: Classify + std::error::Error + Send + Sync + 'static,
{
    fn from(source: E) -> Self {
        let kind = source.kind();
        Error::from_source(kind, source)
    }
}

/// `result.context("what was being done")` for any result whose error converts into [`Error`].
pub(crate) trait ResultExt<T> {
    fn context(self, message: impl fmt::Display + Send + Sync + 'static) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, message: impl fmt::Display + Send + Sync + 'static) -> Result<T> {
        self.map_err(|e| e.into().context(message))
    }
}
