//! The tutorial's `rpc_client.py`, in Rust: asks the server for fib(30).
//!
//! ```text
//! cargo run --example rpc_client        # AMQP_URL overrides the local broker
//! ```
//!
//! Prints ` [x] Requesting fib(30)` and ` [.] Got 832040`. Where the tutorial would wait forever
//! with no server running, this fails at once with "no server" (no `rpc_queue`) or after the
//! 30 s default timeout (queue present, nobody serving).

use fib_rpc::FibonacciRpcClient;

fn main() -> Result<(), fib_rpc::Error> {
    let url = std::env::var("AMQP_URL").unwrap_or_else(|_| fib_rpc::DEFAULT_URL.to_owned());
    let fibonacci_rpc = FibonacciRpcClient::connect(&url)?;
    println!(" [x] Requesting fib(30)");
    let response = fibonacci_rpc.call(30)?;
    println!(" [.] Got {response}");
    Ok(())
}
