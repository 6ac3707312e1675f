//! Every failure the core can report, each with one stable code that JS sees as `err.code`.

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another session holds the lock. `holder` is the stored record, shown to the caller as `err.holder`.
    #[error("{message}")]
    Locked { message: String, holder: Value },
    #[error("{0}")]
    Invalid(String),
    /// The store refused the operation (a server error, a folder in use, a replica that did not
    /// acknowledge, ...).
    #[error("{0}")]
    Backend(String),
    /// The store cannot be reached: the connection was refused or dropped. Same code as Backend;
    /// unlike it, a reason for the hybrid to fail over.
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Timeout(String),
    /// A stored record is not in the wire format; it is left in place for an operator to inspect.
    #[error("{0}")]
    Corrupt(String),
    #[error("{0}")]
    Closed(String),
    /// A lock the caller held is gone (expired, released by someone else, lost at recovery).
    #[error("{message}")]
    Lost { message: String, holder: Value },
    /// Waiting would close a cycle of sessions each waiting for the next; `holder` names the
    /// blocking holder and, under `cycle`, every wait of the cycle.
    #[error("{message}")]
    Deadlock { message: String, holder: Value },
    /// The caller gave up waiting (its AbortSignal fired); nothing was left behind.
    #[error("{0}")]
    Aborted(String),
}

impl Error {
    pub fn code(&self) -> &'static str {
        match self {
            Error::Locked { .. } => "ELOCKED",
            Error::Invalid(_) => "EINVAL",
            Error::Backend(_) | Error::Unreachable(_) => "EBACKEND",
            Error::Timeout(_) => "ETIMEDOUT",
            Error::Corrupt(_) => "ECORRUPT",
            Error::Closed(_) => "ECLOSED",
            Error::Lost { .. } => "ELOST",
            Error::Aborted(_) => "EABORTED",
            Error::Deadlock { .. } => "EDEADLK",
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    pub fn backend(msg: impl Into<String>) -> Self {
        Error::Backend(msg.into())
    }

    /// Failures that mean "the store is not answering": the hybrid fails over on these and only
    /// these. A server that answers with an error (NOPERM, OOM, BUSY, ...) is answering.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unreachable(_) | Error::Timeout(_))
    }

    pub fn holder(&self) -> Option<&Value> {
        match self {
            Error::Locked { holder, .. } | Error::Lost { holder, .. } | Error::Deadlock { holder, .. } if !holder.is_null() => Some(holder),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
