//! A closed client ends its AMQP connection cleanly, every time.
//!
//! Its own test binary because it installs a process-wide logger: the reader thread reports a
//! failed connection close only in a debug log line. That failure used to come from a race in
//! amiquip (a consumer dropped before its I/O thread reported the cancel to it): 4 of 1,000
//! closes one after another, and 69 to 80 of the 1,000 closes here, from four threads at once.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use common::{amqp_url, TestQueue};
use fib_rpc::{ClientOptions, FibonacciRpcClient, ReplyTo};

const CLOSES: usize = 1_000;
const THREADS: usize = 4;

/// Keeps the client's warnings, and its debug lines about failing to close or cancel. Also
/// counts the line each connection logs, so that reworded logs cannot make the test pass
/// unseen.
struct UncleanCloses {
    count: AtomicUsize,
    first: Mutex<Option<String>>,
    connected: AtomicUsize,
}

impl log::Log for UncleanCloses {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("fib_rpc")
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        if message.contains("replies come to") {
            self.connected.fetch_add(1, Ordering::SeqCst);
        }
        let unclean = record.level() <= log::Level::Warn
            || message.contains("closing the connection")
            || message.contains("cancelling the reply consumer");
        if unclean {
            self.count.fetch_add(1, Ordering::SeqCst);
            self.first
                .lock()
                .unwrap()
                .get_or_insert_with(|| format!("{}: {message}", record.level()));
        }
    }

    fn flush(&self) {}
}

static LOGGER: UncleanCloses = UncleanCloses {
    count: AtomicUsize::new(0),
    first: Mutex::new(None),
    connected: AtomicUsize::new(0),
};

#[test]
fn every_close_ends_the_connection_cleanly() {
    log::set_logger(&LOGGER).expect("the only logger in this binary");
    log::set_max_level(log::LevelFilter::Debug);
    let queue = TestQueue::new("clean-close");
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let queue = &queue.name;
            scope.spawn(move || {
                for close in 0..CLOSES / THREADS {
                    // Both reply paths: a reply queue and direct reply-to's pseudo-queue.
                    let reply_to = if (thread + close) % 2 == 0 {
                        ReplyTo::ExclusiveQueue
                    } else {
                        ReplyTo::Direct
                    };
                    let options = ClientOptions::default()
                        .queue(queue.as_str())
                        .reply_to(reply_to);
                    FibonacciRpcClient::connect_with(&amqp_url(), options)
                        .expect("client connects")
                        .close();
                }
            });
        }
    });
    assert_eq!(
        LOGGER.connected.load(Ordering::SeqCst),
        CLOSES,
        "the client's debug log no longer says \"replies come to\" once per connection"
    );
    let unclean = LOGGER.count.load(Ordering::SeqCst);
    assert_eq!(
        unclean,
        0,
        "{unclean} of {CLOSES} closes were not clean; the first: {:?}",
        LOGGER.first.lock().unwrap()
    );
}
