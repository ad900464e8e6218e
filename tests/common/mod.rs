//! Test support shared by the integration tests: broker URL, unique queues that clean up after
//! themselves, a TCP proxy that can cut connections, and closing one named connection with
//! `rabbitmqctl`. Every test talks to the real broker.

#![allow(dead_code)] // each test binary uses a different subset

pub mod cluster;
pub mod load;
pub mod proxy;
// `fib-rpc` as a process: only where the binary is built.
#[cfg(feature = "cli")]
pub mod serve;

use std::process::Command;
use std::time::{Duration, Instant};

use amiquip::{Connection, QueueDeclareOptions, QueueDeleteOptions};
use fib_rpc::{ClientOptions, FibonacciHandler, FibonacciRpcClient, RpcServer, ServerOptions};

/// The broker the tests use: `AMQP_URL`, or the local default.
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| fib_rpc::DEFAULT_URL.to_owned())
}

/// A queue name no other test or run uses. The queue is deleted when the guard drops, so runs
/// leave the broker as they found it.
pub struct TestQueue {
    pub name: String,
}

impl TestQueue {
    pub fn new(purpose: &str) -> TestQueue {
        TestQueue {
            name: format!("fib-rpc-test-{purpose}-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// Declares the queue as a plain classic queue (for tests that need it to exist without a
    /// server).
    pub fn declare_classic(&self) {
        let mut connection = admin_connection();
        let channel = connection.open_channel(None).unwrap();
        channel
            .queue_declare(self.name.as_str(), QueueDeclareOptions::default())
            .unwrap();
        connection.close().unwrap();
    }

    /// Number of ready messages in the queue.
    pub fn message_count(&self) -> u32 {
        let mut connection = admin_connection();
        let channel = connection.open_channel(None).unwrap();
        let queue = channel.queue_declare_passive(self.name.as_str()).unwrap();
        let count = queue.declared_message_count().unwrap();
        connection.close().unwrap();
        count
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        if let Ok(mut connection) = Connection::insecure_open(&amqp_url()) {
            if let Ok(channel) = connection.open_channel(None) {
                let _ = channel.queue_delete(self.name.as_str(), QueueDeleteOptions::default());
            }
            let _ = connection.close();
        }
    }
}

/// A plain amiquip connection for test set-up and inspection.
pub fn admin_connection() -> Connection {
    Connection::insecure_open(&amqp_url())
        .expect("broker must be running (scripts/ensure-rabbitmq.sh)")
}

/// The reply side of a hand-made client: an exclusive, server-named queue on `channel` and a
/// no-ack consumer of it. Returns the queue's name (for `reply_to`) and the consumer; hand the
/// consumer to [`cancel_consumer`] before closing the connection.
pub fn reply_consumer(channel: &amiquip::Channel) -> (String, amiquip::Consumer<'_>) {
    let options = QueueDeclareOptions {
        exclusive: true,
        ..QueueDeclareOptions::default()
    };
    let queue = channel.queue_declare("", options).unwrap();
    let consumer = queue
        .consume(amiquip::ConsumerOptions {
            no_ack: true,
            ..amiquip::ConsumerOptions::default()
        })
        .unwrap();
    (queue.name().to_owned(), consumer)
}

/// Cancels a test's own consumer and waits until amiquip has seen the cancel through, then
/// drops it. Dropping a consumer straight away races amiquip's I/O thread: if the consumer is
/// gone before that thread reports `ClientCancelled` to it, the thread dies with
/// `EventLoopClientDropped` and the connection's `close` fails.
pub fn cancel_consumer(consumer: amiquip::Consumer<'_>) {
    consumer.cancel().expect("cancel the consumer");
    loop {
        match consumer.receiver().recv_timeout(Duration::from_secs(5)) {
            Ok(amiquip::ConsumerMessage::Delivery(_)) => continue,
            Ok(amiquip::ConsumerMessage::ClientCancelled) => return,
            other => panic!("expected the consumer to end with ClientCancelled, got {other:?}"),
        }
    }
}

/// Starts a Fibonacci server on `queue` with two workers.
pub fn fib_server(queue: &str) -> RpcServer {
    RpcServer::start(
        &amqp_url(),
        ServerOptions::default().queue(queue).workers(2),
        FibonacciHandler::default(),
    )
    .expect("server starts")
}

/// A Fibonacci client for `queue` with default options.
pub fn fib_client(queue: &str) -> FibonacciRpcClient {
    FibonacciRpcClient::connect_with(&amqp_url(), ClientOptions::default().queue(queue))
        .expect("client connects")
}

/// A fresh, unique connection name so a test can find exactly its own connection.
pub fn unique_connection_name(purpose: &str) -> String {
    format!("fib-rpc-test-{purpose}-{}", uuid::Uuid::new_v4().simple())
}

/// Closes, from the broker's side, the one connection whose `information` client property is
/// `name` (never any other), retrying briefly until it is listed. Returns when rabbitmqctl has
/// closed it.
pub fn broker_close_connection(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = Command::new("rabbitmqctl")
            .args(["-q", "list_connections", "pid", "client_properties"])
            .output()
            .expect("rabbitmqctl runs");
        let text = String::from_utf8_lossy(&listed.stdout);
        let pid = text
            .lines()
            .find(|line| line.contains(name))
            .and_then(|line| line.split_whitespace().next())
            .map(str::to_owned);
        if let Some(pid) = pid {
            let status = Command::new("rabbitmqctl")
                .args(["-q", "close_connection", &pid, "closed by fib-rpc test"])
                .status()
                .expect("rabbitmqctl runs");
            assert!(status.success(), "rabbitmqctl close_connection failed");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "connection {name} not listed by rabbitmqctl: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls `check` every 20 ms until it is true or `within` passes.
pub fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A request as a [`hand_written_server`] sees it, with a way to answer it.
pub struct RawRequest<'a> {
    pub correlation_id: String,
    reply_to: String,
    channel: &'a amiquip::Channel,
}

impl RawRequest<'_> {
    /// Publishes `body` to the request's `reply_to` under `correlation_id` (which may be any
    /// id, to send foreign replies).
    pub fn reply(&self, body: &[u8], correlation_id: &str) {
        let properties =
            amiquip::AmqpProperties::default().with_correlation_id(correlation_id.to_owned());
        self.channel
            .basic_publish(
                "",
                amiquip::Publish::with_properties(body, self.reply_to.clone(), properties),
            )
            .unwrap();
    }
}

/// A server written by hand for replies our own server would never send (duplicates, foreign
/// ids, late answers): it takes `requests` requests from `queue` and hands each to `respond`
/// with its index. Returns once it is consuming; join the handle to wait for it to finish.
pub fn hand_written_server<F>(
    queue: &str,
    requests: usize,
    mut respond: F,
) -> std::thread::JoinHandle<()>
where
    F: FnMut(usize, &RawRequest<'_>) + Send + 'static,
{
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(0);
    let queue = queue.to_owned();
    let handle = std::thread::spawn(move || {
        let mut connection = admin_connection();
        let channel = connection.open_channel(None).unwrap();
        let options = amiquip::ConsumerOptions {
            no_ack: true,
            ..Default::default()
        };
        let consumer = channel.basic_consume(queue.as_str(), options).unwrap();
        ready_tx.send(()).unwrap();
        for index in 0..requests {
            let Ok(amiquip::ConsumerMessage::Delivery(delivery)) = consumer.receiver().recv()
            else {
                panic!("expected request {index}");
            };
            let request = RawRequest {
                correlation_id: delivery.properties.correlation_id().clone().unwrap(),
                reply_to: delivery.properties.reply_to().clone().unwrap(),
                channel: &channel,
            };
            respond(index, &request);
        }
        cancel_consumer(consumer);
        connection
            .close()
            .expect("the hand-written server closes cleanly");
    });
    ready_rx.recv().unwrap();
    handle
}

/// A byte-level client for `queue` with default options.
pub fn raw_client(queue: &str) -> fib_rpc::RpcClient {
    fib_rpc::RpcClient::connect_with(&amqp_url(), fib_rpc::ClientOptions::default().queue(queue))
        .expect("client connects")
}

/// A server that echoes each request after `delay`, counting requests as it starts on them.
pub fn echo_server(
    options: ServerOptions,
    delay: Duration,
) -> (RpcServer, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let started = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&started);
    let server = RpcServer::start(
        &amqp_url(),
        options,
        move |request: &fib_rpc::Request| -> Result<Vec<u8>, fib_rpc::RemoteError> {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(delay);
            Ok(request.body().to_vec())
        },
    )
    .expect("server starts");
    (server, started)
}

/// Messages delivered to consumers of `queue` and not yet acknowledged, as the broker counts
/// them (`rabbitmqctl list_queues`). Panics if the broker does not list the queue, so a check
/// of "none left" cannot pass by not looking.
pub fn unacknowledged_count(queue: &str) -> u32 {
    let listed = Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name", "messages_unacknowledged"])
        .output()
        .expect("rabbitmqctl runs");
    assert!(listed.status.success(), "rabbitmqctl list_queues failed");
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .find(|(name, _)| *name == queue)
        .and_then(|(_, count)| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("rabbitmqctl does not list queue {queue:?}"))
}
