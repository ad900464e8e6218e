//! Exit codes: one per class of failure, so a script can branch on `$?` without parsing the
//! message. The table is part of the interface and is repeated in the README and `--help`.

use fib_rpc::{Error, ErrorCode, NoServerReason};

/// Why `fib-rpc` failed, as its exit code says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Anything not below: an invalid reply, an unexpected AMQP or I/O error.
    Failure,
    /// The command line cannot be run: unknown option, bad option value, malformed URL.
    Usage,
    /// N is not a non-negative whole number below 2^64, or the server refused it
    /// (`bad_request`, `out_of_range`: above its `--max-n`).
    BadN,
    /// The server answered with any other error (`internal`, or a code we do not know).
    Remote,
    /// No reply before the timeout (with `--wait-for-server`, also when no server consumes
    /// the queue).
    Timeout,
    /// The broker has no queue of that name: no server was ever started for it.
    NoServer,
    /// The broker cannot be reached, refused the credentials or vhost, or refused to take the
    /// request.
    BrokerUnreachable,
    /// The connection dropped while a call was in flight; the outcome is unknown.
    ConnectionLost,
    /// The queue exists but no server consumes it: every server is down or restarting.
    NoConsumer,
}

impl Class {
    /// Every class, in exit-code order (for the help text and the tests).
    pub const ALL: [Class; 9] = [
        Class::Failure,
        Class::Usage,
        Class::BadN,
        Class::Remote,
        Class::Timeout,
        Class::NoServer,
        Class::BrokerUnreachable,
        Class::ConnectionLost,
        Class::NoConsumer,
    ];

    pub fn of(err: &Error) -> Class {
        match err {
            Error::InvalidArgument(_) => Class::Usage,
            Error::Connect { .. } | Error::NotConnected { .. } | Error::RequestRefused { .. } => {
                Class::BrokerUnreachable
            }
            Error::Timeout { .. } | Error::Unconfirmed { .. } => Class::Timeout,
            Error::NoServer {
                reason: NoServerReason::NoConsumer,
                ..
            } => Class::NoConsumer,
            Error::NoServer { .. } => Class::NoServer,
            Error::ConnectionLost { .. } | Error::Closed => Class::ConnectionLost,
            Error::Remote(remote) => match remote.code {
                ErrorCode::BadRequest | ErrorCode::OutOfRange => Class::BadN,
                _ => Class::Remote,
            },
            _ => Class::Failure,
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Class::Failure => 1,
            Class::Usage => 2,
            Class::BadN => 3,
            Class::Remote => 4,
            Class::Timeout => 5,
            Class::NoServer => 6,
            Class::BrokerUnreachable => 7,
            Class::ConnectionLost => 8,
            Class::NoConsumer => 9,
        }
    }

    /// The name used in `bench`'s error counts and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Class::Failure => "other",
            Class::Usage => "usage",
            Class::BadN => "bad_n",
            Class::Remote => "remote_error",
            Class::Timeout => "timeout",
            Class::NoServer => "no_server",
            Class::BrokerUnreachable => "broker_unreachable",
            Class::ConnectionLost => "connection_lost",
            Class::NoConsumer => "no_consumer",
        }
    }

    pub fn meaning(self) -> &'static str {
        match self {
            Class::Failure => "other failure (invalid reply, unexpected AMQP or I/O error)",
            Class::Usage => "usage: unknown option, bad option value or URL",
            Class::BadN => "bad N: not a whole number 0..2^64, or above the server's --max-n",
            Class::Remote => "the server failed to compute (remote error)",
            Class::Timeout => "timeout: no reply in time",
            Class::NoServer => "no server: the broker has no queue of that name",
            Class::BrokerUnreachable => {
                "broker unreachable, or it refused credentials/vhost/request"
            }
            Class::ConnectionLost => "connection lost mid-call: outcome unknown",
            Class::NoConsumer => "no server consumes the queue (it exists)",
        }
    }
}

/// A failure that ends the process: its class (the exit code) and the one-line reason.
#[derive(Debug)]
pub struct Failure {
    pub class: Class,
    pub message: String,
}

impl Failure {
    pub fn new(class: Class, message: impl Into<String>) -> Self {
        Failure {
            class,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    /// The message is the error and its causes on one line.
    fn from(err: Error) -> Self {
        Failure::new(Class::of(&err), err.full_message())
    }
}

impl From<std::io::Error> for Failure {
    fn from(err: std::io::Error) -> Self {
        Failure::new(Class::Failure, format!("I/O error: {err}"))
    }
}
