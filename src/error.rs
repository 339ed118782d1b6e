//! The caller-facing error.

use crate::address::{Address, NameError};
use crate::codec::CodecError;
use crate::status::{Code, Status};
use std::time::Duration;

/// Everything that can go wrong with a call, a send, or starting a node.
///
/// Transport failures ([`Error::NoRoute`], [`Error::Timeout`],
/// [`Error::ConnectionLost`], …) are told apart from what the remote
/// handler answered ([`Error::Remote`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No queue is bound for the address: nobody could receive the request.
    /// Reported at once, not at the deadline.
    #[error("no route to {address}: no service instance is listening there")]
    NoRoute {
        /// Where the request was sent.
        address: Address,
    },
    /// The deadline passed before a reply came.
    #[error("no reply within {after:?}; the deadline passed")]
    Timeout {
        /// The time the call was given.
        after: Duration,
    },
    /// The remote side answered with an error status.
    #[error("remote error: {0}")]
    Remote(Status),
    /// The connection to the broker was lost while the call was in flight:
    /// its reply can no longer arrive. The request may or may not have run.
    #[error(
        "the broker connection was lost while the call was in flight; it may or may not have run"
    )]
    ConnectionLost,
    /// The broker blocked publishing (a memory or disk alarm) while the call
    /// was in flight, and the call gave up (at once under
    /// [`WhenDisconnected::FailFast`](crate::config::WhenDisconnected), else
    /// at its deadline). The request may or may not run once the broker
    /// unblocks.
    #[error(
        "the broker blocked publishing ({reason}) while the call was in flight; it may or may not run once the alarm clears"
    )]
    Blocked {
        /// The broker's reason (`low on memory`, `low on disk`).
        reason: String,
    },
    /// There is no connection to the broker right now, and the request was
    /// not sent.
    #[error("not connected to the broker ({reason}); the request was not sent")]
    Unavailable {
        /// Why (the last connection error, or that the broker blocked us).
        reason: String,
    },
    /// The broker refused or failed an operation.
    #[error("broker error: {0}")]
    Broker(String),
    /// A body could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// An id, type or method name was refused.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The request cannot be made as asked (for example a single-reply call
    /// to an `every`/`all` address, or a body over the size limit).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Configuration that cannot work (a bad URL, an unusable setting).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The client or node was shut down.
    #[error("shut down")]
    Shutdown,
}

impl Error {
    /// The status a server sends for this error, when a handler fails with it.
    #[must_use]
    pub fn to_status(&self) -> Status {
        match self {
            Self::Remote(status) => status.clone(),
            Self::Timeout { .. } => Status::new(Code::DeadlineExceeded, self.to_string()),
            Self::Codec(CodecError::Unsupported(_)) => {
                Status::new(Code::UnsupportedContentType, self.to_string())
            }
            Self::Codec(_) | Self::Name(_) | Self::InvalidRequest(_) => {
                Status::new(Code::BadRequest, self.to_string())
            }
            Self::Unavailable { .. } | Self::Blocked { .. } | Self::Shutdown => {
                Status::new(Code::Unavailable, self.to_string())
            }
            _ => Status::new(Code::Internal, self.to_string()),
        }
    }

    /// The remote status, if this is a [`Error::Remote`].
    #[must_use]
    pub fn status(&self) -> Option<&Status> {
        match self {
            Self::Remote(s) => Some(s),
            _ => None,
        }
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        Self::Remote(status)
    }
}
