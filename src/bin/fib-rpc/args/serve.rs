//! `fib-rpc serve`: its options and help.

use std::net::SocketAddr;
use std::time::Duration;

use fib_rpc::{DEFAULT_CACHE_BYTES, DEFAULT_MAX_N, DEFAULT_PREFETCH};
use lexopt::prelude::*;
use lexopt::Parser;

use super::{whole_number, Command, CommandName, Options, UsageError};

#[derive(Debug)]
pub struct ServeArgs {
    /// `None`: one per CPU (the library's default).
    pub workers: Option<usize>,
    pub prefetch: u16,
    pub max_n: u64,
    pub durable_quorum: bool,
    pub cache_bytes: usize,
    /// Ack a request only once the broker confirms its reply (`--no-confirms` turns it off).
    pub confirms: bool,
    /// How often to log a line about the traffic since the last one; `None`: never.
    pub log_interval: Option<Duration>,
    /// Where to serve Prometheus metrics (`--metrics-addr`); `None`: nowhere.
    pub metrics_addr: Option<SocketAddr>,
}

/// The options below, as in the help.
pub(super) const OPTIONS: &[&str] = &[
    "--workers N",
    "--prefetch N",
    "--max-n N",
    "--durable-quorum",
    "--cache-mib N",
    "--no-confirms",
    "--log-interval S",
    "--metrics-addr ADDR",
];

/// Default for `--cache-mib`: the library's default cache size.
const DEFAULT_CACHE_MIB: usize = DEFAULT_CACHE_BYTES >> 20;
/// Most `--workers`: keeps a typo from asking for millions of threads.
const MAX_WORKERS: usize = 1024;
/// Default for `--log-interval`, in seconds.
const DEFAULT_LOG_INTERVAL: u64 = 60;
/// Longest `--log-interval`: a day.
const MAX_LOG_INTERVAL: u64 = 86_400;

/// Reads the arguments of `serve`: its options given before it, then the arguments after it.
pub(super) fn parse_serve(
    parsers: [Parser; 2],
    options: &mut Options,
) -> Result<Command, UsageError> {
    let mut args = ServeArgs {
        workers: None,
        prefetch: DEFAULT_PREFETCH,
        max_n: DEFAULT_MAX_N,
        durable_quorum: false,
        cache_bytes: DEFAULT_CACHE_MIB << 20,
        confirms: true,
        log_interval: Some(Duration::from_secs(DEFAULT_LOG_INTERVAL)),
        metrics_addr: None,
    };
    for mut parser in parsers {
        while let Some(arg) = parser.next()? {
            match arg {
                Long("workers") => {
                    args.workers = Some(whole_number(&mut parser, "--workers", MAX_WORKERS)?)
                }
                Long("prefetch") => {
                    args.prefetch = whole_number(&mut parser, "--prefetch", u16::MAX)?
                }
                Long("max-n") => args.max_n = parser.value()?.parse()?,
                Long("cache-mib") => args.cache_bytes = cache_bytes(&mut parser)?,
                Long("durable-quorum") => args.durable_quorum = true,
                Long("no-confirms") => args.confirms = false,
                Long("log-interval") => args.log_interval = log_interval(&mut parser)?,
                Long("metrics-addr") => args.metrics_addr = Some(metrics_addr(&mut parser)?),
                arg => options.take(arg.into(), &mut parser)?,
            }
        }
    }
    if let Some(instead) = options.instead_of(CommandName::Serve)? {
        return Ok(instead);
    }
    Ok(Command::Serve(args))
}

/// `--cache-mib N`, in bytes.
fn cache_bytes(parser: &mut Parser) -> Result<usize, UsageError> {
    let mib: usize = parser.value()?.parse()?;
    mib.checked_mul(1 << 20)
        .ok_or_else(|| UsageError(format!("--cache-mib {mib} is too large for this machine")))
}

/// `--log-interval S`: whole seconds, 0 for never.
fn log_interval(parser: &mut Parser) -> Result<Option<Duration>, UsageError> {
    let text = parser.value()?.string()?;
    match text.parse::<u64>() {
        Ok(0) => Ok(None),
        Ok(secs) if secs <= MAX_LOG_INTERVAL => Ok(Some(Duration::from_secs(secs))),
        _ => Err(UsageError(format!(
            "--log-interval needs a whole number of seconds from 0 (never) to \
             {MAX_LOG_INTERVAL}, got {text:?}"
        ))),
    }
}

/// `--metrics-addr IP:PORT`: an IP address, not a host name (no lookup at start-up, and the
/// address is exactly what gets bound).
fn metrics_addr(parser: &mut Parser) -> Result<SocketAddr, UsageError> {
    let text = parser.value()?.string()?;
    text.parse().map_err(|_| {
        UsageError(format!(
            "--metrics-addr needs IP:PORT, e.g. 127.0.0.1:9464 or [::1]:9464, got {text:?}"
        ))
    })
}

/// `fib-rpc serve --help`, before the global options.
pub(super) fn help() -> String {
    format!(
        "Usage: fib-rpc serve [OPTIONS]

Serves fib(n) on the queue. Logs on stderr at info level: one line once it consumes, one
per --log-interval with traffic (requests by outcome, p50/p99 handling time), and a
summary when it stops. On SIGTERM or SIGINT it stops taking requests, answers those it
has (for at most 30 s) and exits 0; a second signal, or a longer drain, exits at once
(unanswered requests go back to the queue for another server). SIGTERM always exits 0,
also while waiting for the broker; SIGINT exits 130 when it cuts start-up or the drain
short. Under systemd (Type=notify) it reports readiness, stopping and watchdog pings.

Options:
  --workers N        Worker threads, each with its own reply channel; all share one
                     consumer (default: one per CPU)
  --prefetch N       Unacknowledged requests per worker (default {DEFAULT_PREFETCH})
  --max-n N          Largest n served; larger gets an out_of_range error (default {DEFAULT_MAX_N})
  --durable-quorum   If the queue does not exist, declare it durable quorum (default classic)
  --cache-mib N      Memory for cached results of n >= 1000, in MiB; 0 turns it off
                     (default {DEFAULT_CACHE_MIB})
  --no-confirms      Ack each request as soon as its reply is published, without waiting
                     for the broker to confirm the reply (faster; a reply lost in a broker
                     failure is then never sent again)
  --log-interval S   Log the traffic every S seconds, when there was any (default
                     {DEFAULT_LOG_INTERVAL}); 0 turns it off
  --metrics-addr ADDR  Serve Prometheus metrics on http://ADDR/metrics; ADDR is IP:PORT
                     (127.0.0.1:9464, [::1]:9464, 0.0.0.0:9464; port 0: any free port, named
                     in the ready line). Default: off, no port opened

If the broker cannot be reached at start-up, it retries with backoff until it can (bad
credentials or vhost exit 7 at once). Once serving, it never exits because the broker went
away: it reconnects and resumes.
"
    )
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::super::{parse, Command};

    fn metrics_addr(args: &[&str]) -> Result<Option<String>, String> {
        match parse(args.iter().map(OsString::from), None) {
            Ok((_, Command::Serve(serve))) => Ok(serve.metrics_addr.map(|a| a.to_string())),
            Ok((_, other)) => panic!("{other:?}"),
            Err(err) => Err(err.0),
        }
    }

    #[test]
    fn metrics_addr_is_an_ip_and_port() {
        assert_eq!(metrics_addr(&["serve"]), Ok(None), "off by default");
        for addr in [
            "127.0.0.1:9464",
            "[::1]:9464",
            "0.0.0.0:9464",
            "127.0.0.1:0",
        ] {
            let given = metrics_addr(&["serve", "--metrics-addr", addr]);
            assert_eq!(given, Ok(Some(addr.to_owned())));
        }
        assert_eq!(
            metrics_addr(&["--metrics-addr=[::]:1", "serve"]),
            Ok(Some("[::]:1".to_owned()))
        );
        for bad in [
            "localhost:9464",
            "9464",
            "127.0.0.1",
            "::1:9464",
            "1.2.3.4:70000",
            "",
        ] {
            let err = metrics_addr(&["serve", "--metrics-addr", bad]).unwrap_err();
            assert!(
                err.starts_with("--metrics-addr needs IP:PORT"),
                "{bad}: {err}"
            );
        }
        let err = metrics_addr(&["call", "5", "--metrics-addr", "127.0.0.1:1"]).unwrap_err();
        assert_eq!(err, "--metrics-addr is not an option of `call`");
    }
}
