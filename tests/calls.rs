//! Calls from the client's side against the real broker: exact results, many threads on one
//! client, foreign, duplicate and late replies, timeouts and deadlines, `send` (pipelining,
//! collecting late, dropping), closing the client, stats, and options refused up front.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use common::proxy::TcpProxy;
use common::{amqp_url, eventually, fib_client, fib_server, TestQueue};
use fib_rpc::fib;
use fib_rpc::{
    ClientOptions, Error, FibonacciRpcClient, NoServerReason, RemoteError, ReplyTo, Request,
    RpcClient, RpcServer, ServerOptions,
};
use num_bigint::BigUint;

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

/// Replies are taken off the consumer by a caller waiting alone and by the reader thread when
/// several wait (see the client's `replies` module). Every mix must hand each caller exactly
/// its own reply, with either kind of reply queue: callers that pipeline (`send` many, then
/// `wait` in an order of their own), callers that wait one at a time, and both at once.
#[test]
fn every_mix_of_waiting_callers_gets_its_own_replies() {
    for reply_to in [ReplyTo::ExclusiveQueue, ReplyTo::Direct] {
        let queue = TestQueue::new("mixes");
        let _server = fib_server(&queue.name);
        let client = FibonacciRpcClient::connect_with(
            &amqp_url(),
            ClientOptions::default()
                .queue(&queue.name)
                .reply_to(reply_to),
        )
        .unwrap();
        // Alone: one caller, then a pipeline collected backwards.
        assert_eq!(client.call(25).unwrap(), fib(25));
        let deadline = Instant::now() + Duration::from_secs(10);
        let pending: Vec<_> = (0..20u64)
            .map(|n| client.send(n, deadline).unwrap())
            .collect();
        for (n, call) in pending.into_iter().enumerate().rev() {
            assert_eq!(
                call.wait().unwrap(),
                fib(n as u64),
                "{reply_to:?}: fib({n})"
            );
        }
        // Together: sequential callers beside pipelining ones.
        std::thread::scope(|scope| {
            for thread in 0..8u64 {
                let client = &client;
                scope.spawn(move || {
                    for round in 0..30u64 {
                        let n = 100 * thread + round;
                        if thread % 2 == 0 {
                            assert_eq!(client.call(n).unwrap(), fib(n), "{reply_to:?}");
                            continue;
                        }
                        let deadline = Instant::now() + Duration::from_secs(10);
                        let calls: Vec<_> = (n..n + 3)
                            .map(|n| client.send(n, deadline).unwrap())
                            .collect();
                        for (n, call) in (n..n + 3).zip(calls).collect::<Vec<_>>().into_iter().rev()
                        {
                            assert_eq!(call.wait().unwrap(), fib(n), "{reply_to:?}");
                        }
                    }
                });
            }
        });
        let stats = client.rpc().stats();
        assert_eq!(stats.calls, 1 + 20 + 4 * 30 + 4 * 30 * 3, "{reply_to:?}");
        assert_eq!(
            (stats.ok, stats.discarded_replies),
            (stats.calls, 0),
            "{reply_to:?}"
        );
    }
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
        matches!(
            &err,
            Error::NoServer { queue: q, reason: NoServerReason::NoQueue } if *q == queue.name
        ),
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
                        Err(Error::Timeout { .. } | Error::Unconfirmed { .. }) => {}
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
    let client = RpcClient::connect_with(
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
    let client = RpcClient::connect_with(
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
        |_: &Request| -> Result<Vec<u8>, RemoteError> { Ok(b"twelve".to_vec()) },
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

/// A caller told `Closed` must not have its request sent later, even if a connection comes
/// up while the client is closing.
#[test]
fn a_call_failed_by_close_is_never_sent() {
    let queue = TestQueue::new("closed-unsent");
    queue.declare_classic();
    let proxy = TcpProxy::to_broker();
    proxy.stall(); // connecting hangs in the handshake
    let client = RpcClient::connect_with(
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

#[test]
fn options_that_would_remove_a_bound_are_refused() {
    let url = amqp_url();
    let refused = |result: Result<(), Error>| matches!(result, Err(Error::InvalidArgument(_)));
    assert!(refused(
        RpcClient::connect_with(&url, ClientOptions::default().heartbeat(0)).map(drop)
    ));
    assert!(refused(
        RpcClient::connect_with(&url, ClientOptions::default().queue("")).map(drop)
    ));
    assert!(refused(
        RpcClient::connect_with(&url, ClientOptions::default().timeout(Duration::ZERO)).map(drop)
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
fn queue_names_the_broker_would_refuse_are_refused_up_front() {
    let long = "q".repeat(256);
    for queue in ["", long.as_str()] {
        let client = RpcClient::connect_with(&amqp_url(), ClientOptions::default().queue(queue));
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
