//! Replies on the wire: the properties a server sets, and what a client makes of a reply.

use amiquip::{AmqpProperties, AmqpValue, FieldTable};

use super::{ErrorCode, RemoteError, ERROR_HEADER};
use crate::error::Error;

/// The properties of a reply: the request's `correlation_id`, and the [`ERROR_HEADER`] for
/// an error reply.
pub(crate) fn properties(
    correlation_id: Option<String>,
    error: Option<&ErrorCode>,
) -> AmqpProperties {
    let mut properties = AmqpProperties::default();
    if let Some(id) = correlation_id {
        properties = properties.with_correlation_id(id);
    }
    if let Some(code) = error {
        let mut headers = FieldTable::default();
        headers.insert(
            ERROR_HEADER.into(),
            AmqpValue::LongString(code.as_str().into()),
        );
        properties = properties.with_headers(headers);
    }
    properties
}

/// Turns a reply into the call's result: an error reply (with [`ERROR_HEADER`]) becomes
/// [`Error::Remote`], anything else is the answer. Replies come from whatever is on the other
/// end of the queue, so nothing here may panic on odd input.
pub(crate) fn decode(headers: Option<&FieldTable>, body: Vec<u8>) -> Result<Vec<u8>, Error> {
    let Some(code) = headers.and_then(|headers| headers.get(ERROR_HEADER)) else {
        return Ok(body);
    };
    let code = match code {
        AmqpValue::LongString(text) => ErrorCode::parse(text),
        AmqpValue::ByteArray(bytes) => ErrorCode::parse(&String::from_utf8_lossy(bytes)),
        other => ErrorCode::Other(format!("{other:?}")),
    };
    Err(Error::Remote(RemoteError::new(
        code,
        String::from_utf8_lossy(&body),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_decode_as_they_were_encoded() {
        let ok = properties(Some("id".into()), None);
        assert_eq!(ok.correlation_id().as_deref(), Some("id"));
        assert_eq!(
            decode(ok.headers().as_ref(), b"55".to_vec()).unwrap(),
            b"55"
        );
        let refused = properties(None, Some(&ErrorCode::OutOfRange));
        match decode(refused.headers().as_ref(), b"too big".to_vec()) {
            Err(Error::Remote(remote)) => {
                assert_eq!(remote, RemoteError::out_of_range("too big"));
            }
            other => panic!("{other:?}"),
        }
    }
}
