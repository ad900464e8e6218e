//! Trace context end to end: a caller's W3C `traceparent` travels with the request, the
//! handler reads it, and the server's log line about an error reply carries it.

mod common;

use std::sync::{Mutex, OnceLock};

use common::{amqp_url, TestQueue};
use fib_rpc::{
    CallOptions, ClientOptions, Error, ErrorCode, RemoteError, Request, RpcClient, RpcServer,
    ServerOptions, TraceParent,
};

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Keeps every log line of this test binary, so a test can look for the server's.
struct Captured(Mutex<Vec<String>>);

impl log::Log for Captured {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("fib_rpc")
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}: {}", record.level(), record.target(), record.args());
            self.0.lock().unwrap().push(line);
        }
    }

    fn flush(&self) {}
}

fn captured() -> &'static Captured {
    static LOGGER: OnceLock<&'static Captured> = OnceLock::new();
    LOGGER.get_or_init(|| {
        let logger: &'static Captured = Box::leak(Box::new(Captured(Mutex::new(Vec::new()))));
        log::set_logger(logger).expect("the only logger of this test binary");
        log::set_max_level(log::LevelFilter::Debug);
        logger
    })
}

/// Answers with the request's traceparent (or "none"); refuses the body "bad".
fn tracing_server(queue: &str) -> RpcServer {
    RpcServer::start(
        &amqp_url(),
        ServerOptions::default().queue(queue),
        |request: &Request| -> Result<Vec<u8>, RemoteError> {
            if request.body() == b"bad" {
                return Err(RemoteError::new(ErrorCode::BadRequest, "not a number"));
            }
            Ok(request
                .traceparent()
                .map_or_else(|| "none".to_owned(), |parent| parent.to_string())
                .into_bytes())
        },
    )
    .expect("server starts")
}

#[test]
fn a_calls_traceparent_reaches_the_handler_and_the_error_log() {
    let logs = captured();
    let queue = TestQueue::new("trace");
    let server = tracing_server(&queue.name);
    let client = RpcClient::connect_with(
        &amqp_url(),
        ClientOptions::default().queue(queue.name.as_str()),
    )
    .unwrap();
    let parent: TraceParent = PARENT.parse().unwrap();

    let reply = client
        .call_with(b"1", CallOptions::new().traceparent(parent))
        .unwrap();
    assert_eq!(String::from_utf8(reply).unwrap(), PARENT);
    let reply = client.call_with(b"1", CallOptions::new()).unwrap();
    assert_eq!(reply, b"none", "no traceparent unless the caller gives one");

    let err = client
        .call_with(b"bad", CallOptions::new().traceparent(parent))
        .unwrap_err();
    assert!(matches!(err, Error::Remote(_)), "{err:?}");
    let lines = logs.0.lock().unwrap().clone();
    let line = lines
        .iter()
        .find(|line| line.contains("error reply bad_request") && line.contains(PARENT))
        .unwrap_or_else(|| panic!("no error reply line with the traceparent in {lines:#?}"));
    assert!(line.starts_with("DEBUG fib_rpc::server"), "{line}");
    assert!(line.contains("correlation_id"), "{line}");
    assert!(line.contains("not a number"), "{line}");

    client.close();
    server.stop().unwrap();
}

#[test]
fn a_malformed_traceparent_is_refused_before_anything_is_sent() {
    let err = "00-xyz".parse::<TraceParent>().unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(err.to_string().contains("traceparent"), "{err}");
}
