//! Handler panics as one log line instead of the default hook's report.
//!
//! A worker catches a panicking handler (`catch_unwind`), answers the request with an
//! `internal` error reply and logs one error line with the panic's message. Rust's panic hook
//! runs before that, though, and the default hook prints its own report on stderr (with a
//! full backtrace under `RUST_BACKTRACE`) for a panic that is already handled. The hook is
//! global to the process, so the library does not replace it on its own:
//! [`quiet_handler_panics`] is for programs that want it.

use std::cell::{Cell, RefCell};
use std::sync::Once;

thread_local! {
    /// Set while this thread runs a handler under the worker's `catch_unwind`.
    static IN_HANDLER: Cell<bool> = const { Cell::new(false) };
    /// Where the last quieted panic on this thread happened, for the worker's log line.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The prefix of worker threads' names (`fib-rpc-worker-N`).
const WORKER_THREAD: &str = "fib-rpc-worker-";

/// Keeps panics of [`Handler`](crate::Handler)s off stderr: the server already turns each
/// into an `internal` error reply and one error log line with the panic's message and
/// location (e.g. `handler panicked on request "42" (correlation_id "…"): boom at
/// src/x.rs:12:5`).
///
/// It installs a panic hook that, for a panic in a handler run by an [`RpcServer`]
/// worker thread (`fib-rpc-worker-N`), skips the hook installed before it, which by default
/// prints the panic and, under `RUST_BACKTRACE`, a backtrace, and only keeps the panic's
/// location for the worker's log line. Every other panic, on any other thread or outside a
/// handler, goes to the previous hook as before. A panic that a handler catches itself is
/// quieted too.
///
/// The panic hook is global, so the library never installs this on its own: call it once at
/// the start of a program, after installing any hook of your own (which it then chains to).
/// Calling it again does nothing.
///
/// ```
/// fib_rpc::quiet_handler_panics();
/// ```
///
/// [`RpcServer`]: crate::RpcServer
pub fn quiet_handler_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if in_worker_handler() {
                let location = info.location().map(ToString::to_string);
                LOCATION.with(|slot| *slot.borrow_mut() = location);
            } else {
                previous(info);
            }
        }));
    });
}

/// Whether this thread is a worker running a handler.
fn in_worker_handler() -> bool {
    IN_HANDLER.with(Cell::get)
        && std::thread::current()
            .name()
            .is_some_and(|name| name.starts_with(WORKER_THREAD))
}

/// Runs `body` (the worker's `catch_unwind` around the handler) marked as a handler, so the
/// hook of [`quiet_handler_panics`] knows a panic in it is caught and reported.
pub(super) fn in_handler<R>(body: impl FnOnce() -> R) -> R {
    struct Unmark;
    impl Drop for Unmark {
        fn drop(&mut self) {
            IN_HANDLER.with(|flag| flag.set(false));
        }
    }
    LOCATION.with(|slot| slot.borrow_mut().take());
    IN_HANDLER.with(|flag| flag.set(true));
    let _unmark = Unmark;
    body()
}

/// Where the handler's panic just caught on this thread happened, if the hook of
/// [`quiet_handler_panics`] saw it.
pub(super) fn take_location() -> Option<String> {
    LOCATION.with(|slot| slot.borrow_mut().take())
}
