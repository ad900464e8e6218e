//! The wire protocol, in one place: what a request and a reply look like on the broker.
//!
//! It is RabbitMQ tutorial six's, so the tutorial's programs interoperate with ours:
//!
//! * **Request**: published to the default exchange `""` with the server's queue name as
//!   routing key; properties `reply_to` (where to answer) and `correlation_id`. Our client
//!   also sets `expiration` to the milliseconds it will still wait and the
//!   [`DEADLINE_HEADER`]. The body is the service's (for Fibonacci, `n` in ASCII decimal).
//! * **Success reply**: default exchange, routing key = the request's `reply_to`, the same
//!   `correlation_id`, and the result as the body.
//! * **Error reply**: the same addressing, plus the header [`ERROR_HEADER`] whose value is a
//!   machine-readable [`ErrorCode`]; the body says what went wrong in words. A client that does
//!   not know the header (the tutorial's) sees a body that is not a number.
//!
//! [`request`] encodes requests (client) and decodes them (server); [`reply`] does the same
//! for replies; [`headers`] turns AMQP header values into our own [`HeaderValue`].

use std::fmt;

mod headers;
pub(crate) mod reply;
pub(crate) mod request;
mod trace;

pub use headers::HeaderValue;
pub use trace::{TraceParent, TRACEPARENT_HEADER};

/// Name of the reply header that marks an error reply. Its value is an [`ErrorCode`] string.
pub const ERROR_HEADER: &str = "x-rpc-error";

/// Name of the request header that carries the caller's deadline, as milliseconds since the
/// Unix epoch (a signed 64-bit integer). A server drops a request received after it (by more
/// than its [`deadline_grace`](crate::ServerOptions::deadline_grace)), unread: nobody waits
/// for the answer any more. Comparing it needs the two machines' clocks to agree
/// (NTP); requests without it are always served.
pub const DEADLINE_HEADER: &str = "x-rpc-deadline";

/// The queue the tutorial's programs use, and our default.
pub const DEFAULT_QUEUE: &str = "rpc_queue";

/// Machine-readable class of an error reply, carried in the [`ERROR_HEADER`] header.
///
/// ```
/// use fib_rpc::ErrorCode;
///
/// assert_eq!(ErrorCode::parse("out_of_range"), ErrorCode::OutOfRange);
/// assert_eq!(ErrorCode::parse("teapot").as_str(), "teapot");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request could not be understood (`bad_request`): not a number, negative, empty...
    BadRequest,
    /// The request was understood but is outside what the server accepts (`out_of_range`),
    /// for example `n` above the server's limit.
    OutOfRange,
    /// The handler failed while serving a valid request (`internal`), for example it panicked.
    Internal,
    /// A code this version does not know, kept verbatim.
    Other(String),
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::OutOfRange => "out_of_range",
            ErrorCode::Internal => "internal",
            ErrorCode::Other(code) => code,
        }
    }

    /// Reads a code from the wire; unknown codes become [`ErrorCode::Other`].
    pub fn parse(code: &str) -> Self {
        match code {
            "bad_request" => ErrorCode::BadRequest,
            "out_of_range" => ErrorCode::OutOfRange,
            "internal" => ErrorCode::Internal,
            other => ErrorCode::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error reply: what a handler returns to refuse a request, and what a client receives as
/// [`Error::Remote`](crate::Error::Remote).
///
/// ```
/// use fib_rpc::{ErrorCode, RemoteError};
///
/// let refusal = RemoteError::bad_request("expected a name");
/// assert_eq!(refusal.code, ErrorCode::BadRequest);
/// assert_eq!(refusal.to_string(), "bad_request: expected a name");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    /// The machine-readable class.
    pub code: ErrorCode,
    /// What went wrong, in words, for people.
    pub message: String,
}

impl RemoteError {
    /// Builds an error reply.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RemoteError {
            code,
            message: message.into(),
        }
    }

    /// A `bad_request` error reply.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// An `out_of_range` error reply.
    pub fn out_of_range(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::OutOfRange, message)
    }

    /// An `internal` error reply: the request was fine, serving it failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for RemoteError {}

/// Longest queue name AMQP 0-9-1 can carry (a `shortstr`).
const MAX_QUEUE_NAME_BYTES: usize = 255;

/// Refuses queue names the broker would refuse (by closing the connection): empty, or longer
/// than 255 bytes.
pub(crate) fn check_queue_name(queue: &str) -> Result<(), crate::Error> {
    if queue.is_empty() {
        return Err(crate::Error::InvalidArgument(
            "queue name must not be empty".into(),
        ));
    }
    if queue.len() > MAX_QUEUE_NAME_BYTES {
        return Err(crate::Error::InvalidArgument(format!(
            "queue name is {} bytes long; AMQP allows at most {MAX_QUEUE_NAME_BYTES}",
            queue.len()
        )));
    }
    Ok(())
}

/// A short, printable rendering of untrusted bytes for error messages and logs.
pub(crate) fn preview(bytes: &[u8]) -> String {
    const MAX: usize = 40;
    let shown = &bytes[..bytes.len().min(MAX)];
    let mut text = format!("{:?}", String::from_utf8_lossy(shown));
    if bytes.len() > MAX {
        text.push_str(&format!(" (and {} more bytes)", bytes.len() - MAX));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_round_trip() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::OutOfRange,
            ErrorCode::Internal,
            ErrorCode::Other("teapot".into()),
        ] {
            assert_eq!(ErrorCode::parse(code.as_str()), code);
        }
    }

    #[test]
    fn preview_is_bounded() {
        let long = vec![b'7'; 1000];
        let shown = preview(&long);
        assert!(shown.len() < 80, "{shown}");
        assert!(shown.contains("960 more bytes"));
    }
}
