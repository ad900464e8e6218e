//! A service that calls another service and passes its caller's deadline on.
//!
//! ```text
//! cargo run --example deadline_relay    # AMQP_URL overrides the local broker
//! ```
//!
//! Two servers run here: the Fibonacci service, and a `digits` service whose handler asks the
//! Fibonacci service for fib(n) and answers how many digits it has. The `digits` handler calls
//! upstream with `req.deadline()`, the deadline its own caller sent, so a caller that gives up
//! after 50 ms does not leave an upstream call running for the default 30 s. Both services
//! use their own queues (`deadline_relay_fib`, `deadline_relay_digits`, reused by later runs)
//! and stop when the example ends.

use std::time::{Duration, Instant};

use fib_rpc::{
    ClientOptions, Error, FibonacciHandler, FibonacciRpcClient, RemoteError, Request, RpcClient,
    RpcServer, ServerOptions,
};

fn main() -> Result<(), Error> {
    let url = std::env::var("AMQP_URL").unwrap_or_else(|_| fib_rpc::DEFAULT_URL.to_owned());
    let fib_queue = "deadline_relay_fib";
    let digits_queue = "deadline_relay_digits";

    let fib_server = RpcServer::start(
        &url,
        ServerOptions::default().queue(fib_queue).workers(2),
        FibonacciHandler::new(10_000_000),
    )?;

    let upstream =
        FibonacciRpcClient::connect_with(&url, ClientOptions::default().queue(fib_queue))?;
    let digits_server = RpcServer::start(
        &url,
        ServerOptions::default().queue(digits_queue).workers(2),
        move |req: &Request| -> Result<Vec<u8>, RemoteError> {
            let n = fib_rpc::parse_n(req.body(), 10_000_000)?;
            // Our caller's deadline is upstream's too; callers that sent none get 10 s.
            let deadline = req
                .deadline()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(10));
            match upstream.call_decimal_deadline(n, deadline) {
                Ok(digits) => Ok(digits.len().to_string().into_bytes()),
                Err(Error::Timeout { .. }) => Err(RemoteError::internal(
                    "the Fibonacci service did not answer before our caller's deadline",
                )),
                Err(err) => Err(RemoteError::internal(format!("Fibonacci service: {err}"))),
            }
        },
    )?;

    let client = RpcClient::connect_with(&url, ClientOptions::default().queue(digits_queue))?;
    for n in [10u64, 1000, 1_000_000] {
        let answer = client.call_timeout(n.to_string().as_bytes(), Duration::from_secs(5))?;
        println!("fib({n}) has {} digits", String::from_utf8_lossy(&answer));
    }
    // fib(10^7) takes a few hundred milliseconds; a caller that waits 50 ms gives up, and so
    // does the upstream call made on its behalf.
    let started = Instant::now();
    match client.call_timeout(b"10000000", Duration::from_millis(50)) {
        Err(Error::Timeout { waited, .. }) => println!(
            "fib(10000000) with a 50 ms deadline: timed out after {:.0} ms, as it should",
            waited.as_secs_f64() * 1000.0
        ),
        other => println!("fib(10000000) with a 50 ms deadline: {other:?}"),
    }
    println!(
        "(asked in {:.0} ms)",
        started.elapsed().as_secs_f64() * 1000.0
    );

    client.close();
    digits_server.stop()?;
    fib_server.stop()
}
