//! The tutorial's `rpc_server.py`, in Rust: serves fib(n) on `rpc_queue`.
//!
//! ```text
//! cargo run --example rpc_server        # AMQP_URL overrides the local broker
//! ```
//!
//! It prints ` [x] Awaiting RPC requests`, then ` [.] fib(n)` for each request, and runs until
//! interrupted. Unlike the tutorial it computes with fast doubling, serves on several threads,
//! and answers bad requests with an error reply instead of crashing.

use fib_rpc::{FibonacciHandler, Handler, RemoteError, Request, RpcServer, ServerOptions};

fn main() -> Result<(), fib_rpc::Error> {
    let url = std::env::var("AMQP_URL").unwrap_or_else(|_| fib_rpc::DEFAULT_URL.to_owned());
    let fibonacci = FibonacciHandler::default();
    let server = RpcServer::start(
        &url,
        ServerOptions::default(),
        move |request: &Request| -> Result<Vec<u8>, RemoteError> {
            println!(
                " [.] fib({})",
                String::from_utf8_lossy(request.body()).trim()
            );
            fibonacci.handle(request)
        },
    )?;
    println!(" [x] Awaiting RPC requests");
    server.wait()
}
