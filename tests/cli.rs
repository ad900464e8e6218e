//! The `fib-rpc` binary run as a script would run it, against the real broker: exact output,
//! stdin pipelining order, one exit code per failure class, graceful SIGTERM, bench JSON.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::proxy::TcpProxy;
use common::serve::{fib_rpc, Serve};
use common::{amqp_url, eventually, TestQueue};
use fib_rpc::fib;
use fib_rpc::{ErrorCode, RemoteError, Request, RpcServer, ServerOptions};

const FIB_1000: &str = "43466557686937456435688527675040625802564660517371780402481729089536555417949051\
                        89040387984007925516929592259308032263477520968962323987332247116164299644090653\
                        3187938298969649928516003704476137795166849228875";

/// The exit codes documented in the README and `fib-rpc --help`.
mod exit {
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const BAD_N: i32 = 3;
    pub const REMOTE: i32 = 4;
    pub const TIMEOUT: i32 = 5;
    pub const NO_SERVER: i32 = 6;
    pub const BROKER_UNREACHABLE: i32 = 7;
    pub const CONNECTION_LOST: i32 = 8;
    pub const NO_CONSUMER: i32 = 9;
}

/// Runs `fib-rpc ARGS --url <test broker>` with `stdin` as input.
fn run(args: &[&str], stdin: &str) -> Output {
    run_with_url(&amqp_url(), args, stdin)
}

/// Starts `fib-rpc ARGS --url URL` with all three standard streams piped.
fn spawn(url: &str, args: &[&str]) -> Child {
    fib_rpc()
        .args(args)
        .args(["--url", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fib-rpc starts")
}

fn run_with_url(url: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = spawn(url, args);
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_owned();
    // Written from a thread so a large input cannot deadlock against unread output.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Asserts the exit code and that stderr is exactly one `fib-rpc: ...` line containing
/// `reason`.
fn assert_fails(output: &Output, code: i32, reason: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line of reason, got: {err}");
    assert!(err.starts_with("fib-rpc: "), "{err}");
    assert!(err.contains(reason), "expected {reason:?} in: {err}");
}

/// A fresh queue with `fib-rpc serve` on it.
fn served_queue(purpose: &str, serve_args: &[&str]) -> (TestQueue, Serve) {
    let queue = TestQueue::new(purpose);
    let serve = Serve::start(&amqp_url(), &queue.name, serve_args);
    (queue, serve)
}

#[test]
fn call_1000_prints_exactly_the_decimal() {
    let (queue, _serve) = served_queue("cli-call", &[]);
    let output = run(&["call", "--queue", &queue.name, "1000"], "");
    assert_eq!(stderr(&output), "");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout(&output), format!("{FIB_1000}\n"));

    // Several N: one line each, in the order given; global options after the command work.
    let output = run(
        &["call", "30", "0", "1000", "1", "--queue", &queue.name],
        "",
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), format!("832040\n0\n{FIB_1000}\n1\n"));

    // By default N on the command line get replies by direct reply-to, a stream from stdin on
    // a reply queue (the client says which at -vv).
    let output = run(&["-vv", "call", "--queue", &queue.name, "30"], "");
    assert_eq!(stdout(&output), "832040\n", "{}", stderr(&output));
    assert!(
        stderr(&output).contains("replies come to \"amq.rabbitmq.reply-to\""),
        "{}",
        stderr(&output)
    );
    let output = run(&["-vv", "call", "--queue", &queue.name, "-"], "30\n");
    assert_eq!(stdout(&output), "832040\n", "{}", stderr(&output));
    assert!(
        stderr(&output).contains("replies come to \"amq.gen-"),
        "{}",
        stderr(&output)
    );

    // Both ways of getting replies, chosen explicitly, for N given and for a stream.
    for reply_to in ["direct", "queue"] {
        let output = run(
            &[
                "call",
                "--reply-to",
                reply_to,
                "--queue",
                &queue.name,
                "1000",
            ],
            "",
        );
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        assert_eq!(stdout(&output), format!("{FIB_1000}\n"), "{reply_to}");
        let output = run(
            &["call", "--reply-to", reply_to, "--queue", &queue.name, "-"],
            "30\n1000\n",
        );
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        assert_eq!(
            stdout(&output),
            format!("832040\n{FIB_1000}\n"),
            "{reply_to}"
        );
    }
}

#[test]
fn stdin_answers_come_out_in_input_order() {
    let (queue, _serve) = served_queue("cli-stdin", &["--workers", "2"]);
    // Big n (slow) among small ones: answers complete out of order and must not print so.
    let numbers: Vec<u64> = (0..3000u64)
        .map(|i| if i % 97 == 5 { 150_000 + i } else { i % 500 })
        .collect();
    let mut input: String = numbers.iter().map(|n| format!("{n}\n")).collect();
    input.push_str(" 12 \r\n"); // spaces and CRLF are fine
    let output = run(&["call", "--queue", &queue.name, "-"], &input);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let printed = stdout(&output);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), numbers.len() + 1);
    for (line, n) in lines.iter().zip(&numbers) {
        assert_eq!(*line, fib(*n).to_string(), "answer for n = {n}");
    }
    assert_eq!(lines[numbers.len()], "144");
}

#[test]
fn stdin_answers_each_line_as_it_comes() {
    let (queue, _serve) = served_queue("cli-interactive", &[]);
    let mut child = spawn(&amqp_url(), &["call", "--queue", &queue.name, "-"]);
    let mut input = child.stdin.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    // Like a person or a coprocess: one line, wait for its answer, then the next.
    for (n, expected) in [(10, "55"), (20, "6765"), (30, "832040")] {
        writeln!(input, "{n}").unwrap();
        input.flush().unwrap();
        let answer = lines.recv_timeout(Duration::from_secs(10));
        assert_eq!(
            answer.as_deref(),
            Ok(expected),
            "answer to {n} while stdin stays open"
        );
    }
    drop(input);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn stdin_takes_100_000_numbers_in_one_process() {
    let (queue, _serve) = served_queue("cli-100k", &[]);
    let table: Vec<String> = (0..1000u64).map(|n| fib(n).to_string()).collect();
    let input: String = (0..100_000).map(|i| format!("{}\n", i % 1000)).collect();
    let output = run(&["call", "--queue", &queue.name, "-"], &input);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let printed = stdout(&output);
    let mut count = 0;
    for (i, line) in printed.lines().enumerate() {
        assert_eq!(line, table[i % 1000], "line {}", i + 1);
        count += 1;
    }
    assert_eq!(count, 100_000);
}

#[test]
fn stdin_stops_at_the_first_bad_line_after_printing_what_came_before() {
    let (queue, _serve) = served_queue("cli-stdin-bad", &[]);
    let output = run(&["call", "--queue", &queue.name, "-"], "10\n20\nten\n30\n");
    assert_fails(&output, exit::BAD_N, "stdin line 3");
    assert_eq!(stdout(&output), "55\n6765\n");

    let output = run(&["call", "--queue", &queue.name, "-"], "10\n\n30\n");
    assert_fails(&output, exit::BAD_N, "stdin line 2: bad N: empty");
    assert_eq!(stdout(&output), "55\n");

    // A bad first line is a bad N even with no broker to ask.
    let output = run_with_url(
        "amqp://guest:guest@127.0.0.1:1/%2f",
        &["call", "-"],
        "abc\n",
    );
    assert_fails(&output, exit::BAD_N, "stdin line 1");
}

#[test]
fn bad_n_exits_3_before_or_from_the_server() {
    let (queue, _serve) = served_queue("cli-bad-n", &["--max-n", "100"]);
    for (arg, reason) in [
        ("abc", "expected n as a non-negative decimal integer"),
        ("-5", "must not be negative"),
        ("1.5", "whole number"),
        ("18446744073709551616", "does not fit in 64 bits"),
    ] {
        let output = run(&["call", "--queue", &queue.name, "7", arg], "");
        assert_fails(&output, exit::BAD_N, reason);
        assert_eq!(
            stdout(&output),
            "",
            "nothing is called when an argument is bad"
        );
    }
    let output = run(&["call", "--queue", &queue.name, "100", "101"], "");
    assert_fails(&output, exit::BAD_N, "above this server's limit of 100");
    assert_eq!(stdout(&output), format!("{}\n", fib(100)));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["call", "--frobnicate", "5"],
        vec!["call"],
        vec!["call", "5", "-"],
        vec!["call", "--workers", "2", "5"],
        vec!["call", "--timeout", "0", "5"],
        vec!["bench", "--calls", "5", "--seconds", "1"],
        vec!["call", "--reply-to", "mailbox", "5"],
        vec!["serve", "--reply-to", "direct"],
        vec!["launch"],
        vec![],
    ] {
        let output = run(&args, "");
        assert_eq!(output.status.code(), Some(exit::USAGE), "{args:?}");
        assert!(stderr(&output).contains("Try 'fib-rpc --help'"), "{args:?}");
    }
    let output = run_with_url("http://localhost/", &["call", "5"], "");
    assert_fails(&output, exit::USAGE, "amqp");
    let long_queue = "q".repeat(256);
    let output = run(&["call", "--queue", &long_queue, "5"], "");
    assert_fails(&output, exit::USAGE, "at most 255");
}

#[test]
fn help_and_version() {
    let help = run(&["--help"], "");
    assert_eq!(help.status.code(), Some(0));
    let text = stdout(&help);
    for code in 1..=9 {
        assert!(
            text.contains(&format!("\n  {code}  ")),
            "exit code {code} in help"
        );
    }
    let version = run(&["--version"], "");
    assert_eq!(
        stdout(&version),
        format!("fib-rpc {}\n", env!("CARGO_PKG_VERSION"))
    );
    for command in ["serve", "call", "bench", "status"] {
        let help = run(&[command, "--help"], "");
        assert_eq!(help.status.code(), Some(0));
        assert!(stdout(&help).starts_with(&format!("Usage: fib-rpc {command}")));
    }
}

#[test]
fn remote_error_exits_4_and_invalid_reply_exits_1() {
    let queue = TestQueue::new("cli-remote");
    let server = RpcServer::start(
        &amqp_url(),
        ServerOptions::default()
            .queue(queue.name.as_str())
            .workers(1),
        |request: &Request| -> Result<Vec<u8>, RemoteError> {
            match request.body() {
                b"7" => Err(RemoteError::new(ErrorCode::Internal, "disk on fire")),
                b"8" => Err(RemoteError::new(
                    ErrorCode::Other("quota".into()),
                    "over quota",
                )),
                _ => Ok(b"not a number".to_vec()),
            }
        },
    )
    .unwrap();
    let output = run(&["call", "--queue", &queue.name, "7"], "");
    assert_fails(&output, exit::REMOTE, "internal: disk on fire");
    let output = run(&["call", "--queue", &queue.name, "8"], "");
    assert_fails(&output, exit::REMOTE, "over quota");
    let output = run(&["call", "--queue", &queue.name, "9"], "");
    assert_fails(&output, exit::FAILURE, "invalid reply");
    server.stop().unwrap();
}

#[test]
fn timeout_exits_5_within_its_bound() {
    let queue = TestQueue::new("cli-timeout");
    queue.declare_classic(); // a queue nobody consumes
    let started = Instant::now();
    let output = run(
        &[
            "call",
            "--queue",
            &queue.name,
            "--timeout",
            "0.5",
            "--wait-for-server",
            "5",
        ],
        "",
    );
    assert_fails(&output, exit::TIMEOUT, "fib(5): no reply within");
    assert_fails(
        &output,
        exit::TIMEOUT,
        "; no server was consuming the queue",
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn no_server_exits_6() {
    let queue = TestQueue::new("cli-no-server"); // never declared
    let output = run(&["call", "--queue", &queue.name, "5"], "");
    assert_fails(&output, exit::NO_SERVER, &queue.name);
}

#[test]
fn call_to_a_queue_nobody_consumes_exits_9_at_once_unsent() {
    let queue = TestQueue::new("cli-no-consumer");
    queue.declare_classic();
    let started = Instant::now();
    let output = run(&["call", "--queue", &queue.name, "30"], "");
    assert_fails(&output, exit::NO_CONSUMER, "nobody consumes queue");
    assert!(stderr(&output).contains(&queue.name));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(queue.message_count(), 0, "the request was not sent");
}

/// Runs `fib-rpc status` with `args`: its exit code and stdout.
fn status(args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["status"];
    all.extend_from_slice(args);
    let output = run(&all, "");
    assert_eq!(stderr(&output), "", "status says it all on stdout");
    (output.status.code(), stdout(&output))
}

#[test]
fn status_says_whether_a_server_consumes_the_queue() {
    let queue = TestQueue::new("cli-status");
    let name = queue.name.as_str();
    let (code, line) = status(&["--queue", name]);
    assert_eq!(code, Some(exit::NO_SERVER), "{line}");
    assert_eq!(line, format!("queue {name:?}: no such queue\n"));

    queue.declare_classic();
    let (code, line) = status(&["--queue", name]);
    assert_eq!(code, Some(exit::NO_CONSUMER), "{line}");
    assert_eq!(
        line,
        format!("queue {name:?}: exists, no consumer (no server running), 0 requests waiting\n")
    );

    // A server is one consumer, however many workers it runs.
    let _serve = Serve::start(&amqp_url(), name, &["--workers", "3"]);
    let (code, line) = status(&["--queue", name]);
    assert_eq!(code, Some(0), "{line}");
    assert_eq!(
        line,
        format!("queue {name:?}: exists, 1 consumer, 0 requests waiting\n")
    );
    let _second = Serve::start(&amqp_url(), name, &[]);
    // The global option may come before the command too.
    let output = run(&["--queue", name, "status", "--json"], "");
    assert_eq!(output.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"queue": name, "exists": true, "consumers": 2, "messages": 0})
    );
}

#[test]
fn status_of_an_unreachable_broker_exits_7() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let output = run_with_url(&url, &["status"], "");
    assert_fails(&output, exit::BROKER_UNREACHABLE, "cannot connect");
}

#[test]
fn unreachable_broker_exits_7_without_showing_the_password() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // closed again: nothing listens there
    let url = format!("amqp://guest:hunter2@127.0.0.1:{port}/%2f");
    let output = run_with_url(&url, &["call", "5"], "");
    assert_fails(&output, exit::BROKER_UNREACHABLE, "cannot connect");
    assert!(!stderr(&output).contains("hunter2"));

    // Refused credentials, for call and for serve.
    let mut wrong = url::Url::parse(&amqp_url()).unwrap();
    wrong.set_password(Some("hunter2")).unwrap();
    let output = run_with_url(wrong.as_str(), &["call", "5"], "");
    assert_fails(&output, exit::BROKER_UNREACHABLE, "cannot connect");
    assert!(!stderr(&output).contains("hunter2"));
    // Not even in the most verbose logs (amiquip logs the handshake at debug level).
    let output = run_with_url(wrong.as_str(), &["call", "-vvv", "5"], "");
    assert_eq!(output.status.code(), Some(exit::BROKER_UNREACHABLE));
    assert!(stderr(&output).contains("TRACE") || stderr(&output).contains("DEBUG"));
    assert!(!stderr(&output).contains("hunter2"), "{}", stderr(&output));
    // Empty input asks nothing, so it needs no broker.
    let output = run_with_url(&url, &["call", "-"], "");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = run_with_url(wrong.as_str(), &["serve"], "");
    assert_fails(&output, exit::BROKER_UNREACHABLE, "cannot connect");
    assert!(!stderr(&output).contains("hunter2"));
}

#[test]
fn connection_lost_mid_call_exits_8() {
    let queue = TestQueue::new("cli-lost");
    let (server, started) = common::echo_server(
        ServerOptions::default()
            .queue(queue.name.as_str())
            .workers(1),
        Duration::from_secs(5),
    );
    let proxy = TcpProxy::to_broker();
    let child = spawn(
        &proxy.url(),
        &["call", "--no-retry", "--queue", &queue.name, "5"],
    );
    assert!(eventually(Duration::from_secs(10), || {
        started.load(std::sync::atomic::Ordering::SeqCst) == 1
    }));
    let cut_at = Instant::now();
    proxy.cut();
    let output = child.wait_with_output().unwrap();
    assert_fails(&output, exit::CONNECTION_LOST, "outcome unknown");
    assert!(
        cut_at.elapsed() < Duration::from_secs(4),
        "failed at once, not at the reply"
    );
    drop(server);
}

/// Without `--no-retry`, the call cut mid-call goes again on the next connection (the echo
/// server sees it twice) and is answered.
#[test]
fn connection_lost_mid_call_is_sent_again_by_default() {
    let queue = TestQueue::new("cli-lost-retried");
    let (server, started) = common::echo_server(
        ServerOptions::default()
            .queue(queue.name.as_str())
            .workers(1),
        Duration::from_secs(1),
    );
    let proxy = TcpProxy::to_broker();
    let child = spawn(&proxy.url(), &["call", "--queue", &queue.name, "5"]);
    assert!(eventually(Duration::from_secs(10), || {
        started.load(std::sync::atomic::Ordering::SeqCst) == 1
    }));
    proxy.cut();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "5\n");
    assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 2);
    drop(server);
}

#[test]
fn serve_drains_on_sigterm_and_exits_0() {
    let queue = TestQueue::new("cli-sigterm");
    let mut serve = Serve::start(
        &amqp_url(),
        &queue.name,
        &["--workers", "1", "--prefetch", "4", "--max-n", "10000000"],
    );
    let ready = serve.stderr();
    let ready_lines = ready.iter().filter(|l| l.contains(": ready: consuming"));
    assert_eq!(ready_lines.count(), 1, "one readiness line: {ready:?}");
    assert!(
        !ready.iter().any(|l| l.contains(":guest@")),
        "password shown: {ready:?}"
    );

    // Four slow calls, all delivered to the one worker (prefetch 4), then SIGTERM. Slow means
    // seconds in all, longer than `rabbitmqctl` takes to see them delivered: near the server's
    // `--max-n`, since fib(n) computed in decimal is fast even in the tests' debug build.
    let n = 4_000_000;
    let client = fib_rpc::FibonacciRpcClient::connect_with(
        &amqp_url(),
        fib_rpc::ClientOptions::default().queue(queue.name.as_str()),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let calls: Vec<_> = (0..4)
        .map(|i| client.send(n + i, deadline).unwrap())
        .collect();
    let (signalled_at, answered_at) = std::thread::scope(|scope| {
        // One waiting thread per call, so each answer's arrival time is known.
        let waiters: Vec<_> = calls
            .into_iter()
            .map(|call| {
                scope.spawn(move || {
                    let n = call.n();
                    let answer = call
                        .wait()
                        .expect("in-flight call answered during the drain");
                    assert_eq!(answer, fib(n));
                    Instant::now()
                })
            })
            .collect();
        assert!(eventually(Duration::from_secs(20), || {
            common::unacknowledged_count(&queue.name) == 4
        }));
        let signalled_at = Instant::now();
        serve.signal("TERM");
        let answered_at: Vec<Instant> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
        (signalled_at, answered_at)
    });
    assert!(
        answered_at.iter().any(|at| *at > signalled_at),
        "the test needs a call still being computed when the signal arrives"
    );
    assert_eq!(
        serve.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{:?}",
        serve.stderr()
    );

    // Stopped means stopped: a new call finds no consumer.
    let late = client.call_deadline(5, Instant::now() + Duration::from_millis(500));
    assert!(
        matches!(late, Err(fib_rpc::Error::Timeout { .. })),
        "{late:?}"
    );
}

#[test]
fn a_signal_while_serve_is_starting_exits_at_once() {
    // A "broker" that accepts the TCP connection and never answers: start-up hangs until the
    // 10 s connect timeout unless the signal ends it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("amqp://guest:guest@{}/%2f", silent.local_addr().unwrap());
    let child = spawn(&url, &["serve"]);
    std::thread::sleep(Duration::from_millis(500));
    let signalled_at = Instant::now();
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert!(
        signalled_at.elapsed() < Duration::from_secs(3),
        "{:?}",
        signalled_at.elapsed()
    );
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    assert!(stderr(&output).contains("SIGINT while starting"));
}

/// With nobody reading its stderr any more (the pipe's reader has exited), `serve` waiting
/// for a broker that is down still ends on SIGTERM, with 0 (a requested stop): writing its
/// last words must not fail it.
#[test]
fn a_signal_ends_a_starting_serve_whose_stderr_is_closed() {
    let mut child = spawn("amqp://guest:guest@127.0.0.1:1/%2f", &["serve"]);
    drop(child.stderr.take()); // the reader goes away
    std::thread::sleep(Duration::from_millis(500));
    let signalled_at = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = common::eventually(Duration::from_secs(3), || {
        child.try_wait().unwrap().is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        panic!("serve ignored SIGTERM while starting with its stderr closed");
    }
    let status = child.wait().unwrap();
    assert!(signalled_at.elapsed() < Duration::from_secs(3));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn bench_json_counts_add_up() {
    let (queue, _serve) = served_queue("cli-bench", &[]);
    let (output, report) = bench_json(&queue.name, &["--callers", "4", "--calls", "400"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let printed = stdout(&output);
    assert!(printed.contains("calls/s"), "a table first: {printed}");
    assert_eq!(report["calls"], 400);
    assert_eq!(report["ok"], 400);
    assert_eq!(report["errors"], serde_json::json!({}));
    let latencies: Vec<u64> = ["p50_us", "p90_us", "p99_us", "max_us"]
        .iter()
        .map(|key| report[key].as_u64().unwrap())
        .collect();
    assert!(
        latencies.windows(2).all(|pair| pair[0] <= pair[1]),
        "{latencies:?}"
    );
    assert!(report["calls_per_s"].as_f64().unwrap() > 0.0);

    // A time-bound run.
    let (output, report) = bench_json(&queue.name, &["--seconds", "1", "--n", "1000"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let calls = report["calls"].as_u64().unwrap();
    assert!(calls > 0);
    assert_eq!(report["ok"].as_u64().unwrap() + error_total(&report), calls);
}

#[test]
fn bench_seconds_is_a_bound_even_when_nobody_answers() {
    let queue = TestQueue::new("cli-bench-silent");
    queue.declare_classic(); // exists, nobody consumes: every call would wait 30 s
    let started = Instant::now();
    let (output, report) = bench_json(
        &queue.name,
        &[
            "--callers",
            "2",
            "--seconds",
            "1",
            "--keep-going",
            "--wait-for-server",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report["ok"], 0);
    assert_eq!(report["errors"]["timeout"], report["calls"]);
    // Without --wait-for-server, every call fails at once instead, and bench exits 9.
    let (output, report) = bench_json(&queue.name, &["--calls", "20"]);
    assert_eq!(output.status.code(), Some(9), "{}", stderr(&output));
    assert_eq!(report["errors"], serde_json::json!({"no_consumer": 20}));
    assert_eq!(queue.message_count(), 0);
}

/// `serve` does not exit when its connection is cut: it reconnects, says so, and serves
/// again within a few seconds; SIGTERM still ends it with 0.
#[test]
fn serve_reconnects_after_a_cut() {
    let queue = TestQueue::new("cli-serve-cut");
    let proxy = TcpProxy::to_broker();
    let mut serve = Serve::start(&proxy.url(), &queue.name, &[]);
    let call = || {
        run(
            &["call", "25", "--queue", &queue.name, "--timeout", "2"],
            "",
        )
    };
    assert_eq!(stdout(&call()), "75025\n");
    let cut = Instant::now();
    proxy.cut();
    assert!(
        common::eventually(Duration::from_secs(8), || stdout(&call()) == "75025\n"),
        "{:?}",
        serve.stderr()
    );
    eprintln!("serve answered again {:?} after the cut", cut.elapsed());
    // Logged once the workers consume, so it can trail the first answer a little.
    assert!(
        common::eventually(Duration::from_secs(2), || serve
            .stderr()
            .iter()
            .any(|line| line.contains("reconnected"))),
        "{:?}",
        serve.stderr()
    );
    serve.signal("TERM");
    assert_eq!(serve.wait_exit(Duration::from_secs(10)), Some(0));
}

/// Several brokers: `--url` given twice, or `AMQP_URL` with two URLs. The first one is down,
/// so the second serves.
#[test]
fn call_fails_over_to_the_next_broker() {
    let (queue, _serve) = served_queue("cli-failover", &[]);
    let dead = "amqp://guest:guest@127.0.0.1:1/%2f";
    let output = fib_rpc()
        .args(["call", "30", "--queue", &queue.name, "--url", dead])
        .args(["--url", &amqp_url()])
        .output()
        .unwrap();
    assert_eq!(stdout(&output), "832040\n", "{}", stderr(&output));
    let output = fib_rpc()
        .args(["call", "31", "--queue", &queue.name])
        .env("AMQP_URL", format!("{dead} {}", amqp_url()))
        .output()
        .unwrap();
    assert_eq!(stdout(&output), "1346269\n", "{}", stderr(&output));
}

/// A cut connection costs a bench run nothing: the client reconnects, sends the calls that were
/// in flight again (`retries`), and the run goes on to its end, reporting the reconnection.
#[test]
fn bench_rides_out_a_lost_connection() {
    let (queue, _serve) = served_queue("cli-bench-lost", &[]);
    let proxy = TcpProxy::to_broker();
    let started = Instant::now();
    let child = spawn(
        &proxy.url(),
        &[
            "bench",
            "--queue",
            &queue.name,
            "--callers",
            "4",
            "--seconds",
            "4",
            "--json",
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    proxy.cut();
    let output = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = last_json_line(&stdout(&output));
    let calls = report["calls"].as_u64().unwrap();
    assert_eq!(report["reconnects"], 1, "{report}");
    let retries = report["retries"].as_u64().expect("retries counted");
    assert!(
        retries <= 4,
        "only calls in flight at the cut go again: {report}"
    );
    assert_eq!(error_total(&report), 0, "no call failed: {report}");
    assert_eq!(report["ok"].as_u64().unwrap(), calls);
    assert!(report["ok"].as_u64().unwrap() > 100, "{report}");
}

/// Given several URLs, `serve`'s ready line names the broker it is connected to: not the first
/// URL (nothing listens there), not the whole list.
#[test]
fn serve_ready_line_names_the_broker_connected() {
    let queue = TestQueue::new("cli-ready-broker");
    let down = "amqp://guest:secret@127.0.0.1:1/%2f";
    let serve = Serve::start(&amqp_url(), &queue.name, &["--url", down]);
    let ready = serve.stderr();
    let line = ready
        .iter()
        .find(|line| line.contains(": ready: consuming"))
        .expect("a ready line");
    let connected = fib_rpc::redact_url(&amqp_url());
    assert!(line.contains(&format!(" on {connected} with ")), "{line}");
    assert!(!line.contains("127.0.0.1:1/"), "{line}");
    drop(serve);
}

#[test]
fn bench_counts_failed_calls_by_kind_and_fails_unless_kept_going() {
    let queue = TestQueue::new("cli-bench-fail"); // no queue: every call is no_server
    let (output, report) = bench_json(&queue.name, &["--callers", "2", "--calls", "50"]);
    assert_eq!(output.status.code(), Some(6), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("50 of 50 calls failed (no_server 50)"),
        "{}",
        stderr(&output)
    );
    assert_eq!(report["calls"], 50);
    assert_eq!(report["ok"], 0);
    assert_eq!(report["errors"], serde_json::json!({"no_server": 50}));
    assert!(report["p50_us"].is_null());
    let (output, report) = bench_json(&queue.name, &["--calls", "5", "--keep-going"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(report["errors"], serde_json::json!({"no_server": 5}));

    // Server refuses n: counted as bad_n, exit 3.
    let (queue, _serve) = served_queue("cli-bench-bad-n", &["--max-n", "5"]);
    let (output, report) = bench_json(&queue.name, &["--calls", "20", "--n", "6"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert_eq!(report["errors"], serde_json::json!({"bad_n": 20}));
    // Every call fine: exit 0.
    let (output, report) = bench_json(&queue.name, &["--calls", "20", "--n", "5"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(report["ok"], 20);
}

/// A server that answers, but wrongly, fails the run: bench checks every answer.
#[test]
fn bench_fails_on_wrong_answers() {
    let queue = TestQueue::new("cli-bench-wrong");
    let server = RpcServer::start(
        &amqp_url(),
        ServerOptions::default().queue(queue.name.as_str()),
        |request: &Request| -> Result<Vec<u8>, RemoteError> {
            // fib(10) is 55; answer 55 for every other call and 56 for the rest.
            Ok(
                if request
                    .correlation_id()
                    .is_some_and(|id| id.ends_with(['0', '2', '4', '6', '8']))
                {
                    b"56".to_vec()
                } else {
                    b"55".to_vec()
                },
            )
        },
    )
    .unwrap();
    let (output, report) = bench_json(&queue.name, &["--calls", "40"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let wrong = report["errors"]["wrong_answer"].as_u64().unwrap();
    assert!(wrong > 0, "{report}");
    assert_eq!(report["ok"].as_u64().unwrap() + wrong, 40, "{report}");
    server.stop().unwrap();
}

/// Runs `fib-rpc bench --queue QUEUE --json ARGS`: its output and the JSON of its last line.
fn bench_json(queue: &str, args: &[&str]) -> (Output, serde_json::Value) {
    let mut all = vec!["bench", "--queue", queue, "--json"];
    all.extend_from_slice(args);
    let output = run(&all, "");
    let report = last_json_line(&stdout(&output));
    (output, report)
}

fn last_json_line(printed: &str) -> serde_json::Value {
    let line = printed.lines().last().expect("output");
    serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}"))
}

fn error_total(report: &serde_json::Value) -> u64 {
    report["errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|count| count.as_u64().unwrap())
        .sum()
}

/// `call --traceparent` sends the trace context with the call; a malformed one is a usage
/// error before anything connects.
#[test]
fn call_sends_its_traceparent() {
    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let queue = TestQueue::new("cli-trace");
    let server = RpcServer::start(
        &amqp_url(),
        ServerOptions::default().queue(queue.name.as_str()),
        |request: &Request| -> Result<Vec<u8>, RemoteError> {
            // "1" when the trace context arrived intact, "2" otherwise.
            let intact = request.traceparent().map(|p| p.to_string()).as_deref() == Some(PARENT);
            Ok(if intact { b"1".to_vec() } else { b"2".to_vec() })
        },
    )
    .unwrap();
    let output = run(
        &["call", "--queue", &queue.name, "--traceparent", PARENT, "5"],
        "",
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "1\n");
    let output = run(&["call", "--queue", &queue.name, "5"], "");
    assert_eq!(stdout(&output), "2\n", "no trace context unless asked");

    let output = run(&["call", "--traceparent", "00-nope", "5"], "");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("traceparent"),
        "{}",
        stderr(&output)
    );
    server.stop().unwrap();
}
