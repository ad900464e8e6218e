//! How the server's default prefetch was chosen: for each prefetch window, measure
//!
//! * one caller making sequential fib(10) calls (latency-bound),
//! * 64 callers sharing one client (throughput-bound),
//! * 64 callers against two servers on one queue, one of them slow (5 ms per request, like a
//!   loaded small box): a large window lets the slow server hoard requests that the fast one
//!   would have answered at once, which shows in the p99 latency.
//!
//! ```text
//! cargo run --release --example prefetch_bench [SECONDS_PER_CELL]
//! ```
//!
//! Server and client run in this process against the broker at `AMQP_URL` (default local),
//! on a fresh queue per measurement that is deleted afterwards.

use std::time::{Duration, Instant};

use fib_rpc::{
    ClientOptions, FibonacciHandler, Handler, RemoteError, Request, RpcClient, RpcServer,
    ServerOptions,
};

const CALLERS: usize = 64;

fn main() -> Result<(), fib_rpc::Error> {
    let url = std::env::var("AMQP_URL").unwrap_or_else(|_| fib_rpc::DEFAULT_URL.to_owned());
    let seconds: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("seconds per cell"))
        .unwrap_or(3.0);
    let cell = Duration::from_secs_f64(seconds);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!("server: {workers} workers; {seconds} s per cell; fib(10) requests");
    println!(
        "{:>8} | {:>12} {:>9} | {:>12} {:>9} | {:>17} {:>9}",
        "prefetch", "1 caller/s", "p50 µs", "64 callers/s", "p99 µs", "+slow server: /s", "p99 µs"
    );
    for prefetch in [1u16, 2, 4, 8, 12, 16, 32, 128] {
        let queue = format!("fib-rpc-prefetch-bench-{}", uuid::Uuid::new_v4().simple());
        let options = ServerOptions::default().queue(&queue).prefetch(prefetch);
        let server = RpcServer::start(&url, options.clone(), FibonacciHandler::default())?;
        let client = RpcClient::connect_with(&url, ClientOptions::default().queue(&queue))?;
        let sequential = run(&client, 1, cell);
        let parallel = run(&client, CALLERS, cell);

        let fibonacci = FibonacciHandler::default();
        let slow_server = RpcServer::start(
            &url,
            options,
            move |request: &Request| -> Result<Vec<u8>, RemoteError> {
                std::thread::sleep(Duration::from_millis(5));
                fibonacci.handle(request)
            },
        )?;
        let with_slow = run(&client, CALLERS, cell);
        println!(
            "{prefetch:>8} | {:>12.0} {:>9} | {:>12.0} {:>9} | {:>17.0} {:>9}",
            sequential.calls_per_s,
            sequential.percentile(0.50),
            parallel.calls_per_s,
            parallel.percentile(0.99),
            with_slow.calls_per_s,
            with_slow.percentile(0.99),
        );
        drop(client);
        slow_server.stop()?;
        server.stop()?;
        delete_queue(&url, &queue);
    }
    Ok(())
}

struct Measurement {
    calls_per_s: f64,
    latencies: Vec<Duration>,
}

impl Measurement {
    /// The `p` quantile of call latency, in microseconds.
    fn percentile(&self, p: f64) -> u128 {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[index].as_micros()
    }
}

/// `callers` threads make fib(10) calls through `client` for `cell`.
fn run(client: &RpcClient, callers: usize, cell: Duration) -> Measurement {
    let started = Instant::now();
    let end = started + cell;
    let latencies: Vec<Duration> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..callers)
            .map(|_| {
                scope.spawn(move || {
                    let mut latencies = Vec::new();
                    while Instant::now() < end {
                        let call = Instant::now();
                        client.call(b"10").expect("call succeeds");
                        latencies.push(call.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    Measurement {
        calls_per_s: latencies.len() as f64 / started.elapsed().as_secs_f64(),
        latencies,
    }
}

fn delete_queue(url: &str, queue: &str) {
    if let Ok(mut connection) = amiquip::Connection::insecure_open(url) {
        if let Ok(channel) = connection.open_channel(None) {
            let _ = channel.queue_delete(queue, amiquip::QueueDeleteOptions::default());
        }
        let _ = connection.close();
    }
}
