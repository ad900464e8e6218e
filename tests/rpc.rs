//! Request/reply against the real broker: results, concurrency, timeouts, routing failures,
//! bad input, handler panics, connection loss and graceful shutdown.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use amiquip::{AmqpProperties, ConsumerMessage, ConsumerOptions, Publish, QueueDeclareOptions};
use common::proxy::TcpProxy;
use common::{amqp_url, eventually, fib_server, TestQueue};
use fib_rpc::fib::fib;
use fib_rpc::{
    ClientOptions, Error, ErrorCode, FibonacciRpcClient, RemoteError, ReplyTo, RpcClient,
    RpcServer, ServerOptions,
};
use num_bigint::BigUint;

fn fib_client(queue: &str) -> FibonacciRpcClient {
    FibonacciRpcClient::connect_with(&amqp_url(), ClientOptions::default().queue(queue))
        .expect("client connects")
}

#[test]
fn sequential_calls_return_exact_values() {
    let queue = TestQueue::new("sequential");
    let _server = fib_server(&queue.name);
    let client = fib_client(&queue.name);
    for n in [0u64, 1, 2, 10, 30, 93, 94, 1000, 10_000] {
        assert_eq!(client.call(n).unwrap(), fib(n), "fib({n})");
    }
    assert_eq!(client.call(30).unwrap(), BigUint::from(832_040u32));
    let stats = client.rpc().stats();
    assert_eq!((stats.calls, stats.ok), (10, 10));
}

#[test]
fn sixty_four_threads_share_one_client() {
    const THREADS: u64 = 64;
    const CALLS_EACH: u64 = 40;
    let queue = TestQueue::new("threads");
    let _server = fib_server(&queue.name);
    let client = fib_client(&queue.name);
    let start = Barrier::new(THREADS as usize);
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (client, start) = (&client, &start);
            scope.spawn(move || {
                start.wait();
                for call in 0..CALLS_EACH {
                    // Every thread asks for different numbers, so a crossed reply is caught.
                    let n = thread * CALLS_EACH + call;
                    assert_eq!(client.call(n).unwrap(), fib(n), "thread {thread} fib({n})");
                }
            });
        }
    });
    let stats = client.rpc().stats();
    assert_eq!(stats.calls, THREADS * CALLS_EACH);
    assert_eq!(stats.ok, THREADS * CALLS_EACH);
    assert_eq!(stats.discarded_replies, 0);
}

/// A hand-written server that answers every request with a foreign reply (unknown
/// correlation id), then the real reply twice: the caller must get exactly its answer and the
/// other two must be dropped and counted.
#[test]
fn duplicate_and_foreign_replies_are_discarded() {
    let queue = TestQueue::new("duplicates");
    queue.declare_classic();
    let server = common::hand_written_server(&queue.name, 1, |_, request| {
        request.reply(b"111", &uuid::Uuid::new_v4().to_string());
        request.reply(b"55", &request.correlation_id);
        request.reply(b"222", &request.correlation_id);
    });
    let client = fib_client(&queue.name);
    assert_eq!(client.call(10).unwrap(), BigUint::from(55u32));
    server.join().unwrap();
    assert!(
        eventually(Duration::from_secs(5), || client
            .rpc()
            .stats()
            .discarded_replies
            == 2),
        "stats: {:?}",
        client.rpc().stats()
    );
    assert_eq!(client.rpc().stats().ok, 1);
}

/// A reply that arrives after its caller timed out is dropped and counted, and the next call
/// still gets its own answer.
#[test]
fn late_reply_after_timeout_is_discarded() {
    let queue = TestQueue::new("late");
    queue.declare_classic();
    // The first answer comes after the caller has given up; the second at once.
    let server = common::hand_written_server(&queue.name, 2, |index, request| {
        if index == 0 {
            std::thread::sleep(Duration::from_millis(600));
        }
        request.reply(b"8", &request.correlation_id);
    });
    let client = fib_client(&queue.name);
    let err = client
        .call_deadline(6, Instant::now() + Duration::from_millis(200))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(
        eventually(Duration::from_secs(5), || client
            .rpc()
            .stats()
            .discarded_replies
            == 1),
        "{:?}",
        client.rpc().stats()
    );
    assert_eq!(client.call(6).unwrap(), BigUint::from(8u32));
    server.join().unwrap();
}

#[test]
fn timeout_without_consumer_and_the_request_expires() {
    let queue = TestQueue::new("timeout");
    queue.declare_classic(); // exists, but nobody consumes
    let client = fib_client(&queue.name);
    let started = Instant::now();
    let err = client
        .call_deadline(30, Instant::now() + Duration::from_millis(300))
        .unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_millis(1500), "{waited:?}");
    // The request carried its deadline as `expiration`: the broker drops it, no server will
    // compute it later.
    assert!(
        eventually(Duration::from_secs(5), || queue.message_count() == 0),
        "request still queued after its deadline"
    );
    assert_eq!(client.rpc().stats().timeouts, 1);
}

#[test]
fn no_queue_fails_fast_with_no_server() {
    let queue = TestQueue::new("absent"); // never declared
    let client = fib_client(&queue.name);
    let started = Instant::now();
    let err = client.call(5).unwrap_err();
    assert!(
        matches!(&err, Error::NoServer { queue: q } if *q == queue.name),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The client is still usable afterwards.
    assert!(matches!(client.call(6), Err(Error::NoServer { .. })));
}

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
        |request: &[u8]| -> Result<Vec<u8>, RemoteError> {
            if request == b"boom" {
                panic!("boom requested");
            }
            Ok(request.to_vec())
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

/// A queue with no consumer keeps calls pending; cutting the client's TCP connection must
/// fail them at once (outcome unknown), not at their 30 s deadline. The client then
/// reconnects by itself, and calls work again once a server shows up.
#[test]
fn socket_cut_fails_pending_calls_at_once_then_the_client_reconnects() {
    let queue = TestQueue::new("cut");
    queue.declare_classic();
    let proxy = TcpProxy::to_broker();
    let client = FibonacciRpcClient::connect_with(
        &proxy.url(),
        ClientOptions::default()
            .queue(&queue.name)
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
/// close_connection` would): pending calls fail at once with the broker's reason.
#[test]
fn broker_closing_the_connection_fails_pending_calls_at_once() {
    let queue = TestQueue::new("broker-close");
    queue.declare_classic();
    let name = common::unique_connection_name("broker-close");
    let client = FibonacciRpcClient::connect_with(
        &amqp_url(),
        ClientOptions::default()
            .queue(&queue.name)
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

#[test]
fn closing_the_client_fails_waiting_calls_and_later_ones() {
    let queue = TestQueue::new("client-close");
    queue.declare_classic();
    let client = fib_client(&queue.name);
    std::thread::scope(|scope| {
        let call = scope.spawn(|| client.call(3));
        std::thread::sleep(Duration::from_millis(200));
        let closing = Instant::now();
        client.close();
        assert!(closing.elapsed() < Duration::from_secs(3));
        assert!(matches!(call.join().unwrap(), Err(Error::Closed)));
    });
    assert!(matches!(client.call(3), Err(Error::Closed)));
}

#[test]
fn unreachable_broker_is_a_connect_error() {
    let started = Instant::now();
    let err = FibonacciRpcClient::connect("amqp://guest:secret@127.0.0.1:1/%2f").unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(!err.to_string().contains("secret"));
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
    assert!(!err.to_string().contains("definitely-wrong"), "{err}");
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

/// A timeout must come back as `Timeout` even when the reader drops the call unanswered
/// (its deadline passed before publishing, or the sweep removed it), never as a lost
/// connection.
#[test]
fn tiny_deadlines_time_out_and_never_look_like_connection_loss() {
    let queue = TestQueue::new("tiny-deadlines");
    let _server = fib_server(&queue.name);
    let client = common::raw_client(&queue.name);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..300 {
                    match client.call_timeout(b"10", Duration::from_micros(200)) {
                        Ok(reply) => assert_eq!(reply, b"55"),
                        Err(Error::Timeout { .. }) => {}
                        Err(other) => panic!("expected a reply or a timeout, got {other:?}"),
                    }
                }
            });
        }
    });
    let stats = client.stats();
    assert_eq!(stats.connection_lost, 0, "{stats:?}");
    assert_eq!(stats.ok + stats.timeouts, 2400, "{stats:?}");
    // The client is healthy afterwards.
    assert_eq!(client.call(b"10").unwrap(), b"55");
}

#[test]
fn unbounded_timeouts_and_oversized_requests_do_not_break_the_shared_client() {
    let queue = TestQueue::new("limits");
    let _server = fib_server(&queue.name);
    let client = RpcClient::connect(
        &amqp_url(),
        ClientOptions::default()
            .queue(&queue.name)
            .timeout(Duration::MAX)
            .max_request_bytes(1024),
    )
    .unwrap();
    // `Duration::MAX` means "wait as long as possible": no overflow, and the request's
    // `expiration` stays within what the broker accepts.
    assert_eq!(client.call(b"12").unwrap(), b"144");
    let err = client.call(&vec![b'1'; 1025]).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert_eq!(client.call(b"12").unwrap(), b"144");
}

#[test]
fn options_that_would_remove_a_bound_are_refused() {
    let url = amqp_url();
    let refused = |result: Result<(), Error>| matches!(result, Err(Error::InvalidArgument(_)));
    assert!(refused(
        RpcClient::connect(&url, ClientOptions::default().heartbeat(0)).map(drop)
    ));
    assert!(refused(
        RpcClient::connect(&url, ClientOptions::default().queue("")).map(drop)
    ));
    assert!(refused(
        RpcClient::connect(&url, ClientOptions::default().timeout(Duration::ZERO)).map(drop)
    ));
    let server = |options: ServerOptions| {
        RpcServer::start(&url, options, fib_rpc::FibonacciHandler::default()).map(drop)
    };
    assert!(refused(server(ServerOptions::default().heartbeat(0))));
    assert!(refused(server(ServerOptions::default().queue(""))));
    assert!(refused(server(ServerOptions::default().workers(0))));
    assert!(refused(server(ServerOptions::default().prefetch(0))));
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
        |_: &[u8]| -> Result<Vec<u8>, RemoteError> {
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

/// On a silent broker an operation ends either at its own bound (`Timeout`) or when heartbeats
/// notice the silence (`ConnectionLost`), whichever comes first, and within `bound`.
fn assert_gave_up_in_time<T: std::fmt::Debug>(
    result: &Result<T, Error>,
    started: Instant,
    bound: Duration,
) {
    assert!(
        matches!(
            result,
            Err(Error::Timeout { .. } | Error::ConnectionLost { .. })
        ),
        "{result:?}"
    );
    assert!(started.elapsed() < bound, "took {:?}", started.elapsed());
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

#[test]
fn send_keeps_many_calls_in_flight_from_one_thread() {
    let queue = TestQueue::new("send-pipelined");
    let (server, _) = common::echo_server(
        ServerOptions::default()
            .queue(queue.name.as_str())
            .workers(4),
        Duration::from_millis(300),
    );
    let client = common::raw_client(&queue.name);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    let pending: Vec<_> = (0..4)
        .map(|i| {
            client
                .send(format!("req-{i}").as_bytes(), deadline)
                .unwrap()
        })
        .collect();
    for (i, call) in pending.into_iter().enumerate() {
        assert_eq!(call.wait().unwrap(), format!("req-{i}").into_bytes());
    }
    // Four 300 ms requests on four workers: concurrent, not one after another (1.2 s).
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    let stats = client.stats();
    assert_eq!((stats.calls, stats.ok), (4, 4));
    server.stop().unwrap();
}

#[test]
fn a_reply_that_came_in_time_is_returned_even_if_collected_late() {
    let queue = TestQueue::new("send-collect-late");
    let server = fib_server(&queue.name);
    let client = fib_client(&queue.name);
    let call = client
        .send(20, Instant::now() + Duration::from_millis(300))
        .unwrap();
    std::thread::sleep(Duration::from_millis(800)); // the answer came long before
    assert_eq!(call.wait().unwrap(), BigUint::from(6765u32));
    server.stop().unwrap();
}

/// Dropping a pending reply gives the call up: a request not sent yet (the client is not
/// connected) is never sent, even once the connection comes.
#[test]
fn a_dropped_unsent_call_is_never_sent() {
    let queue = TestQueue::new("send-dropped");
    queue.declare_classic();
    let proxy = TcpProxy::to_broker();
    proxy.refuse(true);
    let client = RpcClient::connect(
        &proxy.url(),
        ClientOptions::default()
            .queue(&queue.name)
            .lazy_connect(true)
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(200)),
    )
    .unwrap();
    drop(
        client
            .send(b"1", Instant::now() + Duration::from_secs(30))
            .unwrap(),
    );
    proxy.refuse(false);
    assert!(eventually(Duration::from_secs(5), || client.is_connected()));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(queue.message_count(), 0, "the dropped call was sent");
    let stats = client.stats();
    assert_eq!((stats.calls, stats.ok, stats.discarded_replies), (1, 0, 0));
}

/// A call dropped after it was sent: its reply is discarded and counted.
#[test]
fn a_reply_to_a_dropped_call_is_discarded_and_counted() {
    let queue = TestQueue::new("sent-dropped");
    let (server, handled) = common::echo_server(
        ServerOptions::default()
            .queue(queue.name.as_str())
            .workers(1),
        Duration::from_millis(200),
    );
    let client = common::raw_client(&queue.name);
    let call = client
        .send(b"x", Instant::now() + Duration::from_secs(10))
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || handled
        .load(Ordering::SeqCst)
        == 1));
    drop(call); // sent: the server is on it
    assert!(eventually(Duration::from_secs(5), || client
        .stats()
        .discarded_replies
        == 1));
    server.stop().unwrap();
}

#[test]
fn a_reply_that_is_not_decimal_counts_as_an_error_not_ok() {
    let queue = TestQueue::new("invalid-reply-stats");
    let server = RpcServer::start(
        &amqp_url(),
        ServerOptions::default()
            .queue(queue.name.as_str())
            .workers(1),
        |_: &[u8]| -> Result<Vec<u8>, RemoteError> { Ok(b"twelve".to_vec()) },
    )
    .unwrap();
    let client = fib_client(&queue.name);
    let err = client.call(5).unwrap_err();
    assert!(matches!(err, Error::InvalidReply(_)), "{err:?}");
    let stats = client.rpc().stats();
    assert_eq!((stats.calls, stats.ok, stats.other_errors), (1, 0, 1));
    server.stop().unwrap();
}

#[test]
fn queue_names_the_broker_would_refuse_are_refused_up_front() {
    let long = "q".repeat(256);
    for queue in ["", long.as_str()] {
        let client = RpcClient::connect(&amqp_url(), ClientOptions::default().queue(queue));
        assert!(
            matches!(client, Err(Error::InvalidArgument(_))),
            "{client:?}"
        );
        let server = RpcServer::start(
            &amqp_url(),
            ServerOptions::default().queue(queue),
            fib_rpc::FibonacciHandler::default(),
        );
        assert!(
            matches!(server, Err(Error::InvalidArgument(_))),
            "{server:?}"
        );
    }
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
        fib_rpc::wire::DEADLINE_HEADER.into(),
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
    assert!(result.unwrap_err().to_string().contains("request not sent"));

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

/// A deadline as far as an `Instant` goes means "no deadline", not a panic in the reader.
#[test]
fn the_farthest_deadline_is_fine() {
    let queue = TestQueue::new("far-deadline");
    let server = fib_server(&queue.name);
    let client = fib_client(&queue.name);
    let farthest = (1..64)
        .rev()
        .find_map(|bits| Instant::now().checked_add(Duration::from_secs(1u64 << bits)))
        .unwrap();
    assert_eq!(
        client.call_deadline(10, farthest).unwrap(),
        BigUint::from(55u32)
    );
    assert_eq!(client.call(11).unwrap(), BigUint::from(89u32));
    assert!(client.rpc().is_connected());
    server.stop().unwrap();
}

/// A caller told `Closed` must not have its request sent later, even if a connection comes
/// up while the client is closing.
#[test]
fn a_call_failed_by_close_is_never_sent() {
    let queue = TestQueue::new("closed-unsent");
    queue.declare_classic();
    let proxy = TcpProxy::to_broker();
    proxy.stall(); // connecting hangs in the handshake
    let client = RpcClient::connect(
        &proxy.url(),
        ClientOptions::default()
            .queue(&queue.name)
            .lazy_connect(true)
            .connect_timeout(Duration::from_secs(3)),
    )
    .unwrap();
    std::thread::scope(|scope| {
        let call = scope.spawn(|| client.call_timeout(b"1", Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(300));
        let closer = scope.spawn(|| client.close());
        assert!(matches!(call.join().unwrap(), Err(Error::Closed)));
        proxy.resume(); // the handshake can finish now
        closer.join().unwrap();
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(queue.message_count(), 0, "the closed call was sent");
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
            fib_rpc::wire::DEADLINE_HEADER.into(),
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

fn direct_client(url: &str, queue: &str) -> FibonacciRpcClient {
    FibonacciRpcClient::connect_with(
        url,
        ClientOptions::default()
            .queue(queue)
            .reply_to(ReplyTo::Direct),
    )
    .expect("client connects")
}

/// Direct reply-to: exact answers across threads sharing the client, typed error replies, and
/// `NoServer` for an absent queue, as with the exclusive reply queue.
#[test]
fn direct_reply_to_answers_threads_errors_and_returns() {
    let queue = TestQueue::new("direct");
    let server = fib_server(&queue.name);
    let client = direct_client(&amqp_url(), &queue.name);
    std::thread::scope(|scope| {
        for thread in 0..16u64 {
            let client = &client;
            scope.spawn(move || {
                for call in 0..25 {
                    let n = thread * 25 + call;
                    assert_eq!(client.call(n).unwrap(), fib(n), "fib({n})");
                }
            });
        }
    });
    let err = client.rpc().call(b"abc").unwrap_err();
    assert!(
        matches!(&err, Error::Remote(remote) if remote.code == ErrorCode::BadRequest),
        "{err:?}"
    );
    let stats = client.rpc().stats();
    assert_eq!((stats.ok, stats.discarded_replies), (400, 0), "{stats:?}");

    let absent = TestQueue::new("direct-absent"); // never declared
    let lost = direct_client(&amqp_url(), &absent.name);
    assert!(matches!(lost.call(5), Err(Error::NoServer { .. })));
    server.stop().unwrap();
}

/// After a cut, a direct reply-to client consumes `amq.rabbitmq.reply-to` again on its new
/// channel before publishing, so calls work again.
#[test]
fn direct_reply_to_client_reconnects_after_a_cut() {
    let queue = TestQueue::new("direct-cut");
    let server = fib_server(&queue.name);
    let proxy = TcpProxy::to_broker();
    let client = direct_client(&proxy.url(), &queue.name);
    assert_eq!(client.call(10).unwrap(), BigUint::from(55u32));
    proxy.cut();
    assert!(eventually(Duration::from_secs(5), || client
        .rpc()
        .stats()
        .reconnects
        == 1));
    assert_eq!(client.call(20).unwrap(), BigUint::from(6765u32));
    server.stop().unwrap();
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
