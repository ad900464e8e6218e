//! Connections against the real broker: connect errors, cut sockets and connections the broker
//! closes (pending calls fail at once), reconnecting clients and servers, silent (stalled)
//! brokers, calls while not connected, and failover to the next broker.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::proxy::TcpProxy;
use common::{amqp_url, eventually, fib_client, fib_server, TestQueue};
use fib_rpc::{
    BrokerErrorKind, ClientOptions, Error, FibonacciHandler, FibonacciRpcClient, RpcServer,
    ServerOptions,
};
use num_bigint::BigUint;

#[test]
fn unreachable_broker_is_a_connect_error() {
    let started = Instant::now();
    let err = FibonacciRpcClient::connect("amqp://guest:secret@127.0.0.1:1/%2f").unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(!err.full_message().contains("secret"));
    let err = RpcServer::start(
        "amqp://guest:secret@127.0.0.1:1/%2f",
        ServerOptions::default(),
        fib_rpc::FibonacciHandler::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn wrong_credentials_are_a_connect_error() {
    let mut url = url::Url::parse(&amqp_url()).unwrap();
    url.set_password(Some("definitely-wrong")).unwrap();
    let err = FibonacciRpcClient::connect(url.as_str()).unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(!err.full_message().contains("definitely-wrong"), "{err}");
}

/// A queue with no consumer keeps calls pending; cutting the client's TCP connection must
/// fail them at once (outcome unknown), not at their 30 s deadline, when they are not
/// idempotent. The client then reconnects by itself, and calls work again once a server
/// shows up.
#[test]
fn socket_cut_fails_pending_calls_at_once_then_the_client_reconnects() {
    let queue = TestQueue::new("cut");
    queue.declare_classic();
    let proxy = TcpProxy::to_broker();
    let client = FibonacciRpcClient::connect_with(
        &proxy.url(),
        ClientOptions::default()
            .queue(&queue.name)
            .idempotent(false)
            .timeout(Duration::from_secs(30)),
    )
    .unwrap();
    let waiting = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let calls: Vec<_> = (0..8)
            .map(|n| {
                let (client, waiting) = (&client, &waiting);
                scope.spawn(move || {
                    waiting.fetch_add(1, Ordering::SeqCst);
                    let started = Instant::now();
                    (client.call(n), started.elapsed())
                })
            })
            .collect();
        assert!(eventually(Duration::from_secs(5), || waiting
            .load(Ordering::SeqCst)
            == 8));
        std::thread::sleep(Duration::from_millis(300)); // let them publish
        proxy.cut();
        for call in calls {
            let (result, waited) = call.join().unwrap();
            assert!(
                matches!(result, Err(Error::ConnectionLost { .. })),
                "{result:?}"
            );
            assert!(waited < Duration::from_secs(5), "{waited:?}");
        }
    });
    let cut = Instant::now();
    let server = fib_server(&queue.name);
    assert!(eventually(Duration::from_secs(5), || client
        .rpc()
        .is_connected()));
    assert_eq!(client.call(10).unwrap(), BigUint::from(55u32));
    eprintln!("client back {:?} after the cut", cut.elapsed());
    let stats = client.rpc().stats();
    assert_eq!(
        (stats.connection_lost, stats.reconnects),
        (8, 1),
        "{stats:?}"
    );
    server.stop().unwrap();
}

/// The broker itself closes the client's connection (as an operator's `rabbitmqctl
/// close_connection` would): pending calls that are not idempotent fail at once with the
/// broker's reason.
#[test]
fn broker_closing_the_connection_fails_pending_calls_at_once() {
    let queue = TestQueue::new("broker-close");
    queue.declare_classic();
    let name = common::unique_connection_name("broker-close");
    let client = FibonacciRpcClient::connect_with(
        &amqp_url(),
        ClientOptions::default()
            .queue(&queue.name)
            .idempotent(false)
            .connection_name(&name),
    )
    .unwrap();
    std::thread::scope(|scope| {
        let call = scope.spawn(|| {
            let started = Instant::now();
            (client.call(7), started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(200));
        common::broker_close_connection(&name); // rabbitmqctl itself may take seconds
        let closed = Instant::now();
        let (result, _) = call.join().unwrap();
        match result {
            Err(Error::ConnectionLost { cause: Some(cause) }) => {
                assert!(
                    cause.to_string().contains("closed by fib-rpc test"),
                    "{cause}"
                );
            }
            other => panic!("expected ConnectionLost with the broker's reason, got {other:?}"),
        }
        assert!(
            closed.elapsed() < Duration::from_secs(3),
            "{:?}",
            closed.elapsed()
        );
    });
}

/// A server whose connection dies does not end: it reconnects and serves again within a
/// few seconds, and only `stop` ends it.
#[test]
fn server_reconnects_after_its_connection_is_cut() {
    let queue = TestQueue::new("server-cut");
    let proxy = TcpProxy::to_broker();
    let server = RpcServer::start(
        &proxy.url(),
        ServerOptions::default().queue(&queue.name).workers(2),
        fib_rpc::FibonacciHandler::default(),
    )
    .unwrap();
    let client = fib_client(&queue.name); // direct, not through the proxy
    assert_eq!(client.call(10).unwrap(), BigUint::from(55u32));
    let cut = Instant::now();
    proxy.cut();
    assert!(
        eventually(Duration::from_secs(5), || server.stats().reconnects == 1),
        "{:?}",
        server.stats()
    );
    let answer = client
        .rpc()
        .call_timeout(b"10", Duration::from_secs(3))
        .unwrap();
    assert_eq!(answer, b"55");
    eprintln!("server back {:?} after the cut", cut.elapsed());
    server.stop().unwrap();
}

/// A broker that goes silent (TCP open, nothing answered) must not hang the client: pending
/// calls end by their deadline, and `close()` returns within its bound.
#[test]
fn stalled_broker_cannot_hang_the_client() {
    let queue = TestQueue::new("stall-client");
    let _server = fib_server(&queue.name);
    let proxy = TcpProxy::to_broker();
    let client = FibonacciRpcClient::connect_with(
        &proxy.url(),
        ClientOptions::default()
            .queue(&queue.name)
            .heartbeat(1)
            .connect_timeout(Duration::from_secs(2)),
    )
    .unwrap();
    assert_eq!(client.call(10).unwrap(), BigUint::from(55u32));
    proxy.stall();
    let started = Instant::now();
    let result = client.call_deadline(11, Instant::now() + Duration::from_millis(500));
    assert_gave_up_in_time(&result, started, Duration::from_secs(2));
    // A call waiting on the silent broker is told at once when the client closes, even while
    // the reader is stuck waiting for the broker to confirm the close.
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| {
            let result = client.call_deadline(13, Instant::now() + Duration::from_secs(60));
            (result, Instant::now())
        });
        std::thread::sleep(Duration::from_millis(200));
        let closing = Instant::now();
        client.close();
        assert!(
            closing.elapsed() < Duration::from_secs(4),
            "{:?}",
            closing.elapsed()
        );
        let (result, ended) = waiting.join().unwrap();
        assert!(matches!(result, Err(Error::Closed)), "{result:?}");
        assert!(ended.duration_since(closing) < Duration::from_secs(1));
    });
    assert!(matches!(client.call(12), Err(Error::Closed)));
}

/// The same for a server: `stop_timeout` returns within its bound on a silent broker.
#[test]
fn stalled_broker_cannot_hang_server_stop() {
    let queue = TestQueue::new("stall-server");
    queue.declare_classic();
    let proxy = TcpProxy::to_broker();
    let server = RpcServer::start(
        &proxy.url(),
        ServerOptions::default()
            .queue(&queue.name)
            .workers(2)
            .heartbeat(1),
        fib_rpc::FibonacciHandler::default(),
    )
    .unwrap();
    proxy.stall();
    let stopping = Instant::now();
    let result = server.stop_timeout(Duration::from_secs(1));
    assert_gave_up_in_time(&result, stopping, Duration::from_millis(1500));
}

/// On a silent broker an operation ends either at its own bound (`Timeout`, or `Unconfirmed`
/// for a call whose request the broker never confirmed) or when heartbeats notice the silence
/// (`ConnectionLost`), whichever comes first, and within `bound`.
fn assert_gave_up_in_time<T: std::fmt::Debug>(
    result: &Result<T, Error>,
    started: Instant,
    bound: Duration,
) {
    assert!(
        matches!(
            result,
            Err(Error::Timeout { .. } | Error::Unconfirmed { .. } | Error::ConnectionLost { .. })
        ),
        "{result:?}"
    );
    assert!(started.elapsed() < bound, "took {:?}", started.elapsed());
}

/// A lazily connecting client with no broker to reach: calls wait within their deadlines
/// and fail with `NotConnected` (never sent, safe to retry) naming why; once the broker can
/// be reached, calls work without anything being restarted.
#[test]
fn calls_while_not_connected_fail_by_their_deadline_then_work() {
    let queue = TestQueue::new("lazy");
    let server = fib_server(&queue.name);
    let proxy = TcpProxy::to_broker();
    proxy.refuse(true);
    let started = Instant::now();
    let client = FibonacciRpcClient::connect_with(
        &proxy.url(),
        ClientOptions::default()
            .queue(&queue.name)
            .lazy_connect(true)
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500)),
    )
    .unwrap();
    assert!(started.elapsed() < Duration::from_millis(500));
    assert!(!client.rpc().is_connected());
    let call_started = Instant::now();
    let result = client.call_deadline(10, Instant::now() + Duration::from_millis(700));
    let waited = call_started.elapsed();
    match &result {
        Err(Error::NotConnected {
            last_error: Some(why),
            ..
        }) => assert!(matches!(**why, Error::Connect { .. }), "{why}"),
        other => panic!("expected NotConnected, got {other:?}"),
    }
    assert!(
        waited >= Duration::from_millis(650) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    assert!(result
        .unwrap_err()
        .full_message()
        .contains("request not sent"));

    proxy.refuse(false);
    let back = Instant::now();
    assert_eq!(client.call(20).unwrap(), BigUint::from(6765u32));
    assert!(
        back.elapsed() < Duration::from_secs(3),
        "{:?}",
        back.elapsed()
    );
    let stats = client.rpc().stats();
    assert_eq!((stats.not_connected, stats.ok, stats.reconnects), (1, 1, 0));
    server.stop().unwrap();
}

/// Failover: the first broker is down, so the client and the server use the second, and
/// both report where they are.
#[test]
fn client_and_server_fail_over_to_the_next_broker() {
    let queue = TestQueue::new("failover");
    let urls = ["amqp://guest:guest@127.0.0.1:1/%2f".to_owned(), amqp_url()];
    let server = RpcServer::start_failover(
        &urls,
        ServerOptions::default().queue(&queue.name).workers(1),
        fib_rpc::FibonacciHandler::default(),
    )
    .unwrap();
    let client =
        FibonacciRpcClient::connect_failover(&urls, ClientOptions::default().queue(&queue.name))
            .unwrap();
    assert_eq!(client.call(12).unwrap(), BigUint::from(144u32));
    server.stop().unwrap();
}

/// Failover after a loss: the broker the client and server were using goes away for good
/// (cut, then refusing), so both carry on through the second one.
#[test]
fn after_a_loss_client_and_server_move_to_the_next_broker() {
    let queue = TestQueue::new("failover-loss");
    let first = TcpProxy::to_broker();
    let second = TcpProxy::to_broker();
    let urls = [first.url(), second.url()];
    let backoff = (Duration::from_millis(50), Duration::from_millis(500));
    let server = RpcServer::start_failover(
        &urls,
        ServerOptions::default()
            .queue(&queue.name)
            .workers(1)
            .reconnect_backoff(backoff.0, backoff.1),
        fib_rpc::FibonacciHandler::default(),
    )
    .unwrap();
    let client = FibonacciRpcClient::connect_failover(
        &urls,
        ClientOptions::default()
            .queue(&queue.name)
            .reconnect_backoff(backoff.0, backoff.1),
    )
    .unwrap();
    assert_eq!(client.call(10).unwrap(), BigUint::from(55u32));
    first.refuse(true);
    first.cut();
    let cut = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || client
            .call_deadline(11, Instant::now() + Duration::from_secs(1))
            .is_ok()),
        "{:?}",
        client.rpc().stats()
    );
    eprintln!(
        "served through the second broker {:?} after the cut",
        cut.elapsed()
    );
    assert_eq!(client.rpc().stats().reconnects, 1);
    assert_eq!(server.stats().reconnects, 1);
    // Both stay on the second broker: cutting the first again changes nothing.
    first.cut();
    assert_eq!(client.call(12).unwrap(), BigUint::from(144u32));
    assert_eq!(client.rpc().stats().reconnects, 1);
    server.stop().unwrap();
}

/// The URL of the test broker with a password it refuses.
fn refused_url() -> String {
    let mut url = url::Url::parse(&amqp_url()).unwrap();
    url.set_password(Some("definitely-wrong")).unwrap();
    url.to_string()
}

#[test]
fn refused_credentials_are_a_refusal_not_a_transient_failure() {
    let err = FibonacciRpcClient::connect(&refused_url()).unwrap_err();
    match &err {
        Error::Connect { cause, .. } => assert_eq!(cause.kind(), BrokerErrorKind::Refused),
        other => panic!("expected Connect, got {other:?}"),
    }
    assert!(!err.is_transient(), "{err:?}");
    assert!(err.request_unsent());
    let down = FibonacciRpcClient::connect("amqp://guest:guest@127.0.0.1:1/%2f").unwrap_err();
    match &down {
        Error::Connect { cause, .. } => assert_eq!(cause.kind(), BrokerErrorKind::Unreachable),
        other => panic!("expected Connect, got {other:?}"),
    }
    assert!(down.is_transient(), "{down:?}");
}

/// Of several brokers, one refusing us and one merely down: the failure reported is the one
/// that may pass, so a caller that waits for transient failures keeps waiting.
#[test]
fn a_refusing_broker_does_not_hide_one_that_is_only_down() {
    for urls in [
        [
            refused_url(),
            "amqp://guest:guest@127.0.0.1:1/%2f".to_owned(),
        ],
        [
            "amqp://guest:guest@127.0.0.1:1/%2f".to_owned(),
            refused_url(),
        ],
    ] {
        let err =
            FibonacciRpcClient::connect_failover(&urls, ClientOptions::default()).unwrap_err();
        assert!(err.is_transient(), "{urls:?}: {err:?}");
    }
    let err = FibonacciRpcClient::connect_failover(
        &[refused_url(), refused_url()],
        ClientOptions::default(),
    )
    .unwrap_err();
    assert!(!err.is_transient(), "{err:?}");
}

/// A lazily started server returns at once, waits for a broker that is down, and serves
/// once it is up: the library's counterpart of the client's `lazy_connect`.
#[test]
fn a_lazily_started_server_waits_for_the_broker() {
    let queue = TestQueue::new("lazy-start");
    let proxy = TcpProxy::to_broker();
    proxy.refuse(true);
    let started = Instant::now();
    let server = RpcServer::start(
        &proxy.url(),
        ServerOptions::default()
            .queue(&queue.name)
            .workers(1)
            .lazy_start(true)
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(100)),
        FibonacciHandler::default(),
    )
    .expect("a lazy start does not wait for the broker");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(matches!(
        server.wait_ready(Duration::from_millis(300)),
        Err(Error::Timeout { .. })
    ));
    // Every thread waiting is told, not just one of them.
    std::thread::scope(|scope| {
        let waiters: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| server.wait_ready(Duration::from_secs(10))))
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let freed = Instant::now();
        proxy.refuse(false);
        for waiter in waiters {
            waiter
                .join()
                .unwrap()
                .expect("ready once the broker answers");
        }
        assert!(
            freed.elapsed() < Duration::from_secs(5),
            "{:?}",
            freed.elapsed()
        );
    });
    server.wait_ready(Duration::ZERO).expect("still ready");
    assert_eq!(
        fib_client(&queue.name).call(30).unwrap(),
        BigUint::from(832_040u32)
    );
    server.stop().unwrap();
}

/// Waiting does not fix refused credentials: a lazy server gives up on them, and says why.
#[test]
fn a_lazily_started_server_gives_up_on_refused_credentials() {
    let server = RpcServer::start_failover(
        &[refused_url()],
        ServerOptions::default()
            .queue("fib-rpc-test-never-declared")
            .lazy_start(true),
        FibonacciHandler::default(),
    )
    .expect("a lazy start returns at once");
    assert!(matches!(
        server.wait_ready(Duration::from_secs(10)),
        Err(Error::Closed)
    ));
    match server.wait() {
        Err(Error::Connect { cause, .. }) => assert_eq!(cause.kind(), BrokerErrorKind::Refused),
        other => panic!("expected a refused Connect, got {other:?}"),
    }
}
