//! Many threads, one client: 64 threads share one `FibonacciRpcClient` and check every answer.
//!
//! ```text
//! cargo run --release --example rpc_server &
//! cargo run --release --example many_callers   # AMQP_URL overrides the local broker
//! ```
//!
//! The client is `Send + Sync`; each call waits only for its own reply, matched by
//! `correlation_id` on the client's one reader thread.

use std::time::Instant;

use fib_rpc::fib;
use fib_rpc::FibonacciRpcClient;

const THREADS: u64 = 64;
const CALLS_PER_THREAD: u64 = 200;

fn main() -> Result<(), fib_rpc::Error> {
    let url = std::env::var("AMQP_URL").unwrap_or_else(|_| fib_rpc::DEFAULT_URL.to_owned());
    let client = FibonacciRpcClient::connect(&url)?;
    let started = Instant::now();
    std::thread::scope(|scope| -> Result<(), fib_rpc::Error> {
        let threads: Vec<_> = (0..THREADS)
            .map(|thread| {
                let client = &client;
                scope.spawn(move || -> Result<(), fib_rpc::Error> {
                    for call in 0..CALLS_PER_THREAD {
                        let n = (thread * CALLS_PER_THREAD + call) % 500;
                        let value = client.call(n)?;
                        assert_eq!(value, fib(n), "wrong answer for fib({n})");
                    }
                    Ok(())
                })
            })
            .collect();
        threads
            .into_iter()
            .try_for_each(|thread| thread.join().expect("caller thread panicked"))
    })?;
    let elapsed = started.elapsed();
    let calls = THREADS * CALLS_PER_THREAD;
    println!(
        "{calls} calls from {THREADS} threads in {:.2} s: {:.0} calls/s, all answers checked",
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64()
    );
    println!("client stats: {:?}", client.rpc().stats());
    Ok(())
}
