//! The one error type of this crate.
//!
//! Every failure a caller can meet is a variant of [`Error`], so a program can `match` on what
//! went wrong (retry on [`Error::Timeout`], alert on [`Error::NoServer`], report
//! [`Error::Remote`] to its own user) without parsing messages.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::wire::RemoteError;

/// Short for `Result<T, fib_rpc::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when calling or serving.
///
/// The enum is `#[non_exhaustive]`: later versions may add variants, so keep a `_` arm.
///
/// ```
/// use fib_rpc::Error;
/// use std::time::Duration;
///
/// fn should_retry(err: &Error) -> bool {
///     matches!(err, Error::Timeout { .. } | Error::ConnectionLost { .. })
/// }
/// assert!(should_retry(&Error::Timeout { waited: Duration::from_secs(1) }));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An argument or option was unusable: a malformed URL, zero workers, heartbeats off, a
    /// request above the client's size limit. Nothing was sent to the broker.
    InvalidArgument(String),

    /// The broker could not be reached or refused us (TCP, handshake, credentials, vhost).
    Connect {
        /// Where we tried to connect, with any password masked.
        broker: String,
        /// What failed.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// No reply arrived before the call's deadline. The request carried that deadline as its
    /// AMQP `expiration` and its [`DEADLINE_HEADER`](crate::wire::DEADLINE_HEADER), so a
    /// request still queued is dropped by the broker, and one a server receives late is
    /// dropped by the server, rather than computed for nobody. Also returned by [`RpcServer::stop_timeout`](crate::RpcServer::stop_timeout)
    /// when the server did not stop in time.
    Timeout {
        /// How long the call waited.
        waited: Duration,
    },

    /// The broker has no queue of that name, so no server has ever set it up (the request came
    /// back as unroutable). Returned at once, without waiting for the deadline. A queue that
    /// exists but has no server consuming it gives [`Error::Timeout`] instead.
    NoServer {
        /// The routing key (queue name) that had no queue.
        queue: String,
    },

    /// The connection to the broker was lost while the call was pending (its request sent).
    /// The outcome is unknown: the server may or may not have run the request. The client
    /// reconnects by itself; calls not sent yet wait for that (see [`Error::NotConnected`]).
    ConnectionLost {
        /// Why the connection ended, when the AMQP client told us.
        cause: Option<Arc<amiquip::Error>>,
    },

    /// The client was reconnecting to the broker for as long as the call could wait, so the
    /// request was **never sent**: retrying it is safe. The client goes on reconnecting.
    NotConnected {
        /// How long the call waited.
        waited: Duration,
        /// Why the client is not connected: the last connection attempt's error, or how the
        /// last connection was lost.
        last_error: Option<Arc<Error>>,
    },

    /// The server answered with an error reply (bad request, out of range, handler failure).
    Remote(RemoteError),

    /// A reply arrived but is not in the format this client expects.
    InvalidReply(String),

    /// The client or server was closed by its owner; no further calls are possible.
    Closed,

    /// An AMQP operation failed outside of a call (declaring or consuming a queue, opening a
    /// channel).
    Amqp(amiquip::Error),

    /// The operating system refused something (for example, spawning a thread).
    Io(std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::Connect { broker, source } => {
                write!(f, "cannot connect to broker {broker}: {source}")
            }
            Error::Timeout { waited } => {
                write!(f, "no reply within {:.3} s", waited.as_secs_f64())
            }
            Error::NoServer { queue } => {
                write!(f, "no server: the broker has no queue named {queue:?}")
            }
            Error::ConnectionLost { cause: Some(cause) } => {
                write!(f, "connection to broker lost (outcome unknown): {cause}")
            }
            Error::ConnectionLost { cause: None } => {
                f.write_str("connection to broker lost (outcome unknown)")
            }
            Error::NotConnected { waited, last_error } => {
                write!(
                    f,
                    "not connected to the broker for {:.3} s, request not sent",
                    waited.as_secs_f64()
                )?;
                match last_error {
                    Some(why) => write!(f, " ({why})"),
                    None => Ok(()),
                }
            }
            Error::Remote(remote) => write!(f, "server error: {remote}"),
            Error::InvalidReply(why) => write!(f, "invalid reply: {why}"),
            Error::Closed => f.write_str("closed"),
            Error::Amqp(err) => write!(f, "AMQP error: {err}"),
            Error::Io(err) => write!(f, "I/O error: {err}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. } => Some(source.as_ref()),
            Error::ConnectionLost { cause: Some(cause) } => Some(cause.as_ref()),
            Error::NotConnected {
                last_error: Some(why),
                ..
            } => Some(why.as_ref()),
            Error::Remote(remote) => Some(remote),
            Error::Amqp(err) => Some(err),
            Error::Io(err) => Some(err),
            _ => None,
        }
    }
}

impl From<amiquip::Error> for Error {
    fn from(err: amiquip::Error) -> Self {
        Error::Amqp(err)
    }
}

impl From<RemoteError> for Error {
    fn from(err: RemoteError) -> Self {
        Error::Remote(err)
    }
}

impl Error {
    /// Wraps a lost-connection cause. Shared by every call that was pending on the connection.
    pub(crate) fn connection_lost(cause: &Option<Arc<amiquip::Error>>) -> Self {
        Error::ConnectionLost {
            cause: cause.clone(),
        }
    }
}
