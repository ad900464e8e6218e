//! W3C Trace Context: the `traceparent` a call can carry, so a server's logs can be joined to
//! the caller's trace.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// The request header that carries a call's trace context, named as in W3C Trace Context
/// (the name OpenTelemetry's propagators use in AMQP message headers too).
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// A W3C `traceparent`: the trace a call belongs to and the caller's span in it.
///
/// Give one to a call with [`CallOptions::traceparent`](crate::CallOptions::traceparent); it
/// travels in the request's [`TRACEPARENT_HEADER`], a handler reads it back with
/// [`Request::traceparent`](crate::Request::traceparent), and the server's log lines about
/// the request (error replies, panics) carry it. Written and parsed in the format of
/// <https://www.w3.org/TR/trace-context/#traceparent-header>:
/// `version-trace_id-parent_id-flags` in lowercase hex.
///
/// ```
/// use fib_rpc::TraceParent;
///
/// let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let parent: TraceParent = text.parse()?;
/// assert!(parent.sampled());
/// assert_eq!(parent.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(parent.to_string(), text);
/// assert!("00-00000000000000000000000000000000-00f067aa0ba902b7-01"
///     .parse::<TraceParent>()
///     .is_err()); // an all-zero trace id is invalid
/// # Ok::<(), fib_rpc::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

impl TraceParent {
    /// A trace context from its parts. `None` if either id is all zeros, which the
    /// specification declares invalid.
    pub fn new(trace_id: [u8; 16], parent_id: [u8; 8], sampled: bool) -> Option<TraceParent> {
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags: u8::from(sampled),
        })
    }

    /// The trace's id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The trace's id as the 32 lowercase hex digits the header carries.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The caller's span id (the parent of whatever the server does for this request).
    pub fn parent_id(&self) -> [u8; 8] {
        self.parent_id
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller records this trace (the `sampled` flag).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// Reads a header value. Version `00` must be exactly 55 characters; later versions may
    /// append fields, which are ignored (as the specification asks); version `ff` is invalid.
    fn parse(text: &str) -> Option<TraceParent> {
        let bytes = text.as_bytes();
        let version = hex_bytes::<1>(bytes.get(0..2)?)?[0];
        if version == 0xff || bytes.get(2) != Some(&b'-') {
            return None;
        }
        match (version, bytes.len()) {
            (0, 55) => {}
            (0, _) => return None,
            (_, 55) => {}
            (_, len) if len > 55 && bytes[55] == b'-' => {}
            _ => return None,
        }
        if bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let trace_id = hex_bytes::<16>(&bytes[3..35])?;
        let parent_id = hex_bytes::<8>(&bytes[36..52])?;
        let flags = hex_bytes::<1>(&bytes[53..55])?[0];
        TraceParent::new(trace_id, parent_id, false).map(|parent| TraceParent { flags, ..parent })
    }
}

impl FromStr for TraceParent {
    type Err = Error;

    /// Parses a `traceparent` header value; [`Error::InvalidArgument`] if it is not one.
    fn from_str(text: &str) -> Result<Self, Error> {
        TraceParent::parse(text).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{text:?} is not a W3C traceparent (00-<32 hex trace id>-<16 hex span id>-<2 \
                 hex flags>, lowercase, ids not all zero)"
            ))
        })
    }
}

impl fmt::Display for TraceParent {
    /// The header value, always written as version `00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

/// `N` bytes from `2N` lowercase hex digits (the specification allows no uppercase).
fn hex_bytes<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    if digits.len() != 2 * N {
        return None;
    }
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(bytes)
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn reads_and_writes_the_specifications_example() {
        let parent: TraceParent = EXAMPLE.parse().unwrap();
        assert_eq!(parent.trace_id()[0], 0x4b);
        assert_eq!(
            parent.parent_id(),
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(parent.flags(), 1);
        assert_eq!(parent.to_string(), EXAMPLE);
        let unsampled = EXAMPLE.replace("-01", "-00");
        assert!(!unsampled.parse::<TraceParent>().unwrap().sampled());
    }

    #[test]
    fn refuses_what_the_specification_calls_invalid() {
        for bad in [
            "",
            "00",
            &EXAMPLE.to_uppercase(),
            &EXAMPLE.replace("4bf92f3577b34da6a3ce929d0e0e4736", &"0".repeat(32)),
            &EXAMPLE.replace("00f067aa0ba902b7", &"0".repeat(16)),
            &EXAMPLE.replacen("00-", "ff-", 1),
            &format!("{EXAMPLE}-extra"), // version 00 has exactly four fields
            &EXAMPLE.replace('-', "_"),
            &EXAMPLE[..54],
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert!(bad.parse::<TraceParent>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn later_versions_may_append_fields() {
        let future = EXAMPLE.replacen("00-", "01-", 1) + "-what-comes-next";
        let parent: TraceParent = future.parse().unwrap();
        assert_eq!(parent.to_string(), EXAMPLE, "written back as version 00");
    }

    #[test]
    fn new_refuses_zero_ids() {
        assert!(TraceParent::new([0; 16], [1; 8], true).is_none());
        assert!(TraceParent::new([1; 16], [0; 8], true).is_none());
        let made = TraceParent::new([0xab; 16], [0xcd; 8], false).unwrap();
        assert_eq!(made.to_string().parse::<TraceParent>().unwrap(), made);
    }
}
