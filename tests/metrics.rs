//! `fib-rpc serve --metrics-addr`: what a Prometheus scrape sees after real calls, and what
//! the port does with anything that is not a scrape. Scrapes are raw HTTP over a
//! `TcpStream`, so nothing but the bytes on the wire is trusted.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::serve::{fib_rpc, Serve};
use common::{amqp_url, eventually, TestQueue};
use fib_rpc::{ClientOptions, Error, ErrorCode, RpcClient};

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `fib-rpc serve` on a fresh queue with metrics on a free port, and that port.
fn serve_with_metrics(purpose: &str, args: &[&str]) -> (TestQueue, Serve, SocketAddr) {
    let queue = TestQueue::new(purpose);
    let args = [&["--metrics-addr", "127.0.0.1:0"], args].concat();
    let serve = Serve::start(&amqp_url(), &queue.name, &args);
    let addr = metrics_addr(&serve.stderr()).expect("the ready line names the metrics address");
    (queue, serve, addr)
}

/// The address in `... metrics on http://ADDR/metrics` among the lines `serve` printed.
fn metrics_addr(lines: &[String]) -> Option<SocketAddr> {
    lines.iter().find_map(|line| {
        let rest = line.split("metrics on http://").nth(1)?;
        rest.split("/metrics").next()?.parse().ok()
    })
}

/// An HTTP response as received.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Sends `request` as is and reads until the server closes: the raw bytes, or the error
/// that ended the read (a reset).
fn exchange(addr: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(response)
}

fn parse_response(raw: &[u8]) -> Response {
    let text = String::from_utf8(raw.to_vec()).expect("a UTF-8 response");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .expect("a complete response head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
    let status = parts.next().unwrap().parse().unwrap();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("a header line");
            (name.to_owned(), value.trim().to_owned())
        })
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn request(addr: SocketAddr, method: &str, path: &str) -> Response {
    let request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nAccept: */*\r\n\r\n");
    parse_response(&exchange(addr, request.as_bytes()).expect("a response"))
}

fn scrape(addr: SocketAddr) -> Response {
    let response = request(addr, "GET", "/metrics");
    assert_eq!(response.status, 200, "{response:?}");
    response
}

/// Every sample of the text format: (series with its labels, value).
fn samples(body: &str) -> Vec<(String, f64)> {
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// The value of the one series named `name` whose labels include every one of `labels`.
fn value(body: &str, name: &str, labels: &[&str]) -> f64 {
    let found: Vec<f64> = samples(body)
        .into_iter()
        .filter(|(series, _)| {
            series.split('{').next() == Some(name)
                && labels.iter().all(|label| series.contains(label))
        })
        .map(|(_, value)| value)
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?} in:\n{body}");
    found[0]
}

fn requests(body: &str, code: &str) -> f64 {
    value(
        body,
        "rpc_server_requests_total",
        &[&format!("code=\"{code}\"")],
    )
}

#[test]
fn a_scrape_counts_requests_by_code_and_times_them() {
    let (queue, mut serve, addr) = serve_with_metrics("metrics-counts", &["--max-n", "10000"]);

    let before = scrape(addr);
    for code in [
        "ok",
        "bad_request",
        "out_of_range",
        "internal",
        "other",
        "expired",
        "poison",
        "no_reply_to",
    ] {
        assert_eq!(requests(&before.body, code), 0.0, "{code}");
    }
    let queue_label = format!("queue=\"{}\"", queue.name);
    let labels = ["rpc_system=\"rabbitmq\"", queue_label.as_str()];
    assert_eq!(value(&before.body, "rpc_server_connected", &labels), 1.0);

    let client = RpcClient::connect_with(
        &amqp_url(),
        ClientOptions::default().queue(queue.name.as_str()),
    )
    .unwrap();
    assert_eq!(client.call(b"10").unwrap(), b"55");
    // The same n twice, one after the other: computed, then from the cache.
    let first = client.call(b"5000").unwrap();
    assert_eq!(client.call(b"5000").unwrap(), first);
    for (body, code) in [
        (&b"abc"[..], ErrorCode::BadRequest),
        (b"10001", ErrorCode::OutOfRange),
    ] {
        match client.call(body) {
            Err(Error::Remote(remote)) => assert_eq!(remote.code, code),
            other => panic!("{other:?}"),
        }
    }

    // The server counts a reply just after publishing it, so the client may be a moment ahead.
    let mut after = scrape(addr);
    assert!(
        eventually(Duration::from_secs(5), || {
            after = scrape(addr);
            requests(&after.body, "out_of_range") == 1.0 && requests(&after.body, "ok") == 3.0
        }),
        "{}",
        after.body
    );
    let body = &after.body;
    assert_eq!(after.header("Content-Type"), Some(CONTENT_TYPE));
    assert_eq!(after.header("Connection"), Some("close"));
    assert_eq!(
        after.header("Content-Length"),
        Some(&*body.len().to_string())
    );
    for (code, expected) in [
        ("ok", 3.0),
        ("bad_request", 1.0),
        ("out_of_range", 1.0),
        ("internal", 0.0),
        ("other", 0.0),
        ("expired", 0.0),
        ("poison", 0.0),
        ("no_reply_to", 0.0),
    ] {
        assert_eq!(requests(body, code), expected, "{code}");
    }
    // Every rpc_server_* series says which system and queue it is about.
    for (series, _) in samples(body) {
        if series.starts_with("rpc_server_") {
            assert!(
                labels.iter().all(|label| series.contains(label)),
                "{series}"
            );
        }
    }

    // The histogram: cumulative buckets ending with +Inf, which is the count: every reply.
    let name = "rpc_server_call_duration_seconds";
    let buckets: Vec<(String, f64)> = samples(body)
        .into_iter()
        .filter(|(series, _)| series.starts_with(&format!("{name}_bucket{{")))
        .collect();
    assert_eq!(buckets.len(), 20, "{body}");
    assert!(
        buckets.windows(2).all(|pair| pair[0].1 <= pair[1].1),
        "{body}"
    );
    let (last, inf) = buckets.last().unwrap();
    assert!(last.ends_with(",le=\"+Inf\"}"), "{last}");
    assert!(
        buckets[0].0.ends_with(",le=\"0.00001\"}"),
        "{}",
        buckets[0].0
    );
    let count = value(body, &format!("{name}_count"), &labels);
    assert_eq!((count, *inf), (5.0, 5.0));
    let sum = value(body, &format!("{name}_sum"), &labels);
    assert!(sum > 0.0 && sum < 5.0, "sum {sum}");

    assert_eq!(value(body, "rpc_server_requests_in_progress", &labels), 0.0);
    assert_eq!(value(body, "rpc_server_reconnects_total", &labels), 0.0);
    assert_eq!(value(body, "rpc_server_connected", &labels), 1.0);
    assert_eq!(value(body, "fib_rpc_cache_hits_total", &[]), 1.0);
    assert_eq!(value(body, "fib_rpc_cache_misses_total", &[]), 1.0);
    assert_eq!(value(body, "fib_rpc_cache_entries", &[]), 1.0);
    assert_eq!(value(body, "fib_rpc_cache_bytes", &[]), first.len() as f64);
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert_eq!(value(body, "fib_rpc_build_info", &[&version]), 1.0);
    // Every family has its HELP and TYPE.
    for family in [
        "rpc_server_requests_total counter",
        "rpc_server_call_duration_seconds histogram",
        "rpc_server_requests_in_progress gauge",
        "rpc_server_reconnects_total counter",
        "rpc_server_connected gauge",
        "fib_rpc_cache_hits_total counter",
        "fib_rpc_cache_misses_total counter",
        "fib_rpc_cache_bytes gauge",
        "fib_rpc_cache_entries gauge",
        "fib_rpc_build_info gauge",
    ] {
        assert!(body.contains(&format!("\n# TYPE {family}\n")), "{family}");
        let name = family.split(' ').next().unwrap();
        assert!(body.contains(&format!("# HELP {name} ")), "{name}");
    }

    // HEAD: the same head, no body.
    let head = request(addr, "HEAD", "/metrics");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Type"), Some(CONTENT_TYPE));
    assert!(head.body.is_empty(), "{:?}", head.body);
    assert!(
        head.header("Content-Length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 1000
    );

    // Stopping serve stops the endpoint: the port is closed once it has exited.
    client.close();
    serve.signal("TERM");
    assert_eq!(serve.wait_exit(Duration::from_secs(30)), Some(0));
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

#[test]
fn the_metrics_port_refuses_whatever_is_not_a_scrape() {
    let (_queue, _serve, addr) = serve_with_metrics("metrics-refusals", &[]);

    let other = request(addr, "GET", "/");
    assert_eq!(other.status, 404, "{other:?}");
    assert_eq!(request(addr, "GET", "/metrics/x").status, 404);
    let post = request(addr, "POST", "/metrics");
    assert_eq!(post.status, 405, "{post:?}");
    assert_eq!(post.header("Allow"), Some("GET, HEAD"));
    for response in [&other, &post] {
        assert_eq!(response.header("Connection"), Some("close"));
        assert_eq!(
            response.header("Content-Length"),
            Some(&*response.body.len().to_string())
        );
    }
    // A query string is not part of the path.
    assert_eq!(request(addr, "GET", "/metrics?format=x").status, 200);

    // Garbage: a TLS client hello, binary noise, HTTP/2's preface. 400, or closed.
    for garbage in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
        b"\x00\xff\x00\xff\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET /metrics\r\n\r\n",
    ] {
        match exchange(addr, garbage) {
            Ok(raw) if raw.is_empty() => {}
            Ok(raw) => assert_eq!(parse_response(&raw).status, 400, "{garbage:?}"),
            Err(err) => eprintln!("{garbage:?}: connection ended with {err}"),
        }
    }

    // A request head over the cap: 431, or closed.
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(9000)
    );
    match exchange(addr, huge.as_bytes()) {
        Ok(raw) if raw.is_empty() => {}
        Ok(raw) => assert_eq!(parse_response(&raw).status, 431),
        Err(err) => eprintln!("oversized head: connection ended with {err}"),
    }

    // Still serving after all that.
    scrape(addr);
}

/// A client that sends half a request and stalls is dropped after the 2 s bound; meanwhile
/// the RPC server answers as usual and, with one of the two connection threads free, another
/// scrape is answered at once. With both threads held, a scrape waits at most the bound.
/// Nor does a stalled client delay serve's exit.
#[test]
fn a_stalled_client_is_dropped_and_delays_nothing_else() {
    let (queue, mut serve, addr) = serve_with_metrics("metrics-stall", &[]);
    let client = RpcClient::connect_with(
        &amqp_url(),
        ClientOptions::default().queue(queue.name.as_str()),
    )
    .unwrap();
    assert_eq!(client.call(b"10").unwrap(), b"55"); // connected and warm

    let stall = |addr| {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: te")
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        (stream, Instant::now())
    };
    let (mut stalled, since) = stall(addr);
    std::thread::sleep(Duration::from_millis(200)); // taken by a connection thread

    let started = Instant::now();
    assert_eq!(client.call(b"12").unwrap(), b"144");
    let call_took = started.elapsed();
    let started = Instant::now();
    scrape(addr);
    let scrape_took = started.elapsed();
    assert!(
        call_took < Duration::from_millis(500),
        "call took {call_took:?}"
    );
    assert!(
        scrape_took < Duration::from_millis(500),
        "scrape took {scrape_took:?}"
    );

    // Dropped after the read bound (with a 408 first, or without a word).
    let mut rest = Vec::new();
    let ended = stalled.read_to_end(&mut rest);
    let dropped_after = since.elapsed();
    assert!(ended.is_ok(), "{ended:?}");
    if !rest.is_empty() {
        assert_eq!(parse_response(&rest).status, 408);
    }
    assert!(
        dropped_after >= Duration::from_millis(1500) && dropped_after < Duration::from_secs(4),
        "dropped after {dropped_after:?}"
    );

    // Two stalled clients hold both connection threads: a scrape waits for one, at most
    // the bound.
    let (_first, _) = stall(addr);
    let (_second, _) = stall(addr);
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    scrape(addr);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(4), "scrape waited {waited:?}");
    eprintln!("with both threads stalled, a scrape waited {waited:?}");

    // Nor does a stalled client hold up serve's exit: its thread lets go within a moment.
    let (_third, _) = stall(addr);
    std::thread::sleep(Duration::from_millis(200));
    client.close();
    let started = Instant::now();
    serve.signal("TERM");
    assert_eq!(serve.wait_exit(Duration::from_secs(10)), Some(0));
    let exit_took = started.elapsed();
    assert!(
        exit_took < Duration::from_millis(1500),
        "exit took {exit_took:?}"
    );
}

/// Metrics are served from the start, also while serve waits for a broker: then
/// `rpc_server_connected` is 0.
#[test]
fn metrics_say_not_connected_while_serve_waits_for_the_broker() {
    let queue = TestQueue::new("metrics-waiting");
    let serve = Serve::spawn(
        "amqp://guest:guest@127.0.0.1:1/%2f",
        &queue.name,
        &["--metrics-addr", "127.0.0.1:0", "-v"],
    );
    let mut addr = None;
    assert!(
        eventually(Duration::from_secs(10), || {
            addr = metrics_addr(&serve.stderr());
            addr.is_some()
        }),
        "{:?}",
        serve.stderr()
    );
    let body = scrape(addr.unwrap()).body;
    let queue_label = format!("queue=\"{}\"", queue.name);
    assert_eq!(value(&body, "rpc_server_connected", &[&queue_label]), 0.0);
    assert_eq!(requests(&body, "ok"), 0.0);
}

#[test]
fn a_metrics_port_taken_fails_serve_at_start() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let queue = TestQueue::new("metrics-taken");
    let started = Instant::now();
    let output = fib_rpc()
        .args(["serve", "--queue", &queue.name, "--metrics-addr", &addr])
        .args(["--url", &amqp_url()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on --metrics-addr {addr}")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let output = fib_rpc()
        .args(["serve", "--metrics-addr", "localhost:9464"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--metrics-addr needs IP:PORT"));
}
