//! The faults the library promises to survive, each under load against the real broker: a cut
//! or stalled connection (through a TCP proxy), a server process killed while another serves
//! the same queue, and a broker unreachable at start-up. For each, every call ends with the
//! right answer or a typed error by its deadline (plus [`MARGIN`]), only the error kinds the
//! fault explains occur, and new calls succeed within a few seconds without restarting
//! anything. Each test prints a `FAULT ...` summary line (run with `--nocapture` to see it).
//!
//! `rabbitmqctl close_all_connections` is in `tests/close_all.rs`: it must run alone.

mod common;

use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::load::{Load, LoadConfig, Run, MARGIN};
use common::proxy::TcpProxy;
use common::serve::Serve;
use common::{amqp_url, eventually, unique_connection_name, TestQueue};
use fib_rpc::fib;
use fib_rpc::{
    ClientOptions, Error, FibonacciHandler, FibonacciRpcClient, RpcServer, ServerOptions,
};

/// The tests measure recovery times, so they run one at a time: in parallel they would
/// compete for the CPU with each other's load and measure that instead.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Client options for the fault tests: quick reconnection and short heartbeats, so a fault
/// is noticed and repaired in well under the bounds checked.
fn client_options(queue: &TestQueue) -> ClientOptions {
    ClientOptions::default()
        .queue(queue.name.as_str())
        .heartbeat(2)
        .connect_timeout(Duration::from_secs(2))
        .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(1))
        .connection_name(unique_connection_name("faults-client"))
}

fn connect_client(url: &str, options: ClientOptions) -> Arc<FibonacciRpcClient> {
    Arc::new(FibonacciRpcClient::connect_with(url, options).expect("client connects"))
}

/// A Fibonacci server with two workers and no result cache (so large `n` keep a worker busy
/// every time), reconnecting quickly.
fn start_server(url: &str, queue: &TestQueue) -> RpcServer {
    RpcServer::start(
        url,
        ServerOptions::default()
            .queue(queue.name.as_str())
            .workers(2)
            .heartbeat(2)
            .connect_timeout(Duration::from_secs(2))
            .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(1))
            .stop_timeout(Duration::from_secs(10))
            .connection_name(unique_connection_name("faults-server")),
        FibonacciHandler::default().cache_bytes(0),
    )
    .expect("server starts")
}

fn server_stats<'a>(name: &'a str, server: &RpcServer) -> (&'a str, String) {
    (name, format!("{:?}", server.stats()))
}

/// A load that keeps the servers busy, so each holds unacknowledged requests at any moment:
/// big `n` every other call, more callers than workers, deadlines with room for queueing.
const BUSY_SERVERS: LoadConfig = LoadConfig {
    callers: 12,
    per_call: Duration::from_secs(10),
    pause: Duration::from_millis(2),
    big_every: 2,
};

/// Cuts the proxy while `server` is working on a request, so the fault certainly catches a
/// call in flight (it would otherwise be luck: requests take milliseconds). When the server
/// is the one behind the proxy, it is caught holding that request unacknowledged.
fn cut_while_serving(proxy: &TcpProxy, server: &RpcServer) -> Instant {
    let busy = eventually(Duration::from_secs(5), || {
        let stats = server.stats();
        stats.received > stats.replied
    });
    assert!(
        busy,
        "the server never had a request in hand: {:?}",
        server.stats()
    );
    let cut = Instant::now();
    proxy.cut();
    cut
}

/// Requests the servers received more than once: everything they received beyond one per
/// call the client made (each call is published once).
fn redelivered(client: &fib_rpc::ClientStats, servers: &[&RpcServer]) -> u64 {
    let received: u64 = servers.iter().map(|server| server.stats().received).sum();
    received.saturating_sub(client.calls)
}

/// Prints the summary (recovery measured from `since`) and how many calls were in flight when
/// the fault struck, at `at`.
fn report(
    run: &Run,
    fault: &str,
    (at, since): (Instant, Instant),
    client: &FibonacciRpcClient,
    servers: &[(&str, String)],
) {
    run.report(fault, since, &client.rpc().stats(), servers);
    let in_flight = run
        .records
        .iter()
        .filter(|call| call.started <= at && call.ended > at)
        .count();
    eprintln!("    calls in flight at the fault: {in_flight}");
    let failed = run.failed();
    if !failed.is_empty() {
        let after = |when: Instant| when.saturating_duration_since(at).as_millis();
        let last_start = failed.iter().map(|call| after(call.started)).max();
        let last_end = failed.iter().map(|call| after(call.ended)).max();
        eprintln!(
            "    failed calls started at most {} ms and ended at most {} ms after the fault",
            last_start.unwrap_or(0),
            last_end.unwrap_or(0)
        );
    }
}

/// A client whose connection (through the proxy) is cut mid-load, its calls idempotent or
/// not: the finished run, the client's counters and when the cut struck. The server is
/// stopped.
fn cut_client_under_load(purpose: &str, idempotent: bool) -> (Run, fib_rpc::ClientStats, Instant) {
    let queue = TestQueue::new(purpose);
    let server = start_server(&amqp_url(), &queue);
    let proxy = TcpProxy::to_broker();
    let client = connect_client(&proxy.url(), client_options(&queue).idempotent(idempotent));
    let load = Load::start(&client, LoadConfig::default());
    load.warm_up(200, Duration::from_secs(10));

    // While the server works on a request, its caller is certainly waiting for the reply.
    let cut = cut_while_serving(&proxy, &server);
    load.wait_recovered(cut, Duration::from_secs(5));
    sleep(Duration::from_millis(500));
    let run = load.finish();
    let stats = client.rpc().stats();
    report(
        &run,
        purpose,
        (cut, cut),
        &client,
        &[server_stats("server", &server)],
    );
    server.stop().unwrap();
    run.assert_answers_right();
    run.assert_within_deadlines(MARGIN);
    run.assert_recovered_within(cut, Duration::from_secs(3));
    run.assert_counted_by(&stats);
    assert_eq!(stats.reconnects, 1, "{stats:?}");
    (run, stats, cut)
}

/// The client's connection is cut mid-load, its calls not idempotent. Only the calls in
/// flight at the cut fail, at once and with `ConnectionLost`; the client reconnects by itself.
#[test]
fn client_connection_cut_under_load() {
    let _serial = serial();
    let (run, _, cut) = cut_client_under_load("faults-client-cut", false);
    run.assert_failures_only(&["ConnectionLost"]);
    // Those were the calls in flight at the cut (one per caller at most), told at once.
    let failed = run.failed();
    assert!(
        !failed.is_empty(),
        "a call was waiting for a reply at the cut"
    );
    assert!(failed.len() <= LoadConfig::default().callers, "{failed:#?}");
    for call in &failed {
        assert!(
            call.ended >= cut && call.ended - cut < Duration::from_secs(1),
            "not failed at once: {call:?}"
        );
    }
}

/// The same cut with idempotent calls (the Fibonacci client's default): the calls in flight
/// go again on the next connection, so no call fails, and none outlives its deadline.
#[test]
fn client_connection_cut_under_load_with_retries_fails_nothing() {
    let _serial = serial();
    let (run, stats, _) = cut_client_under_load("faults-client-cut-retried", true);
    run.assert_failures_only(&[]);
    assert!(
        stats.retries >= 1,
        "a call was in flight at the cut: {stats:?}"
    );
}

/// One of two servers on the queue loses its connection mid-load: the requests it held go back
/// to the queue and are answered (by either server), so no call fails. It reconnects and
/// serves again.
#[test]
fn server_connection_cut_under_load_loses_nothing() {
    let _serial = serial();
    let queue = TestQueue::new("faults-server-cut");
    let proxy = TcpProxy::to_broker();
    let proxied = start_server(&proxy.url(), &queue);
    let direct = start_server(&amqp_url(), &queue);
    let client = connect_client(&amqp_url(), client_options(&queue));
    let load = Load::start(&client, BUSY_SERVERS);
    load.warm_up(200, Duration::from_secs(10));

    let cut = cut_while_serving(&proxy, &proxied);
    assert!(
        eventually(Duration::from_secs(5), || proxied.stats().reconnects >= 1),
        "{:?}",
        proxied.stats()
    );
    let back_at = proxied.stats().received;
    // Serving again after reconnecting, next to the other server.
    let serving_again = eventually(Duration::from_secs(5), || {
        proxied.stats().received > back_at
    });
    load.wait_recovered(cut, Duration::from_secs(5));
    let run = load.finish();
    let stats = client.rpc().stats();
    report(
        &run,
        "server_connection_cut_under_load_loses_nothing",
        (cut, cut),
        &client,
        &[
            server_stats("proxied server", &proxied),
            server_stats("direct server", &direct),
        ],
    );
    let redelivered = redelivered(&stats, &[&proxied, &direct]);
    eprintln!("    requests redelivered: {redelivered}");

    assert!(run.failed().is_empty(), "lost calls: {:#?}", run.failed());
    run.assert_answers_right();
    run.assert_within_deadlines(MARGIN);
    run.assert_recovered_within(cut, Duration::from_secs(3));
    run.assert_counted_by(&stats);
    assert!(
        redelivered >= 1,
        "the cut server held no request: nothing was tested"
    );
    assert!(
        serving_again,
        "the proxied server did not serve again: {:?}",
        proxied.stats()
    );
    proxied.stop().unwrap();
    direct.stop().unwrap();
}

/// The only server loses its connection mid-load: its unacknowledged requests wait in the
/// queue until it is back, and every call is still answered within its deadline.
#[test]
fn server_connection_cut_without_a_second_server_loses_nothing() {
    let _serial = serial();
    let queue = TestQueue::new("faults-server-cut-alone");
    let proxy = TcpProxy::to_broker();
    let server = start_server(&proxy.url(), &queue);
    let client = connect_client(&amqp_url(), client_options(&queue));
    let load = Load::start(&client, BUSY_SERVERS);
    load.warm_up(200, Duration::from_secs(10));

    let cut = cut_while_serving(&proxy, &server);
    load.wait_recovered(cut, Duration::from_secs(5));
    sleep(Duration::from_millis(500));
    let run = load.finish();
    let stats = client.rpc().stats();
    report(
        &run,
        "server_connection_cut_without_a_second_server_loses_nothing",
        (cut, cut),
        &client,
        &[server_stats("server", &server)],
    );
    let redelivered = redelivered(&stats, &[&server]);
    eprintln!("    requests redelivered: {redelivered}");

    assert!(run.failed().is_empty(), "lost calls: {:#?}", run.failed());
    run.assert_answers_right();
    run.assert_within_deadlines(MARGIN);
    run.assert_recovered_within(cut, Duration::from_secs(5));
    run.assert_counted_by(&stats);
    assert!(
        redelivered >= 1,
        "the cut server held no request: nothing was tested"
    );
    assert_eq!(server.stats().reconnects, 1, "{:?}", server.stats());
    server.stop().unwrap();
}

/// The client's network path goes silent for 4 s (nothing closed). Calls end by their
/// deadlines (`Timeout`, or `ConnectionLost` once heartbeats notice, or `NotConnected` while
/// reconnecting); once the path is back, calls succeed again within a few seconds.
#[test]
fn stalled_client_path_under_load() {
    let _serial = serial();
    let queue = TestQueue::new("faults-stall");
    let server = start_server(&amqp_url(), &queue);
    let proxy = TcpProxy::to_broker();
    let client = connect_client(&proxy.url(), client_options(&queue).heartbeat(1));
    let config = LoadConfig {
        callers: 6,
        per_call: Duration::from_secs(2),
        ..LoadConfig::default()
    };
    let load = Load::start(&client, config);
    load.warm_up(200, Duration::from_secs(10));

    let stalled = Instant::now();
    proxy.stall();
    sleep(Duration::from_secs(4));
    let resumed = Instant::now();
    proxy.resume();
    load.wait_recovered(resumed, Duration::from_secs(6));
    sleep(Duration::from_millis(500));
    let run = load.finish();
    report(
        &run,
        "stalled_client_path_under_load",
        (stalled, resumed),
        &client,
        &[server_stats("server", &server)],
    );
    eprintln!("    stalled for {:?}", resumed - stalled);

    run.assert_answers_right();
    run.assert_within_deadlines(MARGIN);
    run.assert_failures_only(&["Timeout", "Unconfirmed", "ConnectionLost", "NotConnected"]);
    assert!(
        !run.failed().is_empty(),
        "a 4 s stall must fail some 2 s calls"
    );
    // Nothing failed before the stall.
    for call in run.failed() {
        assert!(call.ended > stalled, "failed before the stall: {call:?}");
    }
    run.assert_recovered_within(resumed, Duration::from_secs(5));
    run.assert_counted_by(&client.rpc().stats());
    server.stop().unwrap();
}

/// Two `fib-rpc serve` processes share the queue; one is killed with SIGKILL mid-load, while
/// it holds requests. They are redelivered to the survivor: no call fails, every answer is
/// right.
/// The survivor keeps serving and still stops cleanly on SIGTERM.
#[test]
fn server_killed_with_sigkill_while_a_second_serves() {
    let _serial = serial();
    let queue = TestQueue::new("faults-sigkill");
    let args = ["--workers", "2", "--prefetch", "4"];
    let mut doomed = Serve::spawn(&amqp_url(), &queue.name, &args);
    assert!(
        doomed.wait_ready(Duration::from_secs(30)).is_some(),
        "{:?}",
        doomed.stderr()
    );
    let mut survivor = Serve::spawn(&amqp_url(), &queue.name, &args);
    assert!(
        survivor.wait_ready(Duration::from_secs(30)).is_some(),
        "{:?}",
        survivor.stderr()
    );
    let client = connect_client(&amqp_url(), client_options(&queue));
    let load = Load::start(
        &client,
        LoadConfig {
            callers: 16,
            ..BUSY_SERVERS
        },
    );
    load.warm_up(300, Duration::from_secs(10));
    // Requests take milliseconds, so a kill at a random moment may find the doomed server
    // holding none. Frozen first (SIGSTOP), it keeps the requests the broker pushes to it
    // (its prefetch windows) unanswered: calls that wait far longer than the others are the
    // proof it holds them when it dies.
    doomed.signal("STOP");
    let stuck_for = Duration::from_millis(300);
    let holding = eventually(Duration::from_secs(3), || {
        load.waiting_longer_than(stuck_for) >= 1
    });
    let held = load.waiting_longer_than(stuck_for);
    assert!(holding, "no call waited on the frozen server");

    let killed = Instant::now();
    doomed.kill();
    load.wait_recovered(killed, Duration::from_secs(5));
    sleep(Duration::from_secs(1));
    let run = load.finish();
    report(
        &run,
        "server_killed_with_sigkill_while_a_second_serves",
        (killed, killed),
        &client,
        &[(
            "servers",
            "two fib-rpc serve processes (no in-process stats)".to_owned(),
        )],
    );
    eprintln!("    calls held by the frozen server when it was killed: {held}");

    assert!(run.failed().is_empty(), "lost calls: {:#?}", run.failed());
    run.assert_answers_right();
    run.assert_within_deadlines(MARGIN);
    run.assert_recovered_within(killed, Duration::from_secs(5));
    run.assert_counted_by(&client.rpc().stats());

    // The survivor alone serves, then drains and exits 0 on SIGTERM.
    for n in [10, 31_416, 99] {
        let answer = client.call_deadline(n, Instant::now() + Duration::from_secs(5));
        assert_eq!(answer.unwrap(), fib(n));
    }
    survivor.signal("TERM");
    assert_eq!(
        survivor.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{:?}",
        survivor.stderr()
    );
}

/// The broker cannot be reached when things start (a proxy that refuses every connection):
/// (a) an eager client fails fast with `Connect`; (b) a lazy client is created at once and its
/// calls fail with `NotConnected` (never sent) by their deadlines; (c) `fib-rpc serve` keeps
/// retrying instead of exiting. Once the broker is reachable, the lazy client's calls succeed
/// within a few seconds and `serve` reports ready and serves.
#[test]
fn broker_unreachable_at_start_up() {
    let _serial = serial();
    let queue = TestQueue::new("faults-unreachable");
    let proxy = TcpProxy::to_broker();
    proxy.refuse(true);
    // (c) first, so it has been refused for a while when the broker comes back.
    let mut serve = Serve::spawn(&proxy.url(), &queue.name, &["--workers", "1"]);
    // A server on the broker directly answers whatever gets through meanwhile (nothing should).
    let server = start_server(&amqp_url(), &queue);

    // (a)
    let options = ClientOptions::default().queue(queue.name.as_str());
    let bound = Duration::from_secs(10) + MARGIN; // the default connect timeout, plus margin
    let connecting = Instant::now();
    let eager = FibonacciRpcClient::connect_with(&proxy.url(), options);
    let took = connecting.elapsed();
    assert!(matches!(eager, Err(Error::Connect { .. })), "{eager:?}");
    assert!(took < bound, "{took:?}");
    eprintln!(
        "    eager connect failed after {} ms: {}",
        took.as_millis(),
        eager.unwrap_err()
    );

    // (b)
    let creating = Instant::now();
    let lazy = connect_client(&proxy.url(), client_options(&queue).lazy_connect(true));
    let created_in = creating.elapsed();
    assert!(created_in < Duration::from_millis(500), "{created_in:?}");
    assert!(!lazy.rpc().is_connected());
    let config = LoadConfig {
        callers: 4,
        per_call: Duration::from_secs(1),
        ..LoadConfig::default()
    };
    let load = Load::start(&lazy, config);
    sleep(Duration::from_millis(2500));
    let received_while_refused = server.stats().received;
    let serve_exit_while_refused = serve.exit_status();

    let lifted = Instant::now();
    proxy.refuse(false);
    load.wait_recovered(lifted, Duration::from_secs(5));
    sleep(Duration::from_millis(300));
    let run = load.finish();
    report(
        &run,
        "broker_unreachable_at_start_up",
        (lifted, lifted),
        &lazy,
        &[server_stats("direct server", &server)],
    );
    eprintln!("    lazy client created in {} ms", created_in.as_millis());

    run.assert_answers_right();
    run.assert_within_deadlines(MARGIN);
    // While refused: only NotConnected, and nothing reached a server.
    let refused: Vec<_> = run
        .records
        .iter()
        .filter(|call| call.ended < lifted)
        .collect();
    assert!(refused.len() >= config.callers, "{refused:#?}");
    for call in &refused {
        assert_eq!(call.failure(), Some("NotConnected"), "{call:?}");
    }
    assert_eq!(
        received_while_refused, 0,
        "a request was sent while not connected"
    );
    // Calls still waiting when the broker came back may also just miss their deadline.
    run.assert_failures_only(&["NotConnected", "Timeout"]);
    run.assert_recovered_within(lifted, Duration::from_secs(3));
    run.assert_counted_by(&lazy.rpc().stats());

    // (c)
    if let Some(status) = serve_exit_while_refused {
        panic!(
            "fib-rpc serve exited ({status}) while the broker was unreachable at start-up \
             instead of retrying: {:?}",
            serve.stderr()
        );
    }
    let Some(ready_at) = serve.wait_ready(Duration::from_secs(10)) else {
        panic!(
            "serve not ready 10 s after the broker came back: {:?}",
            serve.stderr()
        );
    };
    eprintln!(
        "    fib-rpc serve ready {} ms after the broker came back",
        ready_at.saturating_duration_since(lifted).as_millis()
    );
    server.stop().unwrap(); // from now on only `serve` answers
    for n in [7, 27_183] {
        let answer = lazy.call_deadline(n, Instant::now() + Duration::from_secs(5));
        assert_eq!(answer.unwrap(), fib(n));
    }
    serve.signal("TERM");
    assert_eq!(
        serve.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{:?}",
        serve.stderr()
    );
}
