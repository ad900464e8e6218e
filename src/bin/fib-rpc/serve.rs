//! `fib-rpc serve`: the Fibonacci server until a signal, then a graceful drain.
//!
//! Three threads matter: the main thread waits for events; `fib-rpc-serve-wait` owns the
//! server and returns when it has stopped; `fib-rpc-signals` turns SIGINT/SIGTERM into events.
//!
//! A broker that cannot be reached at start-up is waited for (the library's lazy start, with
//! backoff), so `serve` can start before the broker at boot; the library then keeps it serving
//! through broker restarts. Credentials or a vhost the brokers refuse end it at once (exit 7):
//! waiting would not fix them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Receiver;
use fib_rpc::{Error, FibonacciHandler, QueueKind, RpcServer, ServerOptions, DEFAULT_STOP_TIMEOUT};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::args::{Global, ServeArgs};
use crate::exit::{Class, Failure};

/// How long a signalled server may take to answer what it has: the library's stop timeout.
const DRAIN_TIMEOUT: Duration = DEFAULT_STOP_TIMEOUT;

enum Event {
    Signal(i32),
    Stopped(fib_rpc::Result<()>),
}

pub fn run(global: &Global, args: ServeArgs) -> Result<(), Failure> {
    let mut options = ServerOptions::default()
        .queue(global.queue.as_str())
        .prefetch(args.prefetch)
        .stop_timeout(DRAIN_TIMEOUT)
        .heartbeat(global.heartbeat)
        .connection_name(format!("fib-rpc serve (pid {})", std::process::id()))
        .lazy_start(true)
        .publisher_confirms(args.confirms);
    if let Some(workers) = args.workers {
        options = options.workers(workers);
    }
    if args.durable_quorum {
        options = options.declare_as(QueueKind::DurableQuorum);
    }
    // Bound first, so a port taken ends serve before it connects to anything.
    let metrics_listener = args.metrics_addr.map(crate::metrics::bind).transpose()?;
    // Catch signals before the workers consume: from then on a SIGTERM must drain, not kill.
    // While still starting there is nothing to drain, so a signal ends the process at once
    // (anything a worker already received goes back to the queue).
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let signal_handle = signals.handle();
    let serving = Arc::new(AtomicBool::new(false));
    let (events, event_rx) = crossbeam_channel::unbounded();
    let signal_thread = {
        let serving = Arc::clone(&serving);
        let events = events.clone();
        spawn("fib-rpc-signals", move || {
            for signal in signals.forever() {
                if !serving.load(Ordering::SeqCst) {
                    crate::say(&format!(
                        "fib-rpc serve: {} while starting: exiting",
                        signal_name(signal)
                    ));
                    std::process::exit(128 + signal);
                }
                if events.send(Event::Signal(signal)).is_err() {
                    break;
                }
            }
        })?
    };
    let handler = FibonacciHandler::new(args.max_n).cache_bytes(args.cache_bytes);
    // Lazy: returns at once and waits for the broker in the background, logging why it waits.
    // A signal meanwhile ends the process (see the signal thread).
    let server = match RpcServer::start_failover(&global.urls, options, handler.clone()) {
        Ok(server) => server,
        Err(err) => return Err(stop_signals(signal_handle, signal_thread, err)),
    };
    // Metrics from now on, also while waiting for the broker (`rpc_server_connected 0`).
    let metrics = metrics_listener.map(|on| crate::metrics::start(on, &server, handler));
    let metrics = match metrics.transpose() {
        Ok(metrics) => metrics,
        Err(err) => return Err(stop_signals(signal_handle, signal_thread, Error::Io(err))),
    };
    let server = match wait_until_ready(server) {
        Ok(server) => server,
        Err(err) => return Err(stop_signals(signal_handle, signal_thread, err)),
    };
    serving.store(true, Ordering::SeqCst);
    let stop = server.stop_handle();
    crate::say(&format!(
        "fib-rpc serve: ready: consuming {:?} on {} with {} workers (prefetch {}, max n {}){}",
        server.queue(),
        server
            .broker()
            .unwrap_or_else(|| "(connection just lost)".to_owned()),
        server.workers(),
        args.prefetch,
        args.max_n,
        crate::metrics::ready_note(metrics.as_ref()),
    ));

    let wait_thread = spawn("fib-rpc-serve-wait", move || {
        let _ = events.send(Event::Stopped(server.wait()));
    })?;

    let (outcome, server_ended) = wait_for_end(&event_rx, &stop);
    signal_handle.close(); // ends `forever()`, so the signal thread can be joined
    let _ = signal_thread.join();
    if let Some(metrics) = metrics {
        metrics.stop(); // joins its threads
    }
    if server_ended {
        let _ = wait_thread.join();
    } // else the drain timed out: the process exits without it
    outcome
}

/// Waits for the server to stop, and stops it on the first signal. A second signal, or a
/// drain longer than [`DRAIN_TIMEOUT`], ends the process without waiting further: requests
/// not acknowledged go back to the queue for another server.
///
/// Also says whether the server's thread has ended (so it can be joined).
fn wait_for_end(
    events: &Receiver<Event>,
    stop: &fib_rpc::StopHandle,
) -> (Result<(), Failure>, bool) {
    let first_signal = match events.recv() {
        Ok(Event::Stopped(result)) => return (stopped_on_its_own(result), true),
        Ok(Event::Signal(signal)) => signal,
        // Cannot happen while the two threads hold their senders; fail rather than hang.
        Err(_) => {
            return (
                Err(Failure::new(Class::Failure, "serve: threads vanished")),
                true,
            )
        }
    };
    log::info!(
        "fib-rpc serve: {}: finishing in-flight requests, then exiting",
        signal_name(first_signal)
    );
    stop.stop();
    match events.recv_timeout(DRAIN_TIMEOUT) {
        Ok(Event::Stopped(Ok(()))) => {
            log::info!("fib-rpc serve: stopped");
            (Ok(()), true)
        }
        Ok(Event::Stopped(Err(err))) => (Err(Failure::from(err)), true),
        Ok(Event::Signal(signal)) => {
            // Conventional: 128 + the signal number.
            crate::say(&format!(
                "fib-rpc serve: {} again: exiting without finishing in-flight requests",
                signal_name(signal)
            ));
            std::process::exit(128 + signal);
        }
        Err(_) => {
            let message = format!(
                "serve: in-flight requests not finished within {} s of the signal; exiting \
                 (unanswered requests go back to the queue)",
                DRAIN_TIMEOUT.as_secs()
            );
            (Err(Failure::new(Class::Failure, message)), false)
        }
    }
}

fn stopped_on_its_own(result: fib_rpc::Result<()>) -> Result<(), Failure> {
    match result {
        Ok(()) => Err(Failure::new(
            Class::Failure,
            "serve: the server stopped unexpectedly",
        )),
        Err(err) => {
            let failure = Failure::from(err);
            Err(Failure::new(
                failure.class,
                format!("serve: {}", failure.message),
            ))
        }
    }
}

/// Waits until the server consumes. It ends instead only when the brokers refuse it (the
/// library gives up on nothing else), and then `wait` says why. `wait_ready` wakes at either,
/// so its bound only says how long one wait may be; a signal ends the process meanwhile.
fn wait_until_ready(server: RpcServer) -> Result<RpcServer, Error> {
    loop {
        match server.wait_ready(Duration::from_secs(3600)) {
            Ok(()) => return Ok(server),
            Err(Error::Timeout { .. }) => continue,
            Err(_) => {
                return Err(match server.wait() {
                    Err(err) => err,
                    Ok(()) => Error::Closed,
                })
            }
        }
    }
}

/// Stops the signal thread after a failed start and passes the failure on.
fn stop_signals(
    signals: signal_hook::iterator::Handle,
    thread: JoinHandle<()>,
    err: Error,
) -> Failure {
    signals.close();
    let _ = thread.join();
    err.into()
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(body)
}
