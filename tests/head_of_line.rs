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
