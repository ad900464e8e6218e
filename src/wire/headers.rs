//! AMQP header values in our own type, so handlers can read a request's headers without
//! depending on the AMQP client.

use amiquip::AmqpValue;

/// The value of one AMQP message header, as [`Request::header`](crate::Request::header) gives
/// it. Integers of every width become [`HeaderValue::Int`]; nested tables and arrays, which
/// RPC headers rarely carry, are shown as text.
///
/// ```
/// use fib_rpc::HeaderValue;
///
/// let value = HeaderValue::Int(1_700_000_000_000);
/// assert_eq!(value.as_int(), Some(1_700_000_000_000));
/// assert_eq!(HeaderValue::Text("eu-west".into()).as_str(), Some("eu-west"));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum HeaderValue {
    /// A string (AMQP long string).
    Text(String),
    /// Raw bytes (AMQP byte array).
    Bytes(Vec<u8>),
    /// An integer, of any width the wire carries (AMQP headers have no unsigned 64-bit type).
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A timestamp, in seconds since the Unix epoch.
    Timestamp(u64),
    /// No value (AMQP void).
    Void,
    /// A decimal, table or array, rendered as text.
    Other(String),
}

impl HeaderValue {
    /// The text of a [`HeaderValue::Text`], or of [`HeaderValue::Bytes`] that are UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            HeaderValue::Text(text) => Some(text),
            HeaderValue::Bytes(bytes) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }

    /// The value of an integer header that fits in an `i64`.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            HeaderValue::Int(value) => Some(*value),
            _ => None,
        }
    }

    /// Reads an AMQP value.
    pub(crate) fn from_amqp(value: &AmqpValue) -> Self {
        match value {
            AmqpValue::Boolean(b) => HeaderValue::Bool(*b),
            AmqpValue::ShortShortInt(v) => HeaderValue::Int(i64::from(*v)),
            AmqpValue::ShortShortUInt(v) => HeaderValue::Int(i64::from(*v)),
            AmqpValue::ShortInt(v) => HeaderValue::Int(i64::from(*v)),
            AmqpValue::ShortUInt(v) => HeaderValue::Int(i64::from(*v)),
            AmqpValue::LongInt(v) => HeaderValue::Int(i64::from(*v)),
            AmqpValue::LongUInt(v) => HeaderValue::Int(i64::from(*v)),
            AmqpValue::LongLongInt(v) => HeaderValue::Int(*v),
            AmqpValue::Float(v) => HeaderValue::Float(f64::from(*v)),
            AmqpValue::Double(v) => HeaderValue::Float(*v),
            AmqpValue::LongString(text) => HeaderValue::Text(text.clone()),
            AmqpValue::ByteArray(bytes) => HeaderValue::Bytes(bytes.clone()),
            AmqpValue::Timestamp(seconds) => HeaderValue::Timestamp(*seconds),
            AmqpValue::Void => HeaderValue::Void,
            other => HeaderValue::Other(format!("{other:?}")),
        }
    }

    /// Writes an AMQP value.
    pub(crate) fn to_amqp(&self) -> AmqpValue {
        match self {
            HeaderValue::Text(text) => AmqpValue::LongString(text.clone()),
            HeaderValue::Bytes(bytes) => AmqpValue::ByteArray(bytes.clone()),
            HeaderValue::Int(value) => AmqpValue::LongLongInt(*value),
            HeaderValue::Float(value) => AmqpValue::Double(*value),
            HeaderValue::Bool(value) => AmqpValue::Boolean(*value),
            HeaderValue::Timestamp(seconds) => AmqpValue::Timestamp(*seconds),
            HeaderValue::Void => AmqpValue::Void,
            HeaderValue::Other(text) => AmqpValue::LongString(text.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_a_round_trip() {
        for value in [
            HeaderValue::Text("x".into()),
            HeaderValue::Bytes(vec![0, 255]),
            HeaderValue::Int(-5),
            HeaderValue::Float(1.5),
            HeaderValue::Bool(true),
            HeaderValue::Timestamp(7),
            HeaderValue::Void,
        ] {
            assert_eq!(HeaderValue::from_amqp(&value.to_amqp()), value);
        }
        assert_eq!(
            HeaderValue::from_amqp(&AmqpValue::ShortInt(-3)).as_int(),
            Some(-3)
        );
    }
}
