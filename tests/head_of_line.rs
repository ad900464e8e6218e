//! Head-of-line blocking: a slow request must not hold up fast ones while another worker of
//! the same server is idle.

mod common;

use std::time::{Duration, Instant};

use common::{amqp_url, TestQueue};
use fib_rpc::{Handler, RemoteError, Request, RpcServer, ServerOptions};

/// Sleeps 2 s on the body `slow`, answers everything else at once (echoing it).
struct SlowOnce;

impl Handler for SlowOnce {
    fn handle(&self, request: &Request) -> Result<Vec<u8>, RemoteError> {
        if request.body() == b"slow" {
            std::thread::sleep(Duration::from_secs(2));
        }
        Ok(request.body().to_vec())
    }
}

#[test]
fn a_slow_request_does_not_hold_up_fast_ones_while_a_worker_is_idle() {
    let queue = TestQueue::new("head-of-line");
    // Two workers, the default prefetch.
    let server = RpcServer::start(
        &amqp_url(),
        ServerOptions::default().queue(&queue.name).workers(2),
        SlowOnce,
    )
    .unwrap();
    let client = common::raw_client(&queue.name);
    let slow = client
        .send(b"slow", Instant::now() + Duration::from_secs(10))
        .unwrap();
    // Let the slow request reach a worker first.
    std::thread::sleep(Duration::from_millis(100));
    let mut failed = Vec::new();
    for i in 0..10 {
        let body = format!("fast-{i}");
        match client.call_timeout(body.as_bytes(), Duration::from_secs(1)) {
            Ok(reply) => assert_eq!(reply, body.as_bytes()),
            Err(err) => failed.push(format!("{body}: {err}")),
        }
    }
    assert!(failed.is_empty(), "fast calls held up: {failed:?}");
    assert_eq!(slow.wait().unwrap(), b"slow");
    drop(client);
    server.stop().unwrap();
    assert_eq!(queue.message_count(), 0, "every request was acked");
}

/// Tracks which requests run at once: a redelivered request must run alone.
#[derive(Default, Clone)]
struct Overlaps {
    // Running now, whether a redelivered one is among them, and the overlaps seen.
    state: std::sync::Arc<std::sync::Mutex<(usize, bool, Vec<String>)>>,
}

impl Handler for Overlaps {
    fn handle(&self, request: &Request) -> Result<Vec<u8>, RemoteError> {
        let body = String::from_utf8_lossy(request.body()).into_owned();
        {
            let mut state = self.state.lock().unwrap();
            if state.1 || (request.redelivered() && state.0 > 0) {
                state.2.push(body.clone());
            }
            state.0 += 1;
            state.1 |= request.redelivered();
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut state = self.state.lock().unwrap();
        state.0 -= 1;
        if request.redelivered() {
            state.1 = false;
        }
        Ok(request.body().to_vec())
    }
}

#[test]
fn a_redelivered_request_runs_alone_among_several_workers() {
    let queue = TestQueue::new("redelivered-alone");
    queue.declare_classic();
    let client = common::raw_client(&queue.name);
    let deadline = Instant::now() + Duration::from_secs(20);
    let redo = client.send(b"redo", deadline).unwrap();
    // It comes back redelivered, ahead of the requests sent meanwhile.
    let others: Vec<_> = hold_one_then_release(&queue.name, || {
        (0..8)
            .map(|i| client.send(format!("n-{i}").as_bytes(), deadline).unwrap())
            .collect()
    });
    let overlaps = Overlaps::default();
    let server = RpcServer::start(
        &amqp_url(),
        ServerOptions::default().queue(&queue.name).workers(2),
        overlaps.clone(),
    )
    .unwrap();
    assert_eq!(redo.wait().unwrap(), b"redo");
    for (i, reply) in others.into_iter().enumerate() {
        assert_eq!(reply.wait().unwrap(), format!("n-{i}").as_bytes());
    }
    let state = overlaps.state.lock().unwrap();
    assert!(
        state.2.is_empty(),
        "ran alongside the redelivered one: {:?}",
        state.2
    );
    drop(state);
    server.stop().unwrap();
    assert_eq!(queue.message_count(), 0, "every request was acked");
}

/// Sleeps 7 s on the body `slow` and counts how often it ran; answers everything else at once.
#[derive(Default, Clone)]
struct SlowRuns {
    slow_runs: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Handler for SlowRuns {
    fn handle(&self, request: &Request) -> Result<Vec<u8>, RemoteError> {
        if request.body() == b"slow" {
            self.slow_runs
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(SLOW);
        }
        Ok(request.body().to_vec())
    }
}

const SLOW: Duration = Duration::from_secs(7);

#[test]
fn a_redelivered_request_does_not_wait_out_a_slow_handler_nor_end_the_session() {
    let queue = TestQueue::new("redelivered-beside-slow");
    queue.declare_classic();
    let client = common::raw_client(&queue.name);
    let deadline = Instant::now() + Duration::from_secs(60);
    // `redo` comes back redelivered while the slow request runs.
    let redo = client.send(b"redo", deadline).unwrap();
    let handler = SlowRuns::default();
    let (server, started, slow) = hold_one_then_release(&queue.name, || {
        let server = RpcServer::start(
            &amqp_url(),
            ServerOptions::default().queue(&queue.name).workers(2),
            handler.clone(),
        )
        .unwrap();
        let started = Instant::now();
        let slow = client.send(b"slow", deadline).unwrap();
        assert!(
            common::eventually(Duration::from_secs(5), || handler
                .slow_runs
                .load(std::sync::atomic::Ordering::SeqCst)
                == 1),
            "the slow request did not start"
        );
        (server, started, slow)
    });
    // The redelivered request waits for the slow one a while (bounded), then runs beside it.
    assert_eq!(redo.wait().unwrap(), b"redo");
    let redo_after = started.elapsed();
    assert!(
        redo_after < SLOW,
        "the redelivered request waited out the slow handler: answered after {redo_after:?}"
    );
    assert_eq!(slow.wait().unwrap(), b"slow");
    // The session survived: nothing ran twice, nothing reconnected.
    let stats = server.stats();
    assert_eq!(stats.reconnects, 0, "the session was torn down");
    assert_eq!(
        handler.slow_runs.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the slow request ran twice"
    );
    // And new requests are served normally afterwards.
    assert_eq!(
        client
            .call_timeout(b"after", Duration::from_secs(5))
            .unwrap(),
        b"after"
    );
    drop(client);
    server.stop().unwrap();
    assert_eq!(queue.message_count(), 0, "every request was acked");
}

/// A consumer of `queue` takes its first request and holds it unacked while `meanwhile` runs,
/// then dies without acking it: the request goes back to the queue, redelivered.
fn hold_one_then_release<T>(queue: &str, meanwhile: impl FnOnce() -> T) -> T {
    use amiquip::{ConsumerMessage, ConsumerOptions};
    let mut connection = common::admin_connection();
    let channel = connection.open_channel(None).unwrap();
    channel.qos(0, 1, false).unwrap();
    let consumer = channel
        .basic_consume(queue, ConsumerOptions::default())
        .unwrap();
    let Ok(ConsumerMessage::Delivery(_unacked)) = consumer.receiver().recv() else {
        panic!("expected the request");
    };
    let result = meanwhile();
    common::cancel_consumer(consumer);
    connection.close().unwrap();
    result
}
