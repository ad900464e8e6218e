//! `rabbitmqctl close_all_connections` under load: an operator (or a node shutting down)
//! closes every connection on the broker at once, the client's and the server's alike.
//!
//! It closes *every* connection on the broker, so any other test (or a developer's program)
//! using the broker meanwhile would lose its connection. Hence two locks:
//!
//! - `FIB_RPC_CLOSE_ALL=1` is the switch: without it the test does nothing but say so, even
//!   when run with `--ignored`. `scripts/test.sh` runs it only when the variable is set, and
//!   only CI (`.ci/run`, which has the broker to itself) sets it.
//! - `#[ignore]` keeps it out of ordinary runs, so that `scripts/test.sh` can run it last and
//!   alone (`--ignored --test-threads 1`).
//!
//! Even then it refuses to go ahead while the broker has connections that are not its own.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::load::{Load, LoadConfig, MARGIN};
use common::{amqp_url, eventually, unique_connection_name, TestQueue};
use fib_rpc::{ClientOptions, FibonacciHandler, FibonacciRpcClient, RpcServer, ServerOptions};

/// The reason the broker gives; callers see it in their `ConnectionLost` errors.
const REASON: &str = "fib-rpc fault test";

/// The broker's connections, one line each (name, then client properties, which hold the
/// connection name we gave).
fn connections() -> Vec<String> {
    let listed = Command::new("rabbitmqctl")
        .args([
            "-q",
            "list_connections",
            "--no-table-headers",
            "name",
            "client_properties",
        ])
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        listed.status.success(),
        "rabbitmqctl list_connections failed"
    );
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Connections whose name does not carry `tag`: someone else's.
fn foreign_connections(tag: &str) -> Vec<String> {
    connections()
        .into_iter()
        .filter(|line| !line.contains(tag))
        .collect()
}

/// The switch: only `FIB_RPC_CLOSE_ALL=1` lets this test cut every connection on the broker.
const SWITCH: &str = "FIB_RPC_CLOSE_ALL";

#[test]
#[ignore = "closes every connection on the broker: run alone with \
            `FIB_RPC_CLOSE_ALL=1 cargo test --test close_all -- --ignored --test-threads 1`"]
fn close_all_connections_under_load() {
    if std::env::var(SWITCH).as_deref() != Ok("1") {
        eprintln!(
            "close_all_connections_under_load: not run, {SWITCH} is not 1. It closes every \
             connection on the broker (yours too); set {SWITCH}=1 on a broker nobody else uses."
        );
        return;
    }
    let tag = unique_connection_name("close-all");
    // Other tests' connections may take a moment to go; a quiet broker twice in a row makes
    // it unlikely that another test is just between two connections.
    let mut quiet_in_a_row = 0;
    let quiet = eventually(Duration::from_secs(20), || {
        quiet_in_a_row = if connections().is_empty() {
            quiet_in_a_row + 1
        } else {
            0
        };
        quiet_in_a_row >= 2
    });
    assert!(
        quiet,
        "refusing to run `rabbitmqctl close_all_connections`: the broker still has other \
         connections after 20 s (is another test or program using it? this test must run \
         alone): {:#?}",
        connections()
    );

    let queue = TestQueue::new("close-all");
    let server = RpcServer::start(
        &amqp_url(),
        ServerOptions::default()
            .queue(queue.name.as_str())
            .workers(2)
            .heartbeat(2)
            .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(1))
            .stop_timeout(Duration::from_secs(10))
            .connection_name(format!("{tag} server")),
        FibonacciHandler::default().cache_bytes(0),
    )
    .expect("server starts");
    let client = Arc::new(
        FibonacciRpcClient::connect_with(
            &amqp_url(),
            ClientOptions::default()
                .queue(queue.name.as_str())
                .idempotent(false) // to see which calls the close catches in flight
                .heartbeat(2)
                .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(1))
                .connection_name(format!("{tag} client")),
        )
        .expect("client connects"),
    );
    let load = Load::start(&client, LoadConfig::default());
    load.warm_up(200, Duration::from_secs(10));

    // A last look: only our own two connections may be there.
    let foreign = foreign_connections(&tag);
    assert!(
        foreign.is_empty(),
        "refusing to run `rabbitmqctl close_all_connections`: connections that are not this \
         test's appeared: {foreign:#?}"
    );
    let closing = Instant::now();
    let closing_all = Command::new("rabbitmqctl")
        .args(["-q", "close_all_connections", REASON])
        .output()
        .expect("rabbitmqctl runs");
    let closed = Instant::now();
    assert!(
        closing_all.status.success(),
        "rabbitmqctl close_all_connections failed: {}",
        String::from_utf8_lossy(&closing_all.stderr)
    );
    let server_back = eventually(Duration::from_secs(5), || server.stats().reconnects >= 1);
    let server_back_at = Instant::now();
    load.wait_recovered(closed, Duration::from_secs(5));
    sleep(Duration::from_secs(1));
    let run = load.finish();
    let stats = client.rpc().stats();

    // The close struck when the first call learned of it; rabbitmqctl itself takes a while
    // to start and to return.
    let struck = run
        .failed()
        .iter()
        .map(|call| call.ended)
        .min()
        .unwrap_or(closing);
    run.report(
        "rabbitmqctl close_all_connections",
        struck,
        &stats,
        &[("server", format!("{:?}", server.stats()))],
    );
    eprintln!(
        "    rabbitmqctl ({}) took {} ms; the first call failed {} ms after it started; \
         server seen reconnected {} ms after that",
        String::from_utf8_lossy(&closing_all.stdout).trim(),
        (closed - closing).as_millis(),
        (struck - closing).as_millis(),
        server_back_at.saturating_duration_since(struck).as_millis()
    );

    run.assert_answers_right();
    run.assert_within_deadlines(MARGIN);
    run.assert_failures_only(&["ConnectionLost"]);
    let failed = run.failed();
    assert!(
        !failed.is_empty(),
        "calls were in flight; some must have failed"
    );
    assert!(failed.len() <= LoadConfig::default().callers, "{failed:#?}");
    assert!(
        failed.iter().any(|call| matches!(
            &call.outcome,
            common::load::Outcome::Failed(_, message) if message.contains(REASON)
        )),
        "no failure carries the broker's reason: {failed:#?}"
    );
    run.assert_recovered_within(struck, Duration::from_secs(5));
    run.assert_counted_by(&stats);
    assert!(stats.reconnects >= 1, "{stats:?}");
    assert!(server_back, "{:?}", server.stats());
    assert!(
        server_back_at - struck < Duration::from_secs(5),
        "server back after {:?}",
        server_back_at - struck
    );
    server.stop().unwrap();
}
