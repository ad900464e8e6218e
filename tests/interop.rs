//! Wire compatibility with RabbitMQ tutorial six's Python programs (pika), unchanged in
//! protocol: a tutorial-style Python client against our server, and our client against a
//! tutorial-style Python server.
//!
//! The Python peers live in `tests/python/`. `scripts/test.sh` makes a virtualenv with pika and
//! sets `FIB_RPC_PYTHON` to its interpreter. Without `FIB_RPC_PYTHON` these tests fail (they
//! never skip): a missing peer must not look like a passing interop test.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{amqp_url, fib_server, TestQueue};
use fib_rpc::fib;
use fib_rpc::{ClientOptions, Error, ErrorCode, FibonacciRpcClient, RpcClient};

/// The Python interpreter with pika, from `FIB_RPC_PYTHON`; fails the test when it is not set.
fn python() -> String {
    match std::env::var("FIB_RPC_PYTHON") {
        Ok(python) if !python.is_empty() => python,
        _ => panic!(
            "FIB_RPC_PYTHON is not set: the interop tests need a Python interpreter with pika. \
             Run them through scripts/test.sh (it sets FIB_RPC_PYTHON), or set it up by hand: \
             FIB_RPC_PYTHON=\"$(scripts/python-env.sh)\" cargo test --test interop"
        ),
    }
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// Kills the Python server when the test ends, pass or fail.
struct PythonServer(Child);

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the tutorial-style Python server on `queue` and waits for its readiness line.
fn python_server(python: &str, queue: &str) -> PythonServer {
    let mut child = Command::new(python)
        .arg(script("rpc_server.py"))
        .arg(queue)
        .env("AMQP_URL", amqp_url())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python server starts");
    let stdout = child.stdout.take().unwrap();
    let server = PythonServer(child);
    let (line_tx, line_rx) = crossbeam_channel::unbounded();
    // Keep reading after readiness too: the server prints a line per request, and a closed
    // pipe would kill it.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match line_rx.recv_deadline(deadline) {
            Ok(line) if line.contains("[x] Awaiting RPC requests") => return server,
            Ok(_) => continue,
            Err(_) => panic!("python server did not report readiness"),
        }
    }
}

#[test]
fn python_tutorial_client_against_our_server() {
    let python = python();
    let queue = TestQueue::new("interop-py-client");
    let server = fib_server(&queue.name);
    let output = Command::new(&python)
        .arg(script("rpc_client.py"))
        .arg(&queue.name)
        .args(["10", "30", "0", "1000", "abc", "-5", "1000001", "20577"])
        .env("AMQP_URL", amqp_url())
        .output()
        .expect("python client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python client failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 8, "{stdout}");
    assert_eq!(lines[0], "OK 55");
    assert_eq!(lines[1], "OK 832040");
    assert_eq!(lines[2], "OK 0");
    assert_eq!(lines[3], format!("OK {}", fib(1000)));
    assert!(lines[4].starts_with("ERR bad_request "), "{}", lines[4]);
    assert!(
        lines[5].starts_with("ERR bad_request ") && lines[5].contains("negative"),
        "{}",
        lines[5]
    );
    assert!(lines[6].starts_with("ERR out_of_range "), "{}", lines[6]);
    // fib(20577) has 4,300 digits: the largest the tutorial client can parse by default.
    assert_eq!(lines[7], format!("OK {}", fib(20577)));
    server.stop().unwrap();
}

#[test]
fn our_client_against_python_tutorial_server() {
    let python = python();
    let queue = TestQueue::new("interop-py-server");
    let _server = python_server(&python, &queue.name);
    let client = FibonacciRpcClient::connect_with(
        &amqp_url(),
        ClientOptions::default()
            .queue(&queue.name)
            .timeout(Duration::from_secs(10)),
    )
    .unwrap();
    for n in [0u64, 1, 2, 10, 30, 94, 1000, 5000] {
        assert_eq!(client.call(n).unwrap(), fib(n), "fib({n})");
    }
    // Many threads through one client against the single-threaded Python server.
    std::thread::scope(|scope| {
        for thread in 0..8u64 {
            let client = &client;
            scope.spawn(move || {
                for n in (thread * 10)..(thread * 10 + 10) {
                    assert_eq!(client.call(n).unwrap(), fib(n));
                }
            });
        }
    });
    // The Python server's error replies use the same header, so they come back typed.
    let raw =
        RpcClient::connect_with(&amqp_url(), ClientOptions::default().queue(&queue.name)).unwrap();
    match raw.call(b"abc") {
        Err(Error::Remote(err)) => assert_eq!(err.code, ErrorCode::BadRequest),
        other => panic!("expected an error reply, got {other:?}"),
    }
}
