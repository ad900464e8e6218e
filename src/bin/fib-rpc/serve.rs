//! `fib-rpc serve`: the Fibonacci server until a signal, then a graceful drain.
//!
//! Three threads matter: the main thread waits for events (and meanwhile logs the traffic and
//! pings systemd's watchdog); `fib-rpc-serve-wait` owns the server, says when it consumes and
//! returns when it has stopped; `fib-rpc-signals` turns SIGINT/SIGTERM into events.
//!
//! A broker that cannot be reached at start-up is waited for (the library's lazy start, with
//! backoff), so `serve` can start before the broker at boot; the library then keeps it serving
//! through broker restarts. Credentials or a vhost the brokers refuse end it at once (exit 7):
//! waiting would not fix them.
//!
//! Exit codes on a signal: SIGTERM is how a service manager stops a service, so every stop it
//! asks for is a success (0), whatever stage it comes in: waiting for the broker, the drain, a
//! second SIGTERM, a drain that overruns. SIGINT (Ctrl-C) exits 0 after a complete drain, and
//! the conventional 130 when it cuts the start or the drain short.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use fib_rpc::{
    Error, FibonacciHandler, QueueKind, RpcServer, ServerOptions, ServerStats, StatsHandle,
    StopHandle, DEFAULT_STOP_TIMEOUT,
};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::activity;
use crate::args::{Global, ServeArgs};
use crate::exit::{Class, Failure};
use crate::systemd::{self, Notifier};

/// How long a signalled server may take to answer what it has: the library's stop timeout.
const DRAIN_TIMEOUT: Duration = DEFAULT_STOP_TIMEOUT;

enum Event {
    Signal(i32),
    /// The server consumes, from the broker named.
    Ready(String),
    Stopped(fib_rpc::Result<()>),
}

/// Where `serve` is in its life.
enum Stage {
    /// Waiting for the broker: nothing to drain yet.
    Starting,
    Serving,
    /// Stopping after `signal`; gives up at `until`.
    Draining {
        signal: i32,
        until: Instant,
    },
}

/// How the main loop ended: the exit code or failure, and whether the server's thread has
/// ended (so it can be joined).
struct End {
    outcome: Result<u8, Failure>,
    server_ended: bool,
}

impl End {
    fn with(outcome: Result<u8, Failure>) -> End {
        End {
            outcome,
            server_ended: true,
        }
    }

    /// The process exits without waiting for the server: it was still starting, or its
    /// drain was cut short. Requests not acknowledged go back to the queue.
    fn early(signal: i32) -> End {
        End {
            outcome: Ok(cut_short(signal)),
            server_ended: false,
        }
    }
}

/// Serves until a signal and returns the exit code: 0, or 130 when SIGINT cut it short.
pub fn run(global: &Global, args: ServeArgs) -> Result<u8, Failure> {
    let started = Instant::now();
    // A handler's panic is answered with an `internal` error and logged in one line; the
    // default hook's report (and backtrace) would only repeat it.
    fib_rpc::quiet_handler_panics();
    let notifier = Notifier::from_env();
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
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let signal_handle = signals.handle();
    let (events, event_rx) = crossbeam_channel::unbounded();
    let signal_thread = {
        let events = events.clone();
        spawn("fib-rpc-signals", move || {
            for signal in signals.forever() {
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
    let brokers: Vec<String> = global.urls.iter().map(|u| fib_rpc::redact_url(u)).collect();
    systemd::notify(
        notifier.as_ref(),
        &format!(
            "STATUS={}",
            systemd::status_text(&format!("connecting to {}", brokers.join(" or ")))
        ),
    );
    let serving = Serving {
        queue: server.queue().to_owned(),
        workers: server.workers(),
        prefetch: args.prefetch,
        max_n: args.max_n,
        metrics_note: crate::metrics::ready_note(metrics.as_ref()),
        stats: server.stats_handle(),
        stop: server.stop_handle(),
        notifier,
        watchdog: systemd::watchdog_interval_from_env(),
        log_interval: args.log_interval,
    };
    let wait_thread = spawn("fib-rpc-serve-wait", move || {
        if wait_until_ready(&server) {
            let broker = server
                .broker()
                .unwrap_or_else(|| "(connection just lost)".to_owned());
            let _ = events.send(Event::Ready(broker));
        }
        let _ = events.send(Event::Stopped(server.wait()));
    })?;

    let mut served = false;
    let end = serving.wait_for_end(&event_rx, &wait_thread, &mut served);
    signal_handle.close(); // ends `forever()`, so the signal thread can be joined
    let _ = signal_thread.join();
    if let Some(metrics) = metrics {
        metrics.stop(); // joins its threads
    }
    if end.server_ended {
        let _ = wait_thread.join();
    } // else the process exits without it
    if served {
        log::info!(
            "{}",
            activity::summary_line(started.elapsed(), &serving.stats.stats())
        );
    }
    end.outcome
}

/// What the main loop needs to know and tell.
struct Serving {
    queue: String,
    workers: usize,
    prefetch: u16,
    max_n: u64,
    /// What the ready line adds about the metrics endpoint, if any.
    metrics_note: String,
    stats: StatsHandle,
    stop: StopHandle,
    notifier: Option<Notifier>,
    /// How often to ping systemd's watchdog, if it watches us.
    watchdog: Option<Duration>,
    /// How often to log the traffic, if at all.
    log_interval: Option<Duration>,
}

impl Serving {
    /// Waits for the server to stop, and stops it on the first signal. A second signal, or a
    /// drain longer than [`DRAIN_TIMEOUT`], ends the process without waiting further:
    /// requests not acknowledged go back to the queue for another server. A signal while
    /// still starting ends it at once: there is nothing to drain.
    ///
    /// Meanwhile it pings the watchdog while the server's thread lives, and logs the traffic
    /// of each interval that had any. Sets `served` once the server consumes.
    fn wait_for_end(
        &self,
        events: &Receiver<Event>,
        server_thread: &JoinHandle<()>,
        served: &mut bool,
    ) -> End {
        let mut stage = Stage::Starting;
        let mut next_ping = self.watchdog.map(|_| Instant::now());
        // When the interval began and the counters then; from readiness on.
        let mut interval: Option<(Instant, ServerStats)> = None;
        loop {
            let next_log = interval
                .as_ref()
                .zip(self.log_interval)
                .map(|((since, _), every)| *since + every);
            let until = match stage {
                Stage::Draining { until, .. } => Some(until),
                _ => None,
            };
            let wake = [next_ping, next_log, until].into_iter().flatten().min();
            let event = match wake {
                Some(wake) => events.recv_deadline(wake),
                None => events.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match event {
                Ok(Event::Ready(broker)) => {
                    self.on_ready(&broker);
                    *served = true;
                    interval = Some((Instant::now(), self.stats.stats()));
                    stage = Stage::Serving;
                }
                Ok(Event::Signal(signal)) => match stage {
                    Stage::Starting => {
                        log::info!("{} while starting: exiting", signal_name(signal));
                        self.notify("STOPPING=1");
                        return End::early(signal);
                    }
                    Stage::Serving => {
                        log::info!(
                            "{}: finishing in-flight requests, then exiting",
                            signal_name(signal)
                        );
                        self.notify("STOPPING=1\nSTATUS=finishing in-flight requests");
                        self.stop.stop();
                        stage = Stage::Draining {
                            signal,
                            until: Instant::now() + DRAIN_TIMEOUT,
                        };
                    }
                    Stage::Draining { .. } => {
                        log::warn!(
                            "{} again: exiting without finishing in-flight requests \
                             (unanswered requests go back to the queue)",
                            signal_name(signal)
                        );
                        return End::early(signal);
                    }
                },
                Ok(Event::Stopped(result)) => {
                    return End::with(match stage {
                        Stage::Draining { signal, .. } => match result {
                            Ok(()) => {
                                log::info!("stopped");
                                Ok(0)
                            }
                            // Asked to stop, and stopped: a failure on the way out (the broker
                            // closing at the same moment) leaves unacked requests to the queue.
                            Err(err) => {
                                log::warn!(
                                    "stopped, not cleanly: {} (unanswered requests go back to \
                                     the queue)",
                                    err.full_message()
                                );
                                Ok(cut_short(signal))
                            }
                        },
                        Stage::Starting | Stage::Serving => stopped_on_its_own(result),
                    });
                }
                Err(RecvTimeoutError::Timeout) => {}
                // Cannot happen while the two threads hold their senders; fail rather than hang.
                Err(RecvTimeoutError::Disconnected) => {
                    return End::with(Err(Failure::new(Class::Failure, "serve: threads vanished")));
                }
            }
            let now = Instant::now();
            if let Stage::Draining { signal, until } = stage {
                if now >= until {
                    log::warn!(
                        "in-flight requests not finished within {} s of the signal; exiting \
                         (unanswered requests go back to the queue)",
                        DRAIN_TIMEOUT.as_secs()
                    );
                    return End::early(signal);
                }
            }
            if let (Some(at), Some(every)) = (next_ping, self.watchdog) {
                if now >= at {
                    if !server_thread.is_finished() {
                        self.notify("WATCHDOG=1");
                    }
                    next_ping = Some(now + every);
                }
            }
            if let (Some((since, then)), Some(every)) = (&interval, self.log_interval) {
                if now >= *since + every {
                    let stats = self.stats.stats();
                    if let Some(line) = activity::interval_line(now - *since, &stats, then) {
                        log::info!("{line}");
                    }
                    interval = Some((now, stats));
                }
            }
        }
    }

    fn on_ready(&self, broker: &str) {
        log::info!(
            "ready: consuming {:?} on {broker} with {} workers (prefetch {}, max n {}){}",
            self.queue,
            self.workers,
            self.prefetch,
            self.max_n,
            self.metrics_note
        );
        self.notify(&systemd::ready_message(&self.queue, broker));
    }

    fn notify(&self, message: &str) {
        systemd::notify(self.notifier.as_ref(), message);
    }
}

/// The exit code when `signal` ends the process before a complete drain.
fn cut_short(signal: i32) -> u8 {
    match signal {
        SIGINT => 130,
        _ => 0,
    }
}

fn stopped_on_its_own(result: fib_rpc::Result<()>) -> Result<u8, Failure> {
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

/// Waits until the server consumes (true). It ends instead only when the brokers refuse it
/// (the library gives up on nothing else), and then `wait` says why. `wait_ready` wakes at
/// either, so its bound only says how long one wait may be.
fn wait_until_ready(server: &RpcServer) -> bool {
    loop {
        match server.wait_ready(Duration::from_secs(3600)) {
            Ok(()) => return true,
            Err(Error::Timeout { .. }) => continue,
            Err(_) => return false,
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
