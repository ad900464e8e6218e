//! Publisher confirms and retries against the real broker: a request the broker refuses fails
//! at once (or goes again, if idempotent, and succeeds once the broker takes it); a reply the
//! broker refuses sends its request back to the queue instead of losing it; an idempotent call
//! whose connection is cut mid-call is answered on the next connection.
//!
//! The broker refuses messages on purpose here: a queue with `x-max-length` and
//! `x-overflow = reject-publish` nacks every publish once it is full.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use amiquip::{AmqpValue, FieldTable, Publish, QueueDeclareOptions};
use common::proxy::TcpProxy;
use common::{admin_connection, amqp_url, eventually, unique_connection_name, TestQueue};
use fib_rpc::{
    CallOptions, ClientOptions, Error, FibonacciHandler, FibonacciRpcClient, RpcClient, RpcServer,
    ServerOptions,
};

/// Declares `name` as a classic queue that refuses publishes beyond `max_length` messages.
fn declare_bounded(channel: &amiquip::Channel, name: &str, max_length: i32) {
    let mut arguments = FieldTable::new();
    arguments.insert("x-max-length".into(), AmqpValue::LongInt(max_length));
    arguments.insert(
        "x-overflow".into(),
        AmqpValue::LongString("reject-publish".into()),
    );
    channel
        .queue_declare(
            name,
            QueueDeclareOptions {
                arguments,
                ..QueueDeclareOptions::default()
            },
        )
        .unwrap();
}

/// Fills the one slot of a `max_length` 1 queue with a message no server answers (no
/// `reply_to`: a server drops it), and waits until the queue holds it.
fn fill(channel: &amiquip::Channel, queue: &str) {
    channel
        .basic_publish("", Publish::new(b"blocker", queue.to_owned()))
        .unwrap();
    let full = eventually(Duration::from_secs(5), || {
        let declared = channel.queue_declare_passive(queue).unwrap();
        declared.declared_message_count() == Some(1)
    });
    assert!(full, "the blocker is in {queue}");
}

/// A queue that holds one message and refuses every publish beyond it, already full: the
/// queue, and the admin connection that made it (close it at the end).
fn full_queue(purpose: &str) -> (TestQueue, amiquip::Connection) {
    let queue = TestQueue::new(purpose);
    let mut admin = admin_connection();
    let channel = admin.open_channel(None).unwrap();
    declare_bounded(&channel, &queue.name, 1);
    fill(&channel, &queue.name);
    (queue, admin)
}

fn client(queue: &TestQueue) -> ClientOptions {
    ClientOptions::default()
        .queue(queue.name.as_str())
        .connection_name(unique_connection_name("confirms-client"))
}

#[test]
fn a_refused_request_fails_at_once_with_its_own_error() {
    let (queue, admin) = full_queue("confirms-refused");

    let client = RpcClient::connect_with(&amqp_url(), client(&queue)).unwrap();
    let started = Instant::now();
    let err = client
        .call_with(b"10", CallOptions::new().timeout(Duration::from_secs(10)))
        .unwrap_err();
    assert!(
        matches!(&err, Error::RequestRefused { queue: q } if *q == queue.name),
        "{err:?}"
    );
    assert!(err.request_unsent() && err.is_transient());
    assert!(started.elapsed() < Duration::from_secs(2), "not at once");
    let stats = client.stats();
    assert_eq!((stats.refusals, stats.retries), (1, 0), "{stats:?}");
    client.close();
    admin.close().unwrap();
}

/// A caller waiting alone publishes and takes its reply without the client's reader thread,
/// and the request's confirm does not wake the reader either; the caller wakes it once the
/// reply is a few milliseconds late. So a refusal still ends the call within milliseconds, not
/// at the reader's next periodic sweep (half a second after connecting, for a new client).
#[test]
fn a_lone_callers_refusal_is_noticed_within_milliseconds() {
    let (queue, admin) = full_queue("confirms-refused-lone");
    for _ in 0..3 {
        let client = RpcClient::connect_with(&amqp_url(), client(&queue)).unwrap();
        let started = Instant::now();
        let err = client
            .call_timeout(b"10", Duration::from_secs(10))
            .unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, Error::RequestRefused { .. }), "{err:?}");
        assert!(took < Duration::from_millis(200), "noticed after {took:?}");
        client.close();
    }
    admin.close().unwrap();
}

/// A call nobody answers, with a deadline shorter than the reader's periodic sweep, still
/// learns before its deadline that the broker took its request: it times out (`Timeout`), not
/// `Unconfirmed`.
#[test]
fn a_lone_callers_timeout_knows_the_broker_took_its_request() {
    let queue = TestQueue::new("confirms-timeout-lone");
    queue.declare_classic();
    let client = RpcClient::connect_with(&amqp_url(), client(&queue)).unwrap();
    let err = client
        .call_timeout(b"10", Duration::from_millis(60))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    client.close();
}

/// An idempotent call keeps going while the broker refuses it, and succeeds once a server
/// makes room: nothing is lost and the caller never sees the refusals.
#[test]
fn an_idempotent_request_goes_again_until_the_broker_takes_it() {
    let (queue, admin) = full_queue("confirms-retried");

    let client = Arc::new(FibonacciRpcClient::connect_with(&amqp_url(), client(&queue)).unwrap());
    let caller = {
        let client = Arc::clone(&client);
        thread::spawn(move || client.call_deadline(30, Instant::now() + Duration::from_secs(20)))
    };
    assert!(
        eventually(Duration::from_secs(5), || client.rpc().stats().refusals
            >= 2),
        "the broker refused the request, and it went again: {:?}",
        client.rpc().stats()
    );
    // A server takes the blocker (and drops it: no reply_to), making room.
    let server = RpcServer::start(
        &amqp_url(),
        ServerOptions::default()
            .queue(queue.name.as_str())
            .workers(1),
        FibonacciHandler::default(),
    )
    .unwrap();
    let answer = caller
        .join()
        .unwrap()
        .expect("answered once there was room");
    assert_eq!(answer, 832_040u32.into());
    let stats = client.rpc().stats();
    assert!(
        stats.retries >= 2 && stats.retries == stats.refusals,
        "{stats:?}"
    );
    assert_eq!((stats.ok, stats.calls), (1, 1), "{stats:?}");
    assert_eq!(server.stats().no_reply_to, 1, "{:?}", server.stats());
    server.stop().unwrap();
    client.close();
    admin.close().unwrap();
}

/// Refused to the end: an idempotent call still ends by its deadline, with the refusal.
#[test]
fn an_idempotent_request_refused_until_its_deadline_says_so() {
    let (queue, admin) = full_queue("confirms-refused-to-the-end");

    let client = RpcClient::connect_with(&amqp_url(), client(&queue).idempotent(true)).unwrap();
    let started = Instant::now();
    let err = client
        .call_with(
            b"10",
            CallOptions::new().timeout(Duration::from_millis(800)),
        )
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, Error::RequestRefused { .. }), "{err:?}");
    assert!(
        took <= Duration::from_millis(900),
        "outlived its deadline: {took:?}"
    );
    let stats = client.stats();
    assert!(stats.retries >= 2, "{stats:?}");
    client.close();
    admin.close().unwrap();
}

/// A reply the broker refuses (its reply queue is full) is not lost silently: the request goes
/// back to the queue and is answered again. A reply refused every time cannot send it round
/// forever: after three refusals it is dropped as poison, and nothing is left behind.
#[test]
fn a_refused_reply_sends_its_request_back_a_bounded_number_of_times() {
    let queue = TestQueue::new("confirms-reply-refused");
    let replies = TestQueue::new("confirms-replies");
    let server = RpcServer::start(
        &amqp_url(),
        ServerOptions::default()
            .queue(queue.name.as_str())
            .workers(1)
            .connection_name(unique_connection_name("confirms-server")),
        FibonacciHandler::default(),
    )
    .unwrap();
    let mut admin = admin_connection();
    let channel = admin.open_channel(None).unwrap();
    declare_bounded(&channel, &replies.name, 1);
    fill(&channel, &replies.name);
    let properties = amiquip::AmqpProperties::default()
        .with_reply_to(replies.name.clone())
        .with_correlation_id("refused-reply".into());
    channel
        .basic_publish(
            "",
            Publish::with_properties(b"12", queue.name.clone(), properties),
        )
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || server.stats().poison == 1),
        "the request came back after each refused reply, then was dropped: {:?}",
        server.stats()
    );
    let stats = server.stats();
    assert_eq!((stats.received, stats.replied), (4, 3), "{stats:?}");
    // Nothing left behind: the request was acked when it was dropped.
    assert!(eventually(Duration::from_secs(5), || queue.message_count()
        == 0
        && common::unacknowledged_count(&queue.name) == 0));
    // And the reply queue holds only its blocker: every reply was refused.
    assert_eq!(replies.message_count(), 1);
    server.stop().unwrap();
    admin.close().unwrap();
}

/// An idempotent call whose connection is cut while the server works on it is sent again, with
/// the same correlation id, on the next connection, and answered; a non-idempotent one fails
/// with `ConnectionLost`, as before.
#[test]
fn an_idempotent_call_cut_mid_call_is_answered_on_the_next_connection() {
    let queue = TestQueue::new("confirms-cut");
    let (server, started) = common::echo_server(
        ServerOptions::default()
            .queue(queue.name.as_str())
            .workers(2),
        Duration::from_millis(300),
    );
    let proxy = TcpProxy::to_broker();
    let client = Arc::new(
        RpcClient::connect_with(
            &proxy.url(),
            client(&queue).reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200)),
        )
        .unwrap(),
    );
    for idempotent in [true, false] {
        let before = started.load(std::sync::atomic::Ordering::SeqCst);
        let caller = {
            let client = Arc::clone(&client);
            thread::spawn(move || {
                client.call_with(
                    b"echo",
                    CallOptions::new()
                        .timeout(Duration::from_secs(10))
                        .idempotent(idempotent),
                )
            })
        };
        assert!(eventually(Duration::from_secs(5), || {
            started.load(std::sync::atomic::Ordering::SeqCst) > before
        }));
        proxy.cut();
        let result = caller.join().unwrap();
        if idempotent {
            assert_eq!(result.expect("answered after the cut"), b"echo");
            assert_eq!(client.stats().retries, 1, "{:?}", client.stats());
        } else {
            assert!(
                matches!(result, Err(Error::ConnectionLost { .. })),
                "{result:?}"
            );
        }
        assert!(eventually(Duration::from_secs(5), || client.is_connected()));
    }
    client.close();
    server.stop().unwrap();
}

/// An idempotent call whose request went out before its connection was lost, and that could
/// not be sent again before its deadline (the broker stayed unreachable), must not claim it
/// was never sent: a server may have run it.
#[test]
fn a_call_sent_before_a_loss_never_claims_it_was_not_sent() {
    let queue = TestQueue::new("confirms-maybe-run");
    let (server, started) = common::echo_server(
        ServerOptions::default()
            .queue(queue.name.as_str())
            .workers(1),
        Duration::from_millis(300),
    );
    let proxy = TcpProxy::to_broker();
    let client = RpcClient::connect_with(
        &proxy.url(),
        client(&queue)
            .idempotent(true)
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200)),
    )
    .unwrap();
    thread::scope(|scope| {
        let call = scope.spawn(|| {
            client.call_with(b"echo", CallOptions::new().timeout(Duration::from_secs(2)))
        });
        assert!(eventually(Duration::from_secs(5), || {
            started.load(std::sync::atomic::Ordering::SeqCst) == 1
        }));
        proxy.refuse(true);
        proxy.cut();
        let err = call.join().unwrap().unwrap_err();
        assert!(matches!(err, Error::ConnectionLost { .. }), "{err:?}");
        assert!(!err.request_unsent(), "{err:?}");
    });
    proxy.refuse(false);
    client.close();
    server.stop().unwrap();
}
