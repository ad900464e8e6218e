//! The wire protocol, in one place.
//!
//! It is RabbitMQ tutorial six's, so the tutorial's Python programs interoperate with ours:
//!
//! * **Request**: published to the default exchange `""` with the server's queue name as
//!   routing key; properties `reply_to` (where to answer) and `correlation_id` (a UUID v4).
//!   Our client also sets `expiration` to the milliseconds it will still wait. For the
//!   Fibonacci service the body is `n` in ASCII decimal.
//! * **Success reply**: default exchange, routing key = the request's `reply_to`, the same
//!   `correlation_id`, and the result as the body (for Fibonacci: fib(n) in ASCII decimal and
//!   nothing else).
//! * **Error reply**: the same addressing, plus the header [`ERROR_HEADER`] whose value is a
//!   machine-readable [`ErrorCode`]; the body says what went wrong in words. A client that does
//!   not know the header (the tutorial's) sees a body that is not a number.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amiquip::{AmqpValue, FieldTable};

/// Name of the reply header that marks an error reply. Its value is an [`ErrorCode`] string.
pub const ERROR_HEADER: &str = "x-rpc-error";

/// Name of the request header that carries the caller's deadline, as milliseconds since the
/// Unix epoch (a signed 64-bit integer). A server drops a request received after it, unread:
/// nobody waits for the answer any more. Comparing it needs the two machines' clocks to agree
/// (NTP); requests without it are always served.
pub const DEADLINE_HEADER: &str = "x-rpc-deadline";

/// The queue the tutorial's programs use, and our default.
pub const DEFAULT_QUEUE: &str = "rpc_queue";

/// Machine-readable class of an error reply, carried in the [`ERROR_HEADER`] header.
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

/// Reads the Fibonacci request body: `n` in ASCII decimal, surrounding ASCII whitespace
/// allowed (so `"30\n"` from a shell works), nothing else.
///
/// Every malformed body gets its own message, because the sender is often a person.
///
/// ```
/// use fib_rpc::wire::{parse_n, ErrorCode};
/// assert_eq!(parse_n(b"30", 1000), Ok(30));
/// assert_eq!(parse_n(b"-5", 1000).unwrap_err().code, ErrorCode::BadRequest);
/// assert_eq!(parse_n(b"1001", 1000).unwrap_err().code, ErrorCode::OutOfRange);
/// ```
pub fn parse_n(body: &[u8], max_n: u64) -> Result<u64, RemoteError> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(RemoteError::bad_request(format!(
            "request is not UTF-8 text (got {}); expected n as a non-negative decimal integer",
            preview(body)
        )));
    };
    let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if text.is_empty() {
        return Err(RemoteError::bad_request(
            "empty request; expected n as a non-negative decimal integer",
        ));
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        let why = if text.starts_with('-') && is_number_like(&text[1..]) {
            "n must not be negative"
        } else if is_number_like(text) && text.contains(['.', 'e', 'E']) {
            "n must be a whole number"
        } else {
            "expected n as a non-negative decimal integer"
        };
        return Err(RemoteError::bad_request(format!(
            "{why}, got {}",
            preview(text.as_bytes())
        )));
    }
    let n: u64 = text.parse().map_err(|_| {
        RemoteError::out_of_range(format!(
            "n = {} does not fit in 64 bits (largest is {})",
            preview(text.as_bytes()),
            u64::MAX
        ))
    })?;
    if n > max_n {
        return Err(RemoteError::out_of_range(format!(
            "n = {n} is above this server's limit of {max_n}"
        )));
    }
    Ok(n)
}

/// True for text made only of what numbers are written with, so `"1.5"` and `"1e3"` get a
/// more helpful message than `"abc"`.
fn is_number_like(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().any(|b| b.is_ascii_digit())
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
}

/// Turns a reply into the call's result: an error reply (with [`ERROR_HEADER`]) becomes
/// [`Error::Remote`](crate::Error::Remote), anything else is the answer. Replies come from
/// whatever is on the other end of the queue, so nothing here may panic on odd input.
pub(crate) fn decode_reply(
    headers: Option<&FieldTable>,
    body: Vec<u8>,
) -> Result<Vec<u8>, crate::Error> {
    let Some(code) = headers.and_then(|headers| headers.get(ERROR_HEADER)) else {
        return Ok(body);
    };
    let code = match code {
        AmqpValue::LongString(text) => ErrorCode::parse(text),
        AmqpValue::ByteArray(bytes) => ErrorCode::parse(&String::from_utf8_lossy(bytes)),
        other => ErrorCode::Other(format!("{other:?}")),
    };
    Err(crate::Error::Remote(RemoteError::new(
        code,
        String::from_utf8_lossy(&body),
    )))
}

/// Checks a Fibonacci reply: fib(`n`) in ASCII decimal and nothing else.
pub(crate) fn check_decimal_reply(n: u64, reply: Vec<u8>) -> Result<String, crate::Error> {
    if reply.is_empty() || !reply.iter().all(u8::is_ascii_digit) {
        return Err(crate::Error::InvalidReply(format!(
            "expected fib({n}) in decimal, got {}",
            preview(&reply)
        )));
    }
    Ok(String::from_utf8(reply).expect("ASCII digits are UTF-8"))
}

/// `time` as milliseconds since the Unix epoch, for the [`DEADLINE_HEADER`]; `None` for
/// times the header cannot carry.
pub(crate) fn unix_millis(time: SystemTime) -> Option<i64> {
    let since_epoch = time.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(since_epoch.as_millis()).ok()
}

/// How long ago a request's [`DEADLINE_HEADER`] deadline passed, or `None` if it has not (or
/// the request has no usable deadline: absent, not an integer).
pub(crate) fn past_deadline(headers: Option<&FieldTable>, now: SystemTime) -> Option<Duration> {
    let deadline_ms = match headers?.get(DEADLINE_HEADER)? {
        AmqpValue::LongLongInt(ms) => *ms,
        AmqpValue::LongInt(ms) => i64::from(*ms),
        AmqpValue::LongUInt(ms) => i64::from(*ms),
        _ => return None,
    };
    let now_ms = unix_millis(now)?;
    let late_ms = now_ms.checked_sub(deadline_ms)?;
    (late_ms > 0).then(|| Duration::from_millis(late_ms.unsigned_abs()))
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

    fn code(body: &[u8]) -> ErrorCode {
        parse_n(body, 1_000_000).unwrap_err().code
    }

    #[test]
    fn accepts_decimal_with_surrounding_whitespace() {
        assert_eq!(parse_n(b"0", 10), Ok(0));
        assert_eq!(parse_n(b" 30\n", 100), Ok(30));
        assert_eq!(parse_n(b"007", 100), Ok(7));
        assert_eq!(parse_n(b"18446744073709551615", u64::MAX), Ok(u64::MAX));
    }

    #[test]
    fn refuses_every_malformed_body_with_a_reason() {
        for body in [
            &b""[..],
            b"   ",
            b"abc",
            b"-5",
            b"1.5",
            b"1e3",
            b"+5",
            b"3 4",
            b"\xff\xfe",
            b"0x10",
        ] {
            assert_eq!(code(body), ErrorCode::BadRequest, "{body:?}");
        }
        assert!(parse_n(b"-5", 10).unwrap_err().message.contains("negative"));
        assert!(parse_n(b"1.5", 10).unwrap_err().message.contains("whole"));
        assert!(parse_n(b"\xff", 10).unwrap_err().message.contains("UTF-8"));
    }

    #[test]
    fn refuses_out_of_range() {
        assert_eq!(code(b"18446744073709551616"), ErrorCode::OutOfRange);
        assert_eq!(code(b"1000001"), ErrorCode::OutOfRange);
        assert_eq!(parse_n(b"1000000", 1_000_000), Ok(1_000_000));
    }

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

#[cfg(test)]
mod fuzz;
