//! The server against the real broker: handlers and their error replies (bad input, panics,
//! size limits), queues of any kind, several servers on one queue, graceful and bounded stops,
//! acks, redelivered and poison requests, requests past their deadline, and the result cache.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use amiquip::{AmqpProperties, ConsumerMessage, ConsumerOptions, Publish, QueueDeclareOptions};
use common::proxy::TcpProxy;
use common::{amqp_url, eventually, fib_client, fib_server, TestQueue};
use fib_rpc::fib;
use fib_rpc::{Error, ErrorCode, RemoteError, Request, RpcServer, ServerOptions};
use num_bigint::BigUint;

#[test]
fn bad_input_gets_typed_error_replies_and_the_server_keeps_serving() {
    let queue = TestQueue::new("bad-input");
    let server = RpcServer::start(
        &amqp_url(),
        ServerOptions::default().queue(&queue.name).workers(2),
        fib_rpc::FibonacciHandler::new(5000),
    )
    .unwrap();
    let client = common::raw_client(&queue.name);
    let cases: &[(&[u8], ErrorCode, &str)] = &[
        (b"", ErrorCode::BadRequest, "empty"),
        (b"abc", ErrorCode::BadRequest, "non-negative decimal"),
        (b"-5", ErrorCode::BadRequest, "negative"),
        (b"1.5", ErrorCode::BadRequest, "whole"),
        (b"\xff\xfe", ErrorCode::BadRequest, "UTF-8"),
        (b"18446744073709551616", ErrorCode::OutOfRange, "64 bits"),
        (b"5001", ErrorCode::OutOfRange, "limit of 5000"),
    ];
    for (body, code, words) in cases {
        match client.call(body) {
            Err(Error::Remote(RemoteError { code: got, message })) => {
                assert_eq!(&got, code, "{body:?}");
                assert!(message.contains(words), "{body:?}: {message}");
            }
            other => panic!("{body:?}: expected an error reply, got {other:?}"),
        }
    }
    assert_eq!(
        client.call(b"5000").unwrap(),
        fib(5000).to_string().into_bytes()
    );
    assert_eq!(client.stats().remote_errors, cases.len() as u64);
    drop(client);
    server.stop().unwrap();
    assert_eq!(queue.message_count(), 0, "every request was acked");
}

#[test]
fn request_without_reply_to_is_acked_and_dropped() {
    let queue = TestQueue::new("no-reply-to");
    let server = fib_server(&queue.name);
    let mut connection = common::admin_connection();
    let channel = connection.open_channel(None).unwrap();
    channel
        .basic_publish("", Publish::new(b"30", queue.name.clone()))
        .unwrap();
    connection.close().unwrap();
    let client = fib_client(&queue.name);
    assert_eq!(client.call(12).unwrap(), BigUint::from(144u32));
    server.stop().unwrap();
    assert_eq!(queue.message_count(), 0, "not requeued");
}

#[test]
fn handler_panic_becomes_internal_error_reply() {
    let queue = TestQueue::new("panic");
    let server = RpcServer::start(
        &amqp_url(),
        ServerOptions::default().queue(&queue.name).workers(1),
        |request: &Request| -> Result<Vec<u8>, RemoteError> {
            if request.body() == b"boom" {
                panic!("boom requested");
            }
            Ok(request.body().to_vec())
        },
    )
    .unwrap();
    let client = common::raw_client(&queue.name);
    for _ in 0..3 {
        match client.call(b"boom") {
            Err(Error::Remote(err)) => {
                assert_eq!(err.code, ErrorCode::Internal);
                assert!(err.message.contains("boom requested"), "{}", err.message);
            }
            other => panic!("expected an internal error reply, got {other:?}"),
        }
        // The single worker survived.
        assert_eq!(client.call(b"still here").unwrap(), b"still here");
    }
    server.stop().unwrap();
}

#[test]
fn oversized_reply_becomes_an_internal_error_reply() {
    let queue = TestQueue::new("big-reply");
    let (server, _) = common::echo_server(
        ServerOptions::default()
            .queue(&queue.name)
            .workers(1)
            .max_reply_bytes(100),
        Duration::ZERO,
    );
    let client = common::raw_client(&queue.name);
    assert_eq!(client.call(&[b'x'; 100]).unwrap(), vec![b'x'; 100]);
    match client.call(&[b'x'; 101]) {
        Err(Error::Remote(err)) => {
            assert_eq!(err.code, ErrorCode::Internal);
            assert!(
                err.message.contains("limit of 100 bytes"),
                "{}",
                err.message
            );
        }
        other => panic!("expected an internal error reply, got {other:?}"),
    }
    server.stop().unwrap();
}

/// Error replies obey the same limit: a handler's long refusal is cut, not published whole.
#[test]
fn long_error_replies_are_cut_to_the_limit() {
    let queue = TestQueue::new("long-refusal");
    let server = RpcServer::start(
        &amqp_url(),
        ServerOptions::default()
            .queue(&queue.name)
            .workers(1)
            .max_reply_bytes(64),
        |_: &Request| -> Result<Vec<u8>, RemoteError> {
            Err(RemoteError::bad_request("no".repeat(500)))
        },
    )
    .unwrap();
    match common::raw_client(&queue.name).call(b"anything") {
        Err(Error::Remote(err)) => {
            assert_eq!(err.code, ErrorCode::BadRequest);
            assert_eq!(err.message.len(), 64);
        }
        other => panic!("expected an error reply, got {other:?}"),
    }
    server.stop().unwrap();
}

/// Two servers on one queue (as two processes would be) share the load.
#[test]
fn two_servers_share_one_queue() {
    let queue = TestQueue::new("two-servers");
    let (servers, counts): (Vec<RpcServer>, Vec<_>) = (0..2)
        .map(|_| {
            let options = ServerOptions::default()
                .queue(&queue.name)
                .workers(1)
                .prefetch(1);
            common::echo_server(options, Duration::from_millis(2))
        })
        .unzip();
    let client = common::raw_client(&queue.name);
    std::thread::scope(|scope| {
        for thread in 0..8 {
            let client = &client;
            scope.spawn(move || {
                for i in 0..25 {
                    let body = format!("{thread}-{i}");
                    assert_eq!(client.call(body.as_bytes()).unwrap(), body.into_bytes());
                }
            });
        }
    });
    let served: Vec<usize> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    assert_eq!(served.iter().sum::<usize>(), 200);
    assert!(served.iter().all(|&n| n >= 40), "uneven split: {served:?}");
    for server in servers {
        server.stop().unwrap();
    }
}

/// The server uses an existing queue whatever its kind, and declares one only when absent.
#[test]
fn server_uses_existing_queues_of_any_kind() {
    let mut connection = common::admin_connection();
    let channel = connection.open_channel(None).unwrap();
    let quorum = TestQueue::new("existing-quorum");
    let mut arguments = amiquip::FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        amiquip::AmqpValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            quorum.name.as_str(),
            QueueDeclareOptions {
                durable: true,
                arguments,
                ..Default::default()
            },
        )
        .unwrap();
    let durable_classic = TestQueue::new("existing-durable");
    channel
        .queue_declare(
            durable_classic.name.as_str(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
        )
        .unwrap();
    connection.close().unwrap();
    for queue in [&quorum, &durable_classic] {
        let server = fib_server(&queue.name);
        let client = fib_client(&queue.name);
        assert_eq!(
            client.call(20).unwrap(),
            BigUint::from(6765u32),
            "{}",
            queue.name
        );
        server.stop().unwrap();
    }
}

#[test]
fn server_declares_a_durable_quorum_queue_when_asked() {
    let queue = TestQueue::new("declare-quorum");
    let server = RpcServer::start(
        &amqp_url(),
        ServerOptions::default()
            .queue(&queue.name)
            .workers(1)
            .declare_as(fib_rpc::QueueKind::DurableQuorum),
        fib_rpc::FibonacciHandler::default(),
    )
    .unwrap();
    let listed = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name", "type", "durable"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with(&queue.name))
        .unwrap_or("");
    assert!(line.contains("quorum") && line.contains("true"), "{line:?}");
    let client = fib_client(&queue.name);
    assert_eq!(client.call(12).unwrap(), BigUint::from(144u32));
    server.stop().unwrap();
}

/// Stopping a server while calls are in flight: each call still gets its answer, and the
/// server stops cleanly.
#[test]
fn graceful_stop_answers_calls_in_flight() {
    let queue = TestQueue::new("stop");
    let (server, started_handling) = common::echo_server(
        ServerOptions::default()
            .queue(&queue.name)
            .workers(2)
            .prefetch(4),
        Duration::from_millis(300),
    );
    let client = common::raw_client(&queue.name);
    std::thread::scope(|scope| {
        let calls: Vec<_> = (0..6)
            .map(|i| {
                let client = &client;
                scope.spawn(move || (i, client.call(format!("req-{i}").as_bytes())))
            })
            .collect();
        assert!(eventually(Duration::from_secs(5), || started_handling
            .load(Ordering::SeqCst)
            >= 2));
        let stopping = Instant::now();
        server.stop().unwrap();
        assert!(stopping.elapsed() < Duration::from_secs(5));
        for call in calls {
            let (i, result) = call.join().unwrap();
            assert_eq!(result.unwrap(), format!("req-{i}").into_bytes());
        }
    });
    assert_eq!(queue.message_count(), 0);
}

/// Stopping is bounded even when a handler is still busy.
#[test]
fn stop_timeout_bounds_a_stop_behind_a_slow_handler() {
    let queue = TestQueue::new("slow-stop");
    let (server, handling) = common::echo_server(
        ServerOptions::default().queue(&queue.name).workers(1),
        Duration::from_secs(2),
    );
    let client = common::raw_client(&queue.name);
    std::thread::scope(|scope| {
        let call = scope.spawn(|| client.call(b"slow"));
        assert!(eventually(Duration::from_secs(5), || handling
            .load(Ordering::SeqCst)
            == 1));
        let stopping = Instant::now();
        let result = server.stop_timeout(Duration::from_millis(200));
        assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
        assert!(stopping.elapsed() < Duration::from_secs(1));
        // The server still finishes what it had, on its own.
        assert_eq!(call.join().unwrap().unwrap(), b"slow");
    });
}

/// Workers ack several answered requests at once while more are waiting, but an idle worker
/// has acked everything: nothing answered stays unacknowledged (and would come back after a
/// loss).
#[test]
fn answered_requests_are_all_acked_once_the_worker_is_idle() {
    let queue = TestQueue::new("ack-batch");
    let server = RpcServer::start(
        &amqp_url(),
        ServerOptions::default()
            .queue(&queue.name)
            .workers(1)
            .prefetch(32),
        fib_rpc::FibonacciHandler::default(),
    )
    .unwrap();
    let client = fib_client(&queue.name);
    let deadline = Instant::now() + Duration::from_secs(20);
    for round in 0..5u64 {
        let pending: Vec<_> = (0..203)
            .map(|n| client.send(round * 1000 + n, deadline).unwrap())
            .collect();
        for call in pending {
            let n = call.n();
            assert_eq!(call.wait().unwrap(), fib(n));
        }
    }
    assert!(
        eventually(Duration::from_secs(3), || common::unacknowledged_count(
            &queue.name
        ) == 0),
        "{} answered requests left unacknowledged",
        common::unacknowledged_count(&queue.name)
    );
    assert_eq!(server.stats().replied, 1015);
    server.stop().unwrap();
}

/// A request the broker redelivers (its first consumer died without acking) is still served.
#[test]
fn redelivered_request_is_served() {
    let queue = TestQueue::new("redelivered");
    queue.declare_classic();
    let client = fib_client(&queue.name);
    std::thread::scope(|scope| {
        let call = scope.spawn(|| client.call(20));
        // A consumer that takes the request and dies without acking it.
        let mut connection = common::admin_connection();
        let channel = connection.open_channel(None).unwrap();
        let consumer = channel
            .basic_consume(queue.name.as_str(), ConsumerOptions::default())
            .unwrap();
        let Ok(ConsumerMessage::Delivery(_unacked)) = consumer.receiver().recv() else {
            panic!("expected the request");
        };
        common::cancel_consumer(consumer);
        connection.close().unwrap(); // requeues the request, marked redelivered
        let server = fib_server(&queue.name);
        assert_eq!(call.join().unwrap().unwrap(), BigUint::from(6765u32));
        server.stop().unwrap();
    });
    assert_eq!(queue.message_count(), 0);
}

/// A request whose reply makes the broker close the server's connection (here a malformed
/// direct reply-to address, which RabbitMQ 3.10 answers with 541 INTERNAL_ERROR) comes back
/// every time the server reconnects, because it is acked only after the reply. The server
/// must notice it keeps coming back, drop it after a few tries, and serve normally.
#[test]
fn poison_request_is_dropped_after_a_few_redeliveries() {
    let queue = TestQueue::new("poison");
    queue.declare_classic();
    publish_requests(&queue.name, &[(POISON_REPLY_TO, "poison")]);
    let server = quickly_reconnecting_server(&queue.name, 2);
    assert!(
        eventually(Duration::from_secs(20), || server.stats().poison == 1),
        "{:?}",
        server.stats()
    );
    let stats = server.stats();
    eprintln!("poison request: {stats:?}");
    // Losing the connection while still starting (the poison can be taken by the first
    // worker while the second sets up) is retried but not counted as a reconnection.
    assert!(stats.reconnects <= 4, "reconnects: {}", stats.reconnects);
    // RabbitMQ 3.10 closes the connection on this reply_to; if a broker ever stops doing so,
    // this test no longer exercises the guard (poison stays 0 and the wait above fails).
    assert_eq!(
        fib_client(&queue.name).call(10).unwrap(),
        BigUint::from(55u32)
    );
    assert_eq!(queue.message_count(), 0, "poison request still queued");
    server.stop().unwrap();
}

/// A `reply_to` that RabbitMQ 3.10 answers by closing the replier's connection (541): a
/// malformed direct reply-to address.
const POISON_REPLY_TO: &str = "amq.rabbitmq.reply-to.g2dkAAA=.x";

/// Publishes fib(10) requests to `queue` as a foreign client would, one per
/// `(reply_to, correlation_id)`, in order.
fn publish_requests(queue: &str, requests: &[(&str, &str)]) {
    let mut connection = common::admin_connection();
    let channel = connection.open_channel(None).unwrap();
    for (reply_to, correlation_id) in requests {
        let properties = AmqpProperties::default()
            .with_reply_to((*reply_to).to_owned())
            .with_correlation_id((*correlation_id).to_owned());
        channel
            .basic_publish("", Publish::with_properties(b"10", queue, properties))
            .unwrap();
    }
    connection.close().unwrap();
}

/// A Fibonacci server on `queue` that reconnects within 200 ms, for tests that break its
/// connection over and over.
fn quickly_reconnecting_server(queue: &str, workers: usize) -> RpcServer {
    RpcServer::start(
        &amqp_url(),
        ServerOptions::default()
            .queue(queue)
            .workers(workers)
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(200)),
        fib_rpc::FibonacciHandler::default(),
    )
    .unwrap()
}

/// A healthy request answered just before a poison one, in the same prefetch window (its ack
/// deferred), is not dropped as poison with it: once redelivered, it is acked before the
/// poison's reply breaks the connection again.
#[test]
fn request_answered_before_a_poison_one_is_not_taken_for_poison() {
    let queue = TestQueue::new("poison-neighbour");
    queue.declare_classic();
    let replies = TestQueue::new("poison-neighbour-replies");
    replies.declare_classic();
    publish_requests(
        &queue.name,
        &[
            (replies.name.as_str(), "healthy"),
            (POISON_REPLY_TO, "poison"),
        ],
    );
    let server = quickly_reconnecting_server(&queue.name, 1);
    assert!(
        eventually(Duration::from_secs(20), || server.stats().poison >= 1),
        "{:?}",
        server.stats()
    );
    std::thread::sleep(Duration::from_millis(500)); // no further loss, no further answer
    let stats = server.stats();
    assert_eq!(stats.poison, 1, "{stats:?}");
    // Answered again at most once: its ack may have been pending at the first loss.
    let answers = replies.message_count();
    assert!(
        (1..=2).contains(&answers),
        "{answers} answers to the healthy request"
    );
    server.stop().unwrap();
}

/// Connection losses under load do not make the poison guard drop healthy requests: three
/// cuts of the server's connection, 300 ms apart, and every call is still answered.
#[test]
fn repeated_losses_under_load_drop_nothing_as_poison() {
    let queue = TestQueue::new("no-false-poison");
    let proxy = TcpProxy::to_broker();
    let server = RpcServer::start(
        &proxy.url(),
        ServerOptions::default()
            .queue(&queue.name)
            .workers(2)
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(100)),
        fib_rpc::FibonacciHandler::default(),
    )
    .unwrap();
    let client = fib_client(&queue.name); // direct: only the server is cut
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let callers: Vec<_> = (0..8)
            .map(|caller| {
                let (client, stop) = (&client, &stop);
                scope.spawn(move || {
                    let mut calls = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        let n = 20 + (calls + caller) % 50;
                        let deadline = Instant::now() + Duration::from_secs(10);
                        assert_eq!(client.call_deadline(n, deadline).unwrap(), fib(n));
                        calls += 1;
                    }
                    calls
                })
            })
            .collect();
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(300));
            proxy.cut();
        }
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        let calls: u64 = callers.into_iter().map(|c| c.join().unwrap()).sum();
        assert!(calls > 100, "{calls} calls");
    });
    let stats = server.stats();
    assert_eq!(stats.poison, 0, "{stats:?}");
    assert!(stats.reconnects >= 3, "{stats:?}");
    server.stop().unwrap();
}

/// Requests whose caller has given up are not computed: the broker drops them while queued
/// (`expiration`), and a server that gets one late (here: stuck behind a slow request in its
/// prefetch window) acks and drops it by its deadline header.
#[test]
fn requests_past_their_deadline_are_dropped_unread() {
    let queue = TestQueue::new("expired");
    let (server, handled) = common::echo_server(
        ServerOptions::default()
            .queue(queue.name.as_str())
            .workers(1)
            .prefetch(8)
            .deadline_grace(Duration::ZERO),
        Duration::from_millis(400),
    );
    let client = common::raw_client(&queue.name);
    let deadline = Instant::now() + Duration::from_millis(300);
    let pending: Vec<_> = (0..5)
        .map(|i| client.send(format!("{i}").as_bytes(), deadline).unwrap())
        .collect();
    for call in pending {
        assert!(matches!(call.wait(), Err(Error::Timeout { .. })));
    }
    // The first was being handled when the deadline passed; the other four were in the
    // worker's prefetch window and must be dropped, not run.
    assert!(eventually(Duration::from_secs(5), || server
        .stats()
        .expired
        == 4));
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    assert_eq!(server.stats().replied, 1);

    // A request whose deadline header is already past, published by hand: never computed.
    let mut connection = common::admin_connection();
    let channel = connection.open_channel(None).unwrap();
    let mut headers = amiquip::FieldTable::default();
    headers.insert(
        fib_rpc::DEADLINE_HEADER.into(),
        amiquip::AmqpValue::LongLongInt(1_000), // 1970
    );
    let properties = AmqpProperties::default()
        .with_reply_to(format!("{}-nobody", queue.name))
        .with_correlation_id("late".to_owned())
        .with_headers(headers);
    channel
        .basic_publish(
            "",
            Publish::with_properties(b"x", queue.name.clone(), properties),
        )
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || server
        .stats()
        .expired
        == 5));
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    connection.close().unwrap();
    server.stop().unwrap();
    assert_eq!(queue.message_count(), 0);
}

/// The server tolerates `deadline_grace` (default 1 s) of clock difference: a request that
/// arrives a little after its deadline is served, one far past it is dropped.
#[test]
fn the_default_deadline_grace_serves_slightly_late_requests() {
    let queue = TestQueue::new("grace");
    let server = fib_server(&queue.name);
    let mut connection = common::admin_connection();
    let channel = connection.open_channel(None).unwrap();
    let (reply_queue, consumer) = common::reply_consumer(&channel);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for (id, late_ms) in [("slightly-late", 300), ("far-too-late", 5_000)] {
        let mut headers = amiquip::FieldTable::default();
        headers.insert(
            fib_rpc::DEADLINE_HEADER.into(),
            amiquip::AmqpValue::LongLongInt(now_ms - late_ms),
        );
        let properties = AmqpProperties::default()
            .with_reply_to(reply_queue.clone())
            .with_correlation_id(id.to_owned())
            .with_headers(headers);
        channel
            .basic_publish(
                "",
                Publish::with_properties(b"10", queue.name.clone(), properties),
            )
            .unwrap();
    }
    match consumer.receiver().recv_timeout(Duration::from_secs(5)) {
        Ok(ConsumerMessage::Delivery(reply)) => {
            assert_eq!(
                reply.properties.correlation_id().as_deref(),
                Some("slightly-late")
            );
            assert_eq!(reply.body, b"55");
        }
        other => panic!("expected the slightly late request answered, got {other:?}"),
    }
    assert!(eventually(Duration::from_secs(5), || server
        .stats()
        .expired
        == 1));
    assert!(consumer
        .receiver()
        .recv_timeout(Duration::from_millis(300))
        .is_err());
    common::cancel_consumer(consumer);
    connection.close().unwrap();
    server.stop().unwrap();
}

/// A repeated request for a big n is served from the result cache, not computed again.
#[test]
fn repeated_big_n_comes_from_the_cache() {
    let queue = TestQueue::new("cache");
    let handler = fib_rpc::FibonacciHandler::default();
    let server = RpcServer::start(
        &amqp_url(),
        ServerOptions::default().queue(&queue.name).workers(2),
        handler.clone(), // clones share the cache, so its stats are readable here
    )
    .unwrap();
    let client = fib_client(&queue.name);
    let first = client.call_decimal(200_000).unwrap();
    let again = client.call_decimal(200_000).unwrap();
    assert_eq!(first, again);
    assert_eq!(first, fib(200_000).to_string());
    let stats = handler.cache_stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));
    assert_eq!(stats.bytes, first.len());
    server.stop().unwrap();
}

/// Concurrent requests for the same big n, spread over two workers, are computed once: the
/// second worker waits for the first's result (or finds it cached) instead of computing it.
#[test]
fn concurrent_duplicates_are_computed_once() {
    const CALLERS: usize = 8;
    let queue = TestQueue::new("single-flight");
    let handler = fib_rpc::FibonacciHandler::default();
    let server = RpcServer::start(
        &amqp_url(),
        ServerOptions::default().queue(&queue.name).workers(2),
        handler.clone(),
    )
    .unwrap();
    let client = fib_client(&queue.name);
    let barrier = std::sync::Barrier::new(CALLERS);
    let replies: Vec<String> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..CALLERS)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    client.call_decimal(300_000)
                })
            })
            .collect();
        calls
            .into_iter()
            .map(|call| call.join().unwrap().unwrap())
            .collect()
    });
    let expected = fib(300_000).to_string();
    assert!(replies.iter().all(|reply| *reply == expected));
    let stats = handler.cache_stats();
    assert_eq!(stats.misses, 1, "computed more than once: {stats:?}");
    assert_eq!(stats.hits + stats.shared, CALLERS as u64 - 1, "{stats:?}");
    server.stop().unwrap();
}

/// What a handler sees of a request from our client: the body, the caller's deadline on the
/// local clock (within the header's millisecond precision), the deadline header itself, the
/// correlation id, and that it is a first delivery.
#[test]
fn a_handler_sees_the_request_context() {
    let queue = TestQueue::new("request-context");
    let server = RpcServer::start(
        &amqp_url(),
        ServerOptions::default().queue(&queue.name).workers(1),
        |req: &Request| -> Result<Vec<u8>, RemoteError> {
            let left = req.remaining().expect("our client sends a deadline");
            let header = req
                .header(fib_rpc::DEADLINE_HEADER)
                .and_then(|value| value.as_int())
                .expect("the deadline header");
            let names: Vec<&str> = req.headers().map(|(name, _)| name).collect();
            Ok(format!(
                "{} {} {} {} {} {:?}",
                String::from_utf8_lossy(req.body()),
                left.as_millis(),
                header > 0,
                req.correlation_id().map_or(0, str::len),
                req.redelivered(),
                names
            )
            .into_bytes())
        },
    )
    .unwrap();
    let client = common::raw_client(&queue.name);
    let reply = client
        .call_timeout(b"ping", Duration::from_secs(5))
        .unwrap();
    let reply = String::from_utf8(reply).unwrap();
    let parts: Vec<&str> = reply.splitn(6, ' ').collect();
    assert_eq!(parts[0], "ping");
    let left_ms: u64 = parts[1].parse().unwrap();
    assert!((3_000..=5_000).contains(&left_ms), "{reply}");
    assert_eq!(parts[2], "true", "{reply}");
    assert_eq!(parts[3], "36", "a UUID: {reply}");
    assert_eq!(parts[4], "false", "{reply}");
    assert_eq!(parts[5], "[\"x-rpc-deadline\"]", "{reply}");
    server.stop().unwrap();
}

/// A request from a caller that sent no deadline (the tutorial's client) has none.
#[test]
fn a_request_without_a_deadline_header_has_no_deadline() {
    let queue = TestQueue::new("no-deadline");
    let server = RpcServer::start(
        &amqp_url(),
        ServerOptions::default().queue(&queue.name).workers(1),
        |req: &Request| -> Result<Vec<u8>, RemoteError> {
            Ok(format!("{:?} {:?}", req.deadline(), req.header("x-rpc-deadline")).into_bytes())
        },
    )
    .unwrap();
    let mut connection = common::admin_connection();
    let channel = connection.open_channel(None).unwrap();
    let (reply_to, consumer) = common::reply_consumer(&channel);
    channel
        .basic_publish(
            "",
            Publish {
                body: b"x",
                routing_key: queue.name.clone(),
                mandatory: false,
                immediate: false,
                properties: AmqpProperties::default()
                    .with_reply_to(reply_to)
                    .with_correlation_id("c1".into()),
            },
        )
        .unwrap();
    let reply = consumer
        .receiver()
        .recv_timeout(Duration::from_secs(5))
        .expect("a reply");
    let ConsumerMessage::Delivery(reply) = reply else {
        panic!("{reply:?}");
    };
    assert_eq!(reply.body, b"None None");
    common::cancel_consumer(consumer);
    drop(channel);
    connection.close().unwrap();
    server.stop().unwrap();
}
