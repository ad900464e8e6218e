//! No server: a queue nobody declared, a queue nobody consumes, and telling them apart
//! (`require_server`, `NoServerReason`, `Timeout::consumers`, `queue_status`). Against the
//! real broker, each test on its own queue.

mod common;

use std::time::{Duration, Instant};

use common::{
    amqp_url, broker_close_connection, eventually, fib_server, unique_connection_name, TestQueue,
};
use fib_rpc::{CallOptions, ClientOptions, Error, FibonacciRpcClient, NoServerReason};

/// How long a probe's positive answer stands (the library's `PROBE_TTL`).
const TTL: Duration = Duration::from_secs(1);

/// How late past its deadline a call may return (scheduling noise, a loaded test machine).
const LATE: Duration = Duration::from_millis(50);

fn client(queue: &str, require_server: bool) -> FibonacciRpcClient {
    FibonacciRpcClient::connect_with(
        &amqp_url(),
        ClientOptions::default()
            .queue(queue)
            .require_server(require_server),
    )
    .expect("client connects")
}

fn is_no_server(err: &Error, want: NoServerReason) -> bool {
    matches!(err, Error::NoServer { reason, .. } if *reason == want)
}

#[test]
fn with_require_server_a_queue_nobody_consumes_fails_at_once_unsent() {
    let queue = TestQueue::new("no-consumer");
    queue.declare_classic();
    let client = client(&queue.name, true);
    for _ in 0..3 {
        let started = Instant::now();
        let err = client.call(30).unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(500), "{err:?}");
        assert!(is_no_server(&err, NoServerReason::NoConsumer), "{err:?}");
        assert!(err.request_unsent() && err.is_transient(), "{err:?}");
        let shown = err.to_string();
        assert!(
            shown.contains("nobody consumes") && shown.contains(&queue.name),
            "{shown}"
        );
    }
    assert_eq!(queue.message_count(), 0, "nothing was published");
    assert_eq!(client.rpc().stats().no_server, 3);
    // A call may say it would rather wait.
    let err = client
        .rpc()
        .call_with(
            b"30",
            CallOptions::new()
                .timeout(Duration::from_millis(300))
                .require_server(false),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                consumers: Some(0),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn without_it_the_call_times_out_and_says_nobody_was_consuming() {
    let queue = TestQueue::new("no-consumer-wait");
    queue.declare_classic();
    let client = client(&queue.name, false);
    let started = Instant::now();
    let err = client
        .call_deadline(30, Instant::now() + Duration::from_millis(400))
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(400 + 300),
        "{err:?}"
    );
    assert!(
        matches!(
            err,
            Error::Timeout {
                consumers: Some(0),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .ends_with("; no server was consuming the queue"),
        "{err}"
    );
    // The same, asked for a single call.
    let err = client
        .rpc()
        .call_with(
            b"30",
            CallOptions::new()
                .timeout(Duration::from_secs(5))
                .require_server(true),
        )
        .unwrap_err();
    assert!(is_no_server(&err, NoServerReason::NoConsumer), "{err:?}");
}

/// A call that times out returns by its deadline: it never waits for a probe after it. A call
/// still waiting shortly before its deadline starts one, so it can still tell that nobody was
/// consuming.
#[test]
fn a_timeout_returns_by_its_deadline_and_still_says_nobody_was_consuming() {
    let queue = TestQueue::new("timeout-on-time");
    queue.declare_classic();
    // A fresh client: no probe thread yet, no answer cached.
    let first = client(&queue.name, false);
    for _ in 0..3 {
        let deadline = Instant::now() + Duration::from_millis(300);
        let err = first.call_deadline(30, deadline).unwrap_err();
        let returned = Instant::now();
        assert!(returned < deadline + LATE, "{:?} late", returned - deadline);
        assert!(
            matches!(
                err,
                Error::Timeout {
                    consumers: Some(0),
                    ..
                }
            ),
            "{err:?}"
        );
    }
    // A short call does not overrun either (the count may be known or not).
    for _ in 0..3 {
        let fresh = client(&queue.name, false);
        let deadline = Instant::now() + Duration::from_millis(100);
        let err = fresh.call_deadline(30, deadline).unwrap_err();
        let returned = Instant::now();
        assert!(returned < deadline + LATE, "{:?} late", returned - deadline);
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    }
}

/// A relay: the handler passes its caller's deadline on to a call of its own (to a queue
/// nobody consumes), and its caller still gets an answer in time.
#[test]
fn a_relayed_deadline_is_kept() {
    let queue = TestQueue::new("relay-inner");
    queue.declare_classic();
    let client = client(&queue.name, false);
    for timeout_ms in [20u64, 150, 400, 700] {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let err = client.rpc().call_deadline(b"30", deadline).unwrap_err();
        let returned = Instant::now();
        assert!(
            returned < deadline + LATE,
            "{timeout_ms} ms: {:?} late",
            returned - deadline
        );
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    }
}

/// "No server" is not remembered for a second: a server that starts after a call was refused
/// is seen within a tenth of a second or so.
#[test]
fn a_server_that_starts_after_no_consumer_was_seen_is_used_at_once() {
    let queue = TestQueue::new("no-consumer-then-server");
    queue.declare_classic();
    let client = client(&queue.name, true);
    let err = client.call(5).unwrap_err();
    assert!(is_no_server(&err, NoServerReason::NoConsumer), "{err:?}");
    assert_a_new_server_is_used_at_once(&client, &queue.name);
}

/// The same after a reconnection, as after a broker restart: the client reconnects (and
/// probes, seeing no consumer) before the server consumes again.
#[test]
fn after_a_reconnect_without_a_server_one_that_starts_is_used_at_once() {
    let queue = TestQueue::new("reconnect-then-server");
    queue.declare_classic();
    let (client, name) = named_client(&queue.name, "reconnect-then-server");
    cut_and_wait_for_reconnect(&client, &name);
    let err = client.call(5).unwrap_err();
    assert!(is_no_server(&err, NoServerReason::NoConsumer), "{err:?}");
    assert_a_new_server_is_used_at_once(&client, &queue.name);
}

/// Starts a server on `queue` and checks that `client`, which has just been told nobody
/// consumes it, uses it within 300 ms: calls keep failing (and probing) until it is seen.
fn assert_a_new_server_is_used_at_once(client: &FibonacciRpcClient, queue: &str) {
    let server = fib_server(queue);
    let started = Instant::now();
    assert!(eventually(Duration::from_secs(3), || client
        .call(5)
        .is_ok()));
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    server.stop().unwrap();
}

#[test]
fn a_missing_queue_is_no_queue_either_way() {
    let queue = TestQueue::new("absent-probe"); // never declared
    for require_server in [true, false] {
        let client = client(&queue.name, require_server);
        let started = Instant::now();
        let err = client.call(5).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1), "{err:?}");
        assert!(is_no_server(&err, NoServerReason::NoQueue), "{err:?}");
        assert!(err.to_string().contains("has no queue named"), "{err}");
        // The probe's side channel was closed by the 404; the next probe opens another.
        let err = client
            .rpc()
            .queue_status(Duration::from_secs(5))
            .unwrap_err();
        assert!(is_no_server(&err, NoServerReason::NoQueue), "{err:?}");
        let err = client
            .rpc()
            .queue_status(Duration::from_secs(5))
            .unwrap_err();
        assert!(is_no_server(&err, NoServerReason::NoQueue), "{err:?}");
        // And the client's own channel was never touched.
        assert!(client.rpc().is_connected());
    }
}

#[test]
fn queue_status_in_all_three_states() {
    let queue = TestQueue::new("status");
    let client = client(&queue.name, false);
    let status = || client.rpc().queue_status(Duration::from_secs(5));
    assert!(
        matches!(
            status(),
            Err(Error::NoServer {
                reason: NoServerReason::NoQueue,
                ..
            })
        ),
        "{:?}",
        status()
    );

    queue.declare_classic();
    let seen = status().unwrap();
    assert_eq!((seen.consumers, seen.messages), (0, 0));
    // A request waiting in the queue is counted.
    let pending = client
        .send(7, Instant::now() + Duration::from_secs(30))
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || status()
        .is_ok_and(|seen| seen.messages == 1)));

    let server = fib_server(&queue.name);
    assert_eq!(pending.wait().unwrap(), 13u32.into());
    let seen = status().unwrap();
    assert_eq!(
        (seen.consumers, seen.messages),
        (1, 0),
        "one server (its two workers share one consumer)"
    );
    server.stop().unwrap();
    assert_eq!(status().unwrap().consumers, 0);
}

/// A healthy queue costs no probe per call: replies prove a server. So a server that stops
/// is noticed only once neither a reply nor a probe is younger than the TTL, and then at once.
#[test]
fn a_healthy_queue_is_not_probed_per_call_and_a_stop_is_noticed_within_the_ttl() {
    let queue = TestQueue::new("stop-noticed");
    let server = fib_server(&queue.name);
    let client = client(&queue.name, true);
    for n in 0..200u64 {
        client.call(n % 50).expect("served");
    }
    server.stop().unwrap();
    let stopped = Instant::now();
    // The last reply is younger than the TTL: this call is sent without a probe, and waits.
    let err = client
        .call_deadline(5, Instant::now() + Duration::from_millis(200))
        .unwrap_err();
    assert!(
        stopped.elapsed() < TTL,
        "the test itself was too slow: {:?}",
        stopped.elapsed()
    );
    assert!(
        matches!(
            err,
            Error::Timeout {
                consumers: Some(0),
                ..
            }
        ),
        "{err:?}"
    );
    // That timeout's probe saw no consumer: from now on calls fail at once.
    let started = Instant::now();
    let err = client.call(5).unwrap_err();
    assert!(is_no_server(&err, NoServerReason::NoConsumer), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(100));

    // And a server that comes back is seen at once: "nobody" is not remembered for long.
    let server = fib_server(&queue.name);
    let back = Instant::now();
    assert!(eventually(TTL * 3, || client.call(6).is_ok()));
    assert!(
        back.elapsed() < Duration::from_millis(300),
        "{:?}",
        back.elapsed()
    );
    server.stop().unwrap();
}

#[test]
fn without_a_timeout_a_stopped_server_is_noticed_by_the_next_call_after_the_ttl() {
    let queue = TestQueue::new("stop-ttl");
    let server = fib_server(&queue.name);
    let client = client(&queue.name, true);
    client.call(10).expect("served");
    server.stop().unwrap();
    std::thread::sleep(TTL + Duration::from_millis(100));
    let started = Instant::now();
    let err = client.call(10).unwrap_err();
    assert!(is_no_server(&err, NoServerReason::NoConsumer), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn probes_use_the_new_connection_after_a_reconnect() {
    let queue = TestQueue::new("probe-reconnect");
    queue.declare_classic();
    let (client, name) = named_client(&queue.name, "probe-reconnect");
    let rpc = client.rpc();
    assert_eq!(
        rpc.queue_status(Duration::from_secs(5)).unwrap().consumers,
        0
    );
    cut_and_wait_for_reconnect(&client, &name);
    // The side channel of the old connection is gone; the probe opens one on the new one.
    assert_eq!(
        rpc.queue_status(Duration::from_secs(5)).unwrap().consumers,
        0
    );
    let server = fib_server(&queue.name);
    assert_eq!(
        rpc.queue_status(Duration::from_secs(5)).unwrap().consumers,
        1
    );
    assert!(eventually(TTL * 3, || client.call(12).is_ok()));
    server.stop().unwrap();
}

#[test]
fn many_callers_share_probes_and_all_fail_fast() {
    let queue = TestQueue::new("probe-many");
    queue.declare_classic();
    let client = client(&queue.name, true);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..16 {
            scope.spawn(|| {
                for _ in 0..20 {
                    let err = client.call(3).unwrap_err();
                    assert!(is_no_server(&err, NoServerReason::NoConsumer), "{err:?}");
                }
            });
        }
    });
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(queue.message_count(), 0);
}

#[test]
fn a_closed_client_says_closed() {
    let queue = TestQueue::new("probe-closed");
    queue.declare_classic();
    let client = client(&queue.name, true);
    client.rpc().queue_status(Duration::from_secs(5)).unwrap();
    client.close();
    assert!(matches!(
        client.rpc().queue_status(Duration::from_secs(1)),
        Err(Error::Closed)
    ));
}

/// A client that requires a server, with a connection name the broker can close and a quick
/// reconnection.
fn named_client(queue: &str, purpose: &str) -> (FibonacciRpcClient, String) {
    let name = unique_connection_name(purpose);
    let client = FibonacciRpcClient::connect_with(
        &amqp_url(),
        ClientOptions::default()
            .queue(queue)
            .require_server(true)
            .connection_name(name.as_str())
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(200)),
    )
    .unwrap();
    (client, name)
}

/// Has the broker close `client`'s connection `name`, and waits until it is connected again.
fn cut_and_wait_for_reconnect(client: &FibonacciRpcClient, name: &str) {
    let rpc = client.rpc();
    broker_close_connection(name);
    assert!(eventually(Duration::from_secs(10), || rpc
        .stats()
        .reconnects
        >= 1
        && rpc.is_connected()));
}
