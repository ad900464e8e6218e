//! Direct reply-to (`ReplyTo::Direct`, RabbitMQ's `amq.rabbitmq.reply-to`) against the real
//! broker: answers, error replies and routing failures as with the exclusive reply queue, and
//! reconnecting after a cut.

mod common;

use std::time::Duration;

use common::proxy::TcpProxy;
use common::{amqp_url, eventually, fib_server, TestQueue};
use fib_rpc::fib;
use fib_rpc::{ClientOptions, Error, ErrorCode, FibonacciRpcClient, ReplyTo};
use num_bigint::BigUint;

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
