//! `quiet_handler_panics`: a handler's panic, caught by the worker, skips the panic hooks
//! installed before it (no report on stderr, no backtrace) and is logged as one line with its
//! location; a panic anywhere else still reaches them.
//!
//! The panic hook and the logger are global to the process, so this file is its own test
//! binary and installs both once.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use common::{amqp_url, TestQueue};
use fib_rpc::{ClientOptions, Error, ErrorCode, Request, RpcClient, RpcServer, ServerOptions};

/// Panics the counting hook saw: the "previous hook" in front of which ours is installed.
static SEEN_BY_PREVIOUS_HOOK: AtomicUsize = AtomicUsize::new(0);

/// Error lines logged by the library.
static ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct ErrorLines;

impl log::Log for ErrorLines {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Error
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            ERRORS.lock().unwrap().push(record.args().to_string());
        }
    }

    fn flush(&self) {}
}

/// A counting hook first, then the library's in front of it; and the logger.
fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Counts, then reports as usual, so a failing assertion still says why.
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            SEEN_BY_PREVIOUS_HOOK.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
        fib_rpc::quiet_handler_panics();
        fib_rpc::quiet_handler_panics(); // a second call changes nothing
        log::set_logger(&ErrorLines).unwrap();
        log::set_max_level(log::LevelFilter::Error);
    });
}

#[test]
fn a_handler_panic_is_one_log_line_and_an_internal_reply() {
    install();
    let queue = TestQueue::new("quiet-panic");
    let server = RpcServer::start(
        &amqp_url(),
        ServerOptions::default().queue(&queue.name).workers(1),
        |req: &Request| -> Result<Vec<u8>, fib_rpc::RemoteError> {
            if req.body() == b"42" {
                panic!("boom on {}", String::from_utf8_lossy(req.body()));
            }
            Ok(req.body().to_vec())
        },
    )
    .unwrap();
    let client =
        RpcClient::connect_with(&amqp_url(), ClientOptions::default().queue(&queue.name)).unwrap();
    let before = SEEN_BY_PREVIOUS_HOOK.load(Ordering::SeqCst);

    match client.call(b"42") {
        Err(Error::Remote(refusal)) => {
            assert_eq!(refusal.code, ErrorCode::Internal);
            assert!(
                refusal.message.contains("boom on 42"),
                "{}",
                refusal.message
            );
        }
        other => panic!("expected an internal error reply, got {other:?}"),
    }
    assert_eq!(client.call(b"7").unwrap(), b"7", "the worker still serves");
    assert_eq!(
        SEEN_BY_PREVIOUS_HOOK.load(Ordering::SeqCst),
        before,
        "the previous hook saw the handler's panic"
    );
    let errors = ERRORS.lock().unwrap().clone();
    let line = errors
        .iter()
        .find(|line| line.contains("handler panicked"))
        .expect("an error line for the panic");
    assert!(
        line.starts_with("handler panicked on request \"42\" (correlation_id \""),
        "{line}"
    );
    assert!(
        line.contains("): boom on 42 at tests/handler_panics.rs:"),
        "{line}"
    );
    drop(client);
    server.stop().unwrap();
}

#[test]
fn a_panic_on_any_other_thread_reaches_the_previous_hook() {
    install();
    let before = SEEN_BY_PREVIOUS_HOOK.load(Ordering::SeqCst);
    let outcome = std::thread::Builder::new()
        .name("not-a-worker".into())
        .spawn(|| panic!("elsewhere"))
        .unwrap()
        .join();
    assert!(outcome.is_err());
    // Named like a worker, but not running a handler: a bug, not a handled panic.
    let outcome = std::thread::Builder::new()
        .name("fib-rpc-worker-99".into())
        .spawn(|| panic!("outside a handler"))
        .unwrap()
        .join();
    assert!(outcome.is_err());
    assert!(SEEN_BY_PREVIOUS_HOOK.load(Ordering::SeqCst) >= before + 2);
}
