//! The one error type of this crate, and the broker failures it carries.
//!
//! Every failure a caller can meet is a variant of [`Error`], so a program can `match` on what
//! went wrong without parsing messages, or ask the two questions most callers decide on:
//! [`Error::is_transient`] (may the same call work later?) and [`Error::request_unsent`] (is a
//! retry certain not to run the request twice?).
//!
//! Causes are chained, not repeated: an error's `Display` says what failed, and the cause
//! behind it (a [`BrokerError`], an I/O error, the last reconnection failure) comes from
//! [`std::error::Error::source`]. [`Error::full_message`] gives both on one line.

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
/// Whether to call again depends on two things: whether the failure may pass
/// ([`is_transient`](Self::is_transient)), and whether the request may already have run
/// ([`request_unsent`](Self::request_unsent)). A call whose outcome is unknown
/// ([`Error::Timeout`], [`Error::ConnectionLost`]) should be sent again only if it is
/// idempotent: the server may have run it.
///
/// ```
/// use fib_rpc::Error;
/// use std::time::Duration;
///
/// /// Retry policy for a call that must not run twice.
/// fn worth_retrying(err: &Error) -> bool {
///     err.is_transient() && err.request_unsent()
/// }
///
/// let never_sent = Error::NotConnected { waited: Duration::from_secs(1), last_error: None };
/// assert!(worth_retrying(&never_sent));
/// // The server may have run it: only an idempotent call may go again.
/// let timed_out = Error::Timeout { waited: Duration::from_secs(1), consumers: None };
/// assert!(timed_out.is_transient() && !timed_out.request_unsent());
/// ```
///
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An argument or option was unusable: a malformed URL, zero workers, heartbeats off, a
    /// request above the client's size limit. Nothing was sent to the broker.
    InvalidArgument(String),

    /// The broker could not be reached or refused us (TCP, TLS, handshake, credentials,
    /// vhost). [`BrokerError::kind`] tells which; [`BrokerErrorKind::Refused`] will not pass
    /// by waiting.
    Connect {
        /// Where we tried to connect, with any password masked.
        broker: String,
        /// What failed (also the error's `source()`).
        cause: BrokerError,
    },

    /// No reply arrived before the call's deadline. The request carried that deadline as its AMQP
    /// `expiration` and its [`DEADLINE_HEADER`](crate::DEADLINE_HEADER), so a request still queued
    /// is dropped by the broker, and one a server receives late is dropped by the server, rather
    /// than computed for nobody. The outcome is unknown: the server may have run the request. Also
    /// returned by [`RpcServer::stop_timeout`](crate::RpcServer::stop_timeout) when the server did
    /// not stop in time.
    ///
    /// `consumers` says how many servers were consuming the call's queue when it timed out, as
    /// the client last saw it: `Some(0)` means nobody was there to answer. A call still waiting
    /// shortly before its deadline (250 ms before, or halfway for a call shorter than half a
    /// second) starts a probe then, so the count is usually that recent; otherwise it comes
    /// from a probe at most about a second old. The call never waits past its deadline for it:
    /// `None` when no answer was there by then (the broker too slow to answer, the client
    /// reconnecting, a very short call), and for a server's stop.
    Timeout {
        /// How long the call waited.
        waited: Duration,
        /// Servers consuming the queue at the deadline, when the client could tell.
        consumers: Option<u32>,
    },

    /// No reply arrived before the call's deadline, and the broker had not even confirmed taking
    /// the request (publisher confirms, [`ClientOptions::publisher_confirms`]): the trouble is
    /// in the broker, not the server. A quorum queue that has lost its majority of nodes holds
    /// publishes unconfirmed until the majority is back. The outcome is unknown: the broker may
    /// still deliver the request later (its deadline then makes the server drop it).
    ///
    /// [`ClientOptions::publisher_confirms`]: crate::ClientOptions::publisher_confirms
    Unconfirmed {
        /// How long the call waited.
        waited: Duration,
    },

    /// The broker refused to take the request (a publisher `basic.nack`: for example a queue
    /// at its length limit with `overflow = reject-publish`, or a quorum queue that could not
    /// accept it). It reached no server. An idempotent call is sent again within its deadline
    /// before this is returned.
    RequestRefused {
        /// The queue the request was for.
        queue: String,
    },

    /// No server can answer: the broker has no queue of that name
    /// ([`NoServerReason::NoQueue`]: the request came back unroutable, unrun), or the queue
    /// exists but no server consumes it ([`NoServerReason::NoConsumer`]: only with
    /// [`ClientOptions::require_server`], and then the request was not sent). Returned at
    /// once, without waiting for the deadline. Without `require_server`, a call to a queue
    /// nobody consumes waits in the queue and ends as [`Error::Timeout`], whose `consumers`
    /// then says `Some(0)`.
    ///
    /// [`ClientOptions::require_server`]: crate::ClientOptions::require_server
    NoServer {
        /// The queue the request was for.
        queue: String,
        /// Which of the two it was.
        reason: NoServerReason,
    },

    /// The connection to the broker was lost while the call was pending (its request sent).
    /// The outcome is unknown: the server may or may not have run the request. The client
    /// reconnects by itself; calls not sent yet wait for that (see [`Error::NotConnected`]).
    ConnectionLost {
        /// Why the connection ended, when the AMQP client told us (also the `source()`).
        cause: Option<BrokerError>,
    },

    /// The client was reconnecting to the broker for as long as the call could wait, so the
    /// request was **never sent**: retrying it is safe. The client goes on reconnecting.
    NotConnected {
        /// How long the call waited.
        waited: Duration,
        /// Why the client is not connected: the last connection attempt's error, or how the
        /// last connection was lost (also the `source()`).
        last_error: Option<Arc<Error>>,
    },

    /// The server answered with an error reply (bad request, out of range, handler failure).
    Remote(RemoteError),

    /// A reply arrived but is not in the format this client expects.
    InvalidReply(String),

    /// The client or server was closed by its owner; no further calls are possible.
    Closed,

    /// A broker operation failed outside of a call: declaring or consuming a queue, opening a
    /// channel, publishing.
    Broker(BrokerError),

    /// The operating system refused something (for example, spawning a thread).
    Io(std::io::Error),
}

impl Error {
    /// True when the same call may succeed later with nothing changed: a timeout, a lost or
    /// unreachable broker, a queue nobody has declared yet. False for refusals (bad
    /// arguments, credentials, error replies, a closed client), which repeat until someone
    /// changes something: [`Error::NotConnected`] follows its `last_error`, so a client
    /// whose broker refuses its credentials is not worth retrying.
    ///
    /// ```
    /// use fib_rpc::{Error, RemoteError};
    /// use std::time::Duration;
    ///
    /// assert!(Error::Timeout { waited: Duration::from_secs(1), consumers: None }.is_transient());
    /// assert!(!Error::Remote(RemoteError::bad_request("not a number")).is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        match self {
            // The client reconnects by itself after a loss.
            Error::Timeout { .. }
            | Error::Unconfirmed { .. }
            | Error::RequestRefused { .. }
            | Error::NoServer { .. }
            | Error::ConnectionLost { .. } => true,
            Error::NotConnected { last_error, .. } => {
                last_error.as_ref().is_none_or(|why| why.is_transient())
            }
            Error::Connect { cause, .. } | Error::Broker(cause) => cause.is_transient(),
            Error::InvalidArgument(_)
            | Error::Remote(_)
            | Error::InvalidReply(_)
            | Error::Closed
            | Error::Io(_) => false,
        }
    }

    /// True when the request certainly reached no server, so sending it again cannot run it
    /// twice: it was refused before sending ([`Error::InvalidArgument`]), never published
    /// ([`Error::Connect`], [`Error::NotConnected`]), returned unroutable
    /// ([`Error::NoServer`]) or refused by the broker ([`Error::RequestRefused`]). False when
    /// the server may have run it ([`Error::Timeout`], [`Error::Unconfirmed`],
    /// [`Error::ConnectionLost`], [`Error::Closed`] while it waited) or did
    /// ([`Error::Remote`], [`Error::InvalidReply`]).
    ///
    /// ```
    /// use fib_rpc::{Error, NoServerReason};
    ///
    /// let nobody = Error::NoServer { queue: "rpc_queue".into(), reason: NoServerReason::NoConsumer };
    /// assert!(nobody.request_unsent());
    /// assert!(!Error::ConnectionLost { cause: None }.request_unsent());
    /// ```
    pub fn request_unsent(&self) -> bool {
        matches!(
            self,
            Error::InvalidArgument(_)
                | Error::Connect { .. }
                | Error::NotConnected { .. }
                | Error::NoServer { .. }
                | Error::RequestRefused { .. }
        )
    }

    /// The error and each of its causes on one line, `: `-separated: what a log line or a
    /// command's last words should show (`Display` alone says what failed, not why).
    ///
    /// ```
    /// use fib_rpc::Error;
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// let err = Error::NotConnected {
    ///     waited: Duration::from_secs(1),
    ///     last_error: Some(Arc::new(Error::Closed)),
    /// };
    /// assert_eq!(err.to_string(), "not connected to the broker for 1.000 s, request not sent");
    /// assert_eq!(err.full_message(), format!("{err}: closed"));
    /// ```
    pub fn full_message(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(err) = cause {
            text.push_str(": ");
            text.push_str(&err.to_string());
            cause = err.source();
        }
        text
    }

    /// True when a broker refused to let us connect (credentials, vhost): the one failure to
    /// connect that no amount of waiting fixes.
    pub(crate) fn is_refused_connection(&self) -> bool {
        matches!(self, Error::Connect { cause, .. } if cause.kind() == BrokerErrorKind::Refused)
    }

    /// Wraps an AMQP client error from an operation outside of a call.
    pub(crate) fn amqp(err: amiquip::Error) -> Self {
        Error::Broker(BrokerError::amqp(err))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::Connect { broker, .. } => write!(f, "cannot connect to broker {broker}"),
            Error::Timeout { waited, consumers } => {
                write!(f, "no reply within {:.3} s", waited.as_secs_f64())?;
                match consumers {
                    None => Ok(()),
                    Some(0) => f.write_str("; no server was consuming the queue"),
                    Some(1) => f.write_str("; the queue had 1 consumer"),
                    Some(n) => write!(f, "; the queue had {n} consumers"),
                }
            }
            Error::Unconfirmed { waited } => write!(
                f,
                "no reply within {:.3} s, and the broker had not confirmed taking the request",
                waited.as_secs_f64()
            ),
            Error::RequestRefused { queue } => write!(
                f,
                "the broker refused the request for queue {queue:?} (publisher nack); it was \
                 not delivered"
            ),
            Error::NoServer { queue, reason } => match reason {
                NoServerReason::NoQueue => {
                    write!(f, "no server: the broker has no queue named {queue:?}")
                }
                NoServerReason::NoConsumer => write!(
                    f,
                    "no server: nobody consumes queue {queue:?}; request not sent"
                ),
            },
            Error::ConnectionLost { .. } => {
                f.write_str("connection to broker lost (outcome unknown)")
            }
            Error::NotConnected { waited, .. } => write!(
                f,
                "not connected to the broker for {:.3} s, request not sent",
                waited.as_secs_f64()
            ),
            Error::Remote(remote) => write!(f, "server error: {remote}"),
            Error::InvalidReply(why) => write!(f, "invalid reply: {why}"),
            Error::Closed => f.write_str("closed"),
            Error::Broker(_) => f.write_str("broker operation failed"),
            Error::Io(_) => f.write_str("operating system error"),
        }
    }
}

/// Why [`Error::NoServer`] says no server can answer.
///
/// `#[non_exhaustive]`: keep a `_` arm.
///
/// ```
/// use fib_rpc::{Error, NoServerReason};
///
/// fn advice(err: &Error) -> &'static str {
///     match err {
///         Error::NoServer { reason: NoServerReason::NoQueue, .. } => "no server was ever started",
///         Error::NoServer { reason: NoServerReason::NoConsumer, .. } => "every server is down",
///         _ => "something else",
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NoServerReason {
    /// The broker has no queue of that name: no server has ever declared it (or it was
    /// deleted).
    NoQueue,
    /// The queue exists but no server consumes it: its servers are down or restarting.
    NoConsumer,
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { cause, .. } => Some(cause),
            Error::ConnectionLost { cause: Some(cause) } => Some(cause),
            Error::NotConnected {
                last_error: Some(why),
                ..
            } => Some(why.as_ref()),
            Error::Broker(err) => Some(err),
            Error::Io(err) => Some(err),
            // A remote error's text is already in the message.
            _ => None,
        }
    }
}

impl From<RemoteError> for Error {
    fn from(err: RemoteError) -> Self {
        Error::Remote(err)
    }
}

/// What the broker, or the connection to it, reported: the cause inside [`Error::Connect`],
/// [`Error::ConnectionLost`] and [`Error::Broker`].
///
/// Callers classify it with [`kind`](Self::kind) and [`reply_code`](Self::reply_code); its
/// `Display` says what happened in words. Cheap to clone: the calls that were pending on one
/// connection share its cause. The AMQP client's own error behind it is not part of the API.
#[derive(Clone)]
pub struct BrokerError {
    kind: BrokerErrorKind,
    reply_code: Option<u16>,
    inner: Arc<dyn std::error::Error + Send + Sync + 'static>,
}

/// The classes of [`BrokerError`], for deciding what to do about one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BrokerErrorKind {
    /// The broker refused us: wrong user name or password, or no access to the virtual host
    /// or resource (AMQP 403, 530). Waiting does not fix it.
    Refused,
    /// The broker could not be reached, or the connection to it failed: name resolution, TCP,
    /// a handshake that timed out, missed heartbeats, a socket that died. May pass.
    Unreachable,
    /// The broker ended the connection or a channel with a reply code other than a refusal
    /// (see [`BrokerError::reply_code`]): 320 when it shuts down, 404 for a missing queue, 406
    /// for a queue declared with other arguments.
    Closed,
    /// The TLS handshake failed: a certificate not trusted or not for this host.
    Tls,
    /// The broker kept refusing what was published (publisher `basic.nack`), so the client
    /// replaced its connection: a full queue, or a channel the broker left unable to publish.
    /// May pass.
    Rejected,
    /// Anything else: a protocol error, a local resource.
    Other,
}

/// AMQP reply codes with a meaning here.
const CONNECTION_FORCED: u16 = 320;
const ACCESS_REFUSED: u16 = 403;
const NOT_ALLOWED: u16 = 530;

impl BrokerError {
    /// Which class of failure this is.
    pub fn kind(&self) -> BrokerErrorKind {
        self.kind
    }

    /// The AMQP reply code the broker closed the connection or channel with, if it did
    /// (for example 320, 403, 404, 406, 530).
    pub fn reply_code(&self) -> Option<u16> {
        self.reply_code
    }

    /// True for failures that may pass with nothing changed: an unreachable broker, a lost
    /// connection, a broker shutting down (320).
    pub fn is_transient(&self) -> bool {
        match self.kind {
            BrokerErrorKind::Unreachable | BrokerErrorKind::Rejected => true,
            BrokerErrorKind::Closed => self.reply_code == Some(CONNECTION_FORCED),
            _ => false,
        }
    }

    /// Wraps an error of the AMQP client, classifying it.
    pub(crate) fn amqp(err: amiquip::Error) -> Self {
        use amiquip::Error as E;
        let (kind, reply_code) = match &err {
            E::InvalidCredentials => (BrokerErrorKind::Refused, None),
            E::ServerClosedConnection { code, .. } | E::ServerClosedChannel { code, .. } => {
                let kind = if matches!(*code, ACCESS_REFUSED | NOT_ALLOWED) {
                    BrokerErrorKind::Refused
                } else {
                    BrokerErrorKind::Closed
                };
                (kind, Some(*code))
            }
            #[cfg(feature = "tls")]
            E::TlsHandshake { .. } => (BrokerErrorKind::Tls, None),
            E::UnexpectedSocketClose
            | E::IoErrorReadingSocket { .. }
            | E::IoErrorWritingSocket { .. }
            | E::ResolveUrlToSocketAddr { .. }
            | E::UrlNoSocketAddrs { .. }
            | E::FailedToConnect { .. }
            | E::ConnectionTimeout
            | E::MissedServerHeartbeats
            | E::EventLoopDropped
            | E::EventLoopClientDropped
            | E::ClientClosedChannel
            | E::ClientClosedConnection
            | E::IoThreadPanic => (BrokerErrorKind::Unreachable, None),
            _ => (BrokerErrorKind::Other, None),
        };
        BrokerError {
            kind,
            reply_code,
            inner: Arc::new(err),
        }
    }

    /// The same failure, told with `what` in front ("connection lost: ..."): same kind, same
    /// reply code.
    pub(crate) fn context(&self, what: &str) -> Self {
        BrokerError {
            kind: self.kind,
            reply_code: self.reply_code,
            inner: Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(format!(
                "{what}: {self}"
            ))),
        }
    }

    /// Wraps an I/O error met while connecting: the broker is unreachable.
    pub(crate) fn io(err: std::io::Error) -> Self {
        Self::other(BrokerErrorKind::Unreachable, err)
    }

    /// Wraps any other error, with its class.
    pub(crate) fn other(
        kind: BrokerErrorKind,
        err: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        BrokerError {
            kind,
            reply_code: None,
            inner: Arc::from(err.into()),
        }
    }

    /// The AMQP client's error behind this one, if that is what it wraps.
    pub(crate) fn amqp_error(&self) -> Option<&amiquip::Error> {
        self.inner.downcast_ref::<amiquip::Error>()
    }

    /// True when the AMQP client said only that its I/O thread is gone, not why.
    pub(crate) fn is_generic(&self) -> bool {
        self.amqp_error().is_some_and(crate::connect::is_generic)
    }
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl fmt::Debug for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerError")
            .field("kind", &self.kind)
            .field("reply_code", &self.reply_code)
            .field("message", &self.inner.to_string())
            .finish()
    }
}

/// Its message already includes whatever lies beneath (the AMQP client's errors say their
/// own causes), so it has no `source()` of its own: the chain does not say anything twice.
impl std::error::Error for BrokerError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_errors_are_classified() {
        let refused = BrokerError::amqp(amiquip::Error::InvalidCredentials);
        assert_eq!(refused.kind(), BrokerErrorKind::Refused);
        assert!(!refused.is_transient());
        let vhost = BrokerError::amqp(amiquip::Error::ServerClosedConnection {
            code: 530,
            message: "NOT_ALLOWED".into(),
        });
        assert_eq!(
            (vhost.kind(), vhost.reply_code()),
            (BrokerErrorKind::Refused, Some(530))
        );
        let shutdown = BrokerError::amqp(amiquip::Error::ServerClosedConnection {
            code: 320,
            message: "CONNECTION_FORCED".into(),
        });
        assert!(shutdown.is_transient());
        let heartbeats = BrokerError::amqp(amiquip::Error::MissedServerHeartbeats);
        assert_eq!(heartbeats.kind(), BrokerErrorKind::Unreachable);
        assert!(Error::Connect {
            broker: "amqp://localhost".into(),
            cause: heartbeats
        }
        .is_transient());
    }

    #[test]
    fn not_connected_is_as_transient_as_its_reason() {
        let refused = Error::Connect {
            broker: "amqp://localhost".into(),
            cause: BrokerError::amqp(amiquip::Error::InvalidCredentials),
        };
        let waited = Duration::from_secs(1);
        let not_connected = |last_error| Error::NotConnected { waited, last_error };
        assert!(!not_connected(Some(Arc::new(refused))).is_transient());
        assert!(not_connected(None).is_transient());
        assert!(not_connected(Some(Arc::new(Error::Connect {
            broker: "amqp://localhost".into(),
            cause: BrokerError::io(std::io::Error::other("connection refused")),
        })))
        .is_transient());
    }

    #[test]
    fn context_keeps_the_kind_and_the_reply_code() {
        let shutdown = BrokerError::amqp(amiquip::Error::ServerClosedConnection {
            code: 320,
            message: "CONNECTION_FORCED - broker shutdown".into(),
        });
        let told = shutdown.context("connection lost");
        assert_eq!(told.kind(), BrokerErrorKind::Closed);
        assert_eq!(told.reply_code(), Some(320));
        assert!(told.is_transient());
        assert!(told.to_string().starts_with("connection lost: "), "{told}");
    }

    #[test]
    fn the_cause_is_told_once_in_the_chain() {
        let cause = BrokerError::io(std::io::Error::other("connection refused"));
        let err = Error::Connect {
            broker: "amqp://guest:***@localhost:1/%2f".into(),
            cause,
        };
        let shown = err.to_string();
        assert!(!shown.contains("refused"), "{shown}");
        let source = std::error::Error::source(&err).expect("a cause");
        assert_eq!(source.to_string(), "connection refused");
    }
}
