//! `fib-rpc serve` as an operator and systemd see it: readiness, watchdog and stopping
//! notifications over `NOTIFY_SOCKET`, exit 0 on SIGTERM at any stage, and its info logs (the
//! ready line, a line per interval with traffic, a summary at the end).

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::serve::Serve;
use common::{amqp_url, eventually, TestQueue};
use fib_rpc::{Error, ErrorCode};

/// A socket standing in for systemd's notify socket, in a directory of its own.
struct NotifySocket {
    dir: PathBuf,
    socket: UnixDatagram,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let dir = std::env::temp_dir().join(format!(
            "fib-rpc-test-notify-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&dir).unwrap();
        let socket = UnixDatagram::bind(dir.join("notify")).unwrap();
        NotifySocket { dir, socket }
    }

    fn path(&self) -> String {
        self.dir.join("notify").to_str().unwrap().to_owned()
    }

    /// The next message, waiting up to `within`.
    fn next(&self, within: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Messages until one satisfies `wanted` (returned last), waiting up to `within` in all.
    fn until(&self, within: Duration, wanted: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Some(message) = self.next(left.max(Duration::from_millis(1))) else {
                break;
            };
            let done = wanted(&message);
            seen.push(message);
            if done {
                return seen;
            }
        }
        panic!("no wanted message within {within:?}; got {seen:?}");
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn consumers(queue: &str) -> u32 {
    let mut connection = common::admin_connection();
    let channel = connection.open_channel(None).unwrap();
    let count = channel
        .queue_declare_passive(queue)
        .unwrap()
        .declared_consumer_count()
        .unwrap();
    connection.close().unwrap();
    count
}

#[test]
fn systemd_hears_ready_once_it_consumes_then_watchdog_pings_then_stopping() {
    let queue = TestQueue::new("notify");
    let notify = NotifySocket::new();
    let path = notify.path();
    let mut serve = Serve::spawn_with_env(
        &amqp_url(),
        &queue.name,
        &["--workers", "2"],
        &[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "200000")],
    );
    let before = notify.until(Duration::from_secs(30), |m| m.starts_with("READY=1"));
    // At READY the server consumes (its workers share one consumer): a call made now is
    // answered at once.
    assert_eq!(consumers(&queue.name), 1, "{before:?}");
    let client = common::fib_client(&queue.name);
    let answer = client.call_deadline(30, Instant::now() + Duration::from_secs(2));
    assert_eq!(answer.unwrap().to_string(), "832040");
    let ready = before.last().unwrap();
    let broker = fib_rpc::redact_url(&amqp_url());
    assert_eq!(
        ready,
        &format!("READY=1\nSTATUS=consuming {} on {broker}", queue.name)
    );
    assert!(
        before
            .iter()
            .any(|m| m.starts_with("STATUS=connecting to ")),
        "{before:?}"
    );
    assert!(
        !before.iter().any(|m| m.contains(":guest@")),
        "password: {before:?}"
    );

    // Pings every 100 ms (half of WATCHDOG_USEC).
    let started = Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(1000) {
        if notify.next(Duration::from_millis(300)).as_deref() == Some("WATCHDOG=1") {
            pings += 1;
        }
    }
    assert!((5..=15).contains(&pings), "{pings} pings in 1 s");

    serve.signal("TERM");
    let after = notify.until(Duration::from_secs(10), |m| m.starts_with("STOPPING=1"));
    assert!(!after.iter().any(|m| m.starts_with("READY=1")), "{after:?}");
    assert_eq!(
        serve.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{:?}",
        serve.stderr()
    );
}

#[test]
fn no_watchdog_pings_for_another_process() {
    let queue = TestQueue::new("notify-other-pid");
    let notify = NotifySocket::new();
    let path = notify.path();
    let mut serve = Serve::spawn_with_env(
        &amqp_url(),
        &queue.name,
        &["--workers", "1"],
        &[
            ("NOTIFY_SOCKET", &path),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    notify.until(Duration::from_secs(30), |m| m.starts_with("READY=1"));
    assert_eq!(notify.next(Duration::from_millis(500)), None);
    serve.signal("TERM");
    assert_eq!(serve.wait_exit(Duration::from_secs(30)), Some(0));
}

#[test]
fn sigterm_while_waiting_for_an_unreachable_broker_exits_0_at_once() {
    let queue = TestQueue::new("unreachable");
    let notify = NotifySocket::new();
    let path = notify.path();
    let mut serve = Serve::spawn_with_env(
        "amqp://guest:guest@127.0.0.1:1/%2f",
        &queue.name,
        &[],
        &[("NOTIFY_SOCKET", &path)],
    );
    let first = notify.next(Duration::from_secs(10)).expect("a status");
    assert!(first.starts_with("STATUS=connecting to "), "{first}");
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    serve.signal("TERM");
    assert_eq!(
        serve.wait_exit(Duration::from_secs(3)),
        Some(0),
        "{:?}",
        serve.stderr()
    );
    assert!(signalled.elapsed() < Duration::from_secs(3));
    assert_eq!(
        notify.next(Duration::from_secs(1)).as_deref(),
        Some("STOPPING=1")
    );
    let stderr = serve.stderr();
    assert!(
        stderr.iter().any(|l| l.contains("SIGTERM while starting")),
        "{stderr:?}"
    );
}

#[test]
fn a_second_sigterm_during_the_drain_exits_0_at_once() {
    let queue = TestQueue::new("second-sigterm");
    let mut serve = Serve::start(
        &amqp_url(),
        &queue.name,
        &["--workers", "1", "--max-n", "100000000"],
    );
    // One call that takes many seconds, so the drain is still going at the second signal.
    let client = common::fib_client(&queue.name);
    let slow = client
        .send(50_000_000, Instant::now() + Duration::from_secs(120))
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || {
        common::unacknowledged_count(&queue.name) == 1
    }));
    serve.signal("TERM");
    assert!(eventually(Duration::from_secs(5), || serve
        .stderr()
        .iter()
        .any(|l| l.contains("finishing in-flight requests"))));
    let signalled = Instant::now();
    serve.signal("TERM");
    assert_eq!(
        serve.wait_exit(Duration::from_secs(5)),
        Some(0),
        "{:?}",
        serve.stderr()
    );
    assert!(signalled.elapsed() < Duration::from_secs(5));
    let stderr = serve.stderr();
    assert!(
        stderr.iter().any(|l| l.contains("SIGTERM again")),
        "{stderr:?}"
    );
    assert!(stderr.iter().any(|l| l.contains("summary: ")), "{stderr:?}");
    drop(slow);
    // The unanswered request went back to the queue.
    assert!(eventually(Duration::from_secs(5), || queue.message_count() == 1));
}

/// The counts of `outcome` in the interval lines, added up.
fn interval_total(lines: &[String], outcome: &str) -> u64 {
    lines
        .iter()
        .filter(|line| line.contains(" INFO  fib_rpc::serve: last "))
        .filter_map(|line| {
            let (_, rest) = line.split_once(&format!("{outcome} "))?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[test]
fn serve_logs_its_traffic_per_interval_and_a_summary_at_info_by_default() {
    let queue = TestQueue::new("logs");
    let mut serve = Serve::start(
        &amqp_url(),
        &queue.name,
        &["--workers", "2", "--max-n", "100", "--log-interval", "1"],
    );
    let client = common::raw_client(&queue.name);
    for n in ["10", "20", "30"] {
        client.call(n.as_bytes()).unwrap();
    }
    let refused = |body: &[u8], code: ErrorCode| match client.call(body) {
        Err(Error::Remote(refusal)) => assert_eq!(refusal.code, code),
        other => panic!("{other:?}"),
    };
    refused(b"abc", ErrorCode::BadRequest);
    refused(b"101", ErrorCode::OutOfRange);
    refused(b"102", ErrorCode::OutOfRange);

    let counted = |outcome: &str, n: u64| interval_total(&serve.stderr(), outcome) == n;
    assert!(
        eventually(Duration::from_secs(5), || counted("ok", 3)
            && counted("bad_request", 1)
            && counted("out_of_range", 2)),
        "{:?}",
        serve.stderr()
    );
    let lines = serve.stderr();
    let interval = lines
        .iter()
        .find(|l| l.contains("fib_rpc::serve: last 1 s: "))
        .expect("an interval line");
    assert!(interval.contains(" requests (ok "), "{interval}");
    assert!(
        interval.contains(", p50 ") && interval.contains(" ms, p99 "),
        "{interval}"
    );
    // Quiet intervals print nothing.
    let quiet_from = lines.len();
    std::thread::sleep(Duration::from_millis(2_500));
    let later = serve.stderr();
    assert!(
        !later[quiet_from..].iter().any(|l| l.contains(": last ")),
        "{later:?}"
    );

    serve.signal("TERM");
    assert_eq!(serve.wait_exit(Duration::from_secs(30)), Some(0));
    let lines = serve.stderr();
    let summary = lines
        .iter()
        .find(|l| l.contains("fib_rpc::serve: summary: up "))
        .unwrap_or_else(|| panic!("a summary line: {lines:?}"));
    assert!(
        summary.contains(", 6 requests (ok 3, bad_request 1, out_of_range 2), 0 reconnects, p50 "),
        "{summary}"
    );
    for line in &lines {
        assert!(line.contains(" INFO  "), "info level and up only: {line}");
        assert!(!line.contains("fib-rpc serve:"), "prefix repeated: {line}");
        if let Some((_, message)) = line.split_once(" fib_rpc::serve: ") {
            assert!(!message.starts_with("fib-rpc"), "prefix repeated: {line}");
        }
        assert!(!line.contains(":guest@"), "password shown: {line}");
    }
}
