//! `serve --metrics-addr`: the server's counters in Prometheus' text exposition format
//! (version 0.0.4) on `GET /metrics`, served by [`crate::http`].
//!
//! Each scrape takes a fresh snapshot (atomic loads, and the cache's lock for a moment), so a
//! scrape never waits for a request being handled and a request never waits for a scrape.
//! The names follow Prometheus' naming rules and OpenTelemetry's RPC conventions
//! (`rpc.server.call.duration` becomes `rpc_server_call_duration_seconds`); every
//! `rpc_server_*` series carries `rpc_system="rabbitmq"` and `queue="<the server queue>"`.
//! docs/monitoring.md has the reference table.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use fib_rpc::{CacheStats, FibonacciHandler, RpcServer, ServerStats, StatsHandle};

use crate::exit::{Class, Failure};
use crate::http::{HttpServer, Page};

/// Where the metrics are served.
pub const PATH: &str = "/metrics";
/// Prometheus' text format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds `--metrics-addr`, so that a port taken or an address not on this machine ends
/// `serve` at start, before it connects to anything.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, Failure> {
    TcpListener::bind(addr).map_err(|err| {
        // No permission (a port below 1024) will not change by trying again; a port in use
        // may (a previous instance still exiting), so it is a plain failure.
        let class = match err.kind() {
            std::io::ErrorKind::PermissionDenied => Class::Usage,
            _ => Class::Failure,
        };
        Failure::new(
            class,
            format!("serve: cannot listen on --metrics-addr {addr}: {err}"),
        )
    })
}

/// Serves `server`'s and `handler`'s figures on `listener` until the returned server is
/// stopped or dropped. `handler` is a clone of the one the server runs (clones share the
/// cache).
pub fn start(
    listener: TcpListener,
    server: &RpcServer,
    handler: FibonacciHandler,
) -> std::io::Result<HttpServer> {
    let stats = server.stats_handle();
    let queue = server.queue().to_owned();
    let page = Page {
        path: PATH,
        content_type: CONTENT_TYPE,
        render: Box::new(move || encode(&Snapshot::take(&stats, &handler), &queue)),
    };
    let endpoint = HttpServer::start(listener, page).map_err(|err| {
        std::io::Error::new(err.kind(), format!("starting the metrics endpoint: {err}"))
    })?;
    log::info!("metrics on {}", url(endpoint.local_addr()));
    Ok(endpoint)
}

/// What serve's ready line adds: `, metrics on http://ADDR/metrics`, or nothing.
pub fn ready_note(endpoint: Option<&HttpServer>) -> String {
    endpoint.map_or_else(String::new, |endpoint| {
        format!(", metrics on {}", url(endpoint.local_addr()))
    })
}

/// `http://ADDR/metrics`, as the logs and the ready line give it.
pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}{PATH}")
}

/// The figures one scrape shows, read at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub server: ServerStats,
    /// The handling-time histogram as (upper bound, cumulative count), `None` for `+Inf`.
    pub handling: Vec<(Option<Duration>, u64)>,
    pub handling_sum: Duration,
    pub connected: bool,
    pub cache: CacheStats,
}

impl Snapshot {
    fn take(stats: &StatsHandle, handler: &FibonacciHandler) -> Snapshot {
        let server = stats.stats();
        Snapshot {
            handling: server.handling.cumulative().collect(),
            handling_sum: server.handling.sum(),
            server,
            connected: stats.broker().is_some(),
            cache: handler.cache_stats(),
        }
    }
}

/// The exposition text of `snapshot`, for the server on `queue`.
pub fn encode(snapshot: &Snapshot, queue: &str) -> String {
    let labels = format!(r#"rpc_system="rabbitmq",queue="{}""#, label_value(queue));
    let server = &snapshot.server;
    let mut text = String::with_capacity(4096);

    let name = "rpc_server_requests_total";
    family(
        &mut text,
        name,
        "counter",
        "Requests received, by outcome: answered (ok), answered with an error reply \
         (bad_request, out_of_range, internal, other) or dropped unanswered (expired, \
         poison, no_reply_to). A request redelivered after a connection loss counts again.",
    );
    // Every code, zeros included.
    for (code, count) in server.outcomes() {
        let _ = writeln!(text, r#"{name}{{{labels},code="{code}"}} {count}"#);
    }

    let name = "rpc_server_call_duration_seconds";
    family(
        &mut text,
        name,
        "histogram",
        "Time from receiving a request to publishing its reply (answers and error replies).",
    );
    let mut count = 0;
    for &(bound, cumulative) in &snapshot.handling {
        let le = bound.map_or_else(|| "+Inf".to_owned(), seconds);
        let _ = writeln!(text, r#"{name}_bucket{{{labels},le="{le}"}} {cumulative}"#);
        count = cumulative;
    }
    let sum = seconds(snapshot.handling_sum);
    let _ = writeln!(text, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(text, "{name}_count{{{labels}}} {count}");

    for (name, kind, help, value) in [
        (
            "rpc_server_requests_in_progress",
            "gauge",
            "Requests received and not yet answered or dropped.",
            server.in_progress,
        ),
        (
            "rpc_server_reconnects_total",
            "counter",
            "Times the server connected again after losing its broker connection.",
            server.reconnects,
        ),
        (
            "rpc_server_connected",
            "gauge",
            "1 while the server is connected to a broker, else 0.",
            u64::from(snapshot.connected),
        ),
    ] {
        family(&mut text, name, kind, help);
        let _ = writeln!(text, "{name}{{{labels}}} {value}");
    }

    let cache = &snapshot.cache;
    for (name, kind, help, value) in [
        (
            "fib_rpc_cache_hits_total",
            "counter",
            "Fibonacci requests answered from the result cache.",
            cache.hits,
        ),
        (
            "fib_rpc_cache_misses_total",
            "counter",
            "Cacheable Fibonacci requests (n >= 1000) computed because their result was not \
             cached (not counted while the cache is off).",
            cache.misses,
        ),
        (
            "fib_rpc_cache_bytes",
            "gauge",
            "Bytes of results held in the result cache.",
            cache.bytes as u64,
        ),
        (
            "fib_rpc_cache_entries",
            "gauge",
            "Results held in the result cache.",
            cache.entries as u64,
        ),
    ] {
        family(&mut text, name, kind, help);
        let _ = writeln!(text, "{name} {value}");
    }

    let name = "fib_rpc_build_info";
    family(
        &mut text,
        name,
        "gauge",
        "The fib-rpc version serving; always 1.",
    );
    let version = env!("CARGO_PKG_VERSION");
    let _ = writeln!(text, r#"{name}{{version="{version}"}} 1"#);
    text
}

/// A metric family's `# HELP` and `# TYPE` lines.
fn family(text: &mut String, name: &str, kind: &str, help: &str) {
    let _ = write!(text, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

/// A duration in seconds, exactly, in plain decimal: `0.00001`, `0.000025`, `2.5`, `10`.
fn seconds(duration: Duration) -> String {
    let whole = duration.as_secs();
    let nanos = duration.subsec_nanos();
    if nanos == 0 {
        return whole.to_string();
    }
    let fraction = format!("{nanos:09}");
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

/// A label value escaped as the text format wants: `\`, `"` and newlines.
fn label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str(r"\\"),
            '"' => escaped.push_str(r#"\""#),
            '\n' => escaped.push_str(r"\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use fib_rpc::LatencyHistogram;

    #[test]
    fn exposition_text_of_a_known_snapshot() {
        let mut server = ServerStats::default();
        (server.ok, server.bad_request, server.out_of_range) = (5, 2, 1);
        (server.internal, server.other_code, server.expired) = (0, 0, 3);
        (server.poison, server.no_reply_to) = (0, 1);
        (server.in_progress, server.reconnects) = (2, 4);
        let mut cache = CacheStats::default();
        (cache.hits, cache.misses, cache.entries, cache.bytes) = (7, 9, 2, 4181);
        let snapshot = Snapshot {
            server,
            handling: vec![
                (Some(Duration::from_micros(10)), 1),
                (Some(Duration::from_micros(25)), 6),
                (Some(Duration::from_millis(2500)), 7),
                (None, 8),
            ],
            handling_sum: Duration::from_nanos(12_500_001_250),
            connected: true,
            cache,
        };
        let labels = r#"rpc_system="rabbitmq",queue="rpc_queue""#;
        let version = env!("CARGO_PKG_VERSION");
        let expected = format!(
            r#"# HELP rpc_server_requests_total Requests received, by outcome: answered (ok), answered with an error reply (bad_request, out_of_range, internal, other) or dropped unanswered (expired, poison, no_reply_to). A request redelivered after a connection loss counts again.
# TYPE rpc_server_requests_total counter
rpc_server_requests_total{{{labels},code="ok"}} 5
rpc_server_requests_total{{{labels},code="bad_request"}} 2
rpc_server_requests_total{{{labels},code="out_of_range"}} 1
rpc_server_requests_total{{{labels},code="internal"}} 0
rpc_server_requests_total{{{labels},code="other"}} 0
rpc_server_requests_total{{{labels},code="expired"}} 3
rpc_server_requests_total{{{labels},code="poison"}} 0
rpc_server_requests_total{{{labels},code="no_reply_to"}} 1
# HELP rpc_server_call_duration_seconds Time from receiving a request to publishing its reply (answers and error replies).
# TYPE rpc_server_call_duration_seconds histogram
rpc_server_call_duration_seconds_bucket{{{labels},le="0.00001"}} 1
rpc_server_call_duration_seconds_bucket{{{labels},le="0.000025"}} 6
rpc_server_call_duration_seconds_bucket{{{labels},le="2.5"}} 7
rpc_server_call_duration_seconds_bucket{{{labels},le="+Inf"}} 8
rpc_server_call_duration_seconds_sum{{{labels}}} 12.50000125
rpc_server_call_duration_seconds_count{{{labels}}} 8
# HELP rpc_server_requests_in_progress Requests received and not yet answered or dropped.
# TYPE rpc_server_requests_in_progress gauge
rpc_server_requests_in_progress{{{labels}}} 2
# HELP rpc_server_reconnects_total Times the server connected again after losing its broker connection.
# TYPE rpc_server_reconnects_total counter
rpc_server_reconnects_total{{{labels}}} 4
# HELP rpc_server_connected 1 while the server is connected to a broker, else 0.
# TYPE rpc_server_connected gauge
rpc_server_connected{{{labels}}} 1
# HELP fib_rpc_cache_hits_total Fibonacci requests answered from the result cache.
# TYPE fib_rpc_cache_hits_total counter
fib_rpc_cache_hits_total 7
# HELP fib_rpc_cache_misses_total Cacheable Fibonacci requests (n >= 1000) computed because their result was not cached (not counted while the cache is off).
# TYPE fib_rpc_cache_misses_total counter
fib_rpc_cache_misses_total 9
# HELP fib_rpc_cache_bytes Bytes of results held in the result cache.
# TYPE fib_rpc_cache_bytes gauge
fib_rpc_cache_bytes 4181
# HELP fib_rpc_cache_entries Results held in the result cache.
# TYPE fib_rpc_cache_entries gauge
fib_rpc_cache_entries 2
# HELP fib_rpc_build_info The fib-rpc version serving; always 1.
# TYPE fib_rpc_build_info gauge
fib_rpc_build_info{{version="{version}"}} 1
"#
        );
        let text = encode(&snapshot, "rpc_queue");
        for (line, (got, want)) in text.lines().zip(expected.lines()).enumerate() {
            assert_eq!(got, want, "line {}", line + 1);
        }
        assert_eq!(text, expected);
    }

    #[test]
    fn bucket_bounds_are_exact_decimal_seconds() {
        let bounds: Vec<String> = LatencyHistogram::bounds().map(seconds).collect();
        assert_eq!(
            bounds,
            [
                "0.00001", "0.000025", "0.00005", "0.0001", "0.00025", "0.0005", "0.001", "0.0025",
                "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10"
            ]
        );
        assert_eq!(seconds(Duration::ZERO), "0");
        assert_eq!(seconds(Duration::from_nanos(1)), "0.000000001");
    }

    #[test]
    fn an_empty_server_shows_every_series_at_zero() {
        let histogram = LatencyHistogram::default();
        let snapshot = Snapshot {
            handling: histogram.cumulative().collect(),
            handling_sum: histogram.sum(),
            ..Snapshot::default()
        };
        let text = encode(&snapshot, "q");
        assert_eq!(text.matches("rpc_server_requests_total{").count(), 8);
        assert_eq!(
            text.matches("rpc_server_call_duration_seconds_bucket{")
                .count(),
            LatencyHistogram::bounds().len() + 1
        );
        assert!(text.contains(r#"le="+Inf"} 0"#));
        assert!(text.contains(
            "rpc_server_call_duration_seconds_sum{rpc_system=\"rabbitmq\",queue=\"q\"} 0\n"
        ));
        assert!(text.contains("rpc_server_connected{rpc_system=\"rabbitmq\",queue=\"q\"} 0\n"));
        // Every sample line is `name{labels} value` or `name value`, value a number.
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let name = series.split('{').next().unwrap();
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{line}"
            );
        }
    }

    #[test]
    fn queue_names_are_escaped_in_labels() {
        assert_eq!(label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(label_value("line\nbreak"), r"line\nbreak");
        assert_eq!(label_value("plain.queue-1"), "plain.queue-1");
        let text = encode(&Snapshot::default(), "x\"y");
        assert!(text.contains(r#"queue="x\"y""#));
    }
}
