//! `fib-rpc call`: its arguments and help.

use std::time::Duration;

use fib_rpc::TraceParent;
use lexopt::prelude::*;
use lexopt::Parser;

use super::DEFAULT_TIMEOUT;
use super::{seconds_value, whole_number, Command, CommandName, Options, UsageError};

#[derive(Debug)]
pub struct CallArgs {
    pub timeout: Duration,
    /// How many calls `call` keeps in flight at once.
    pub in_flight: usize,
    pub numbers: Numbers,
    /// Send a call again when its request may have been lost (`--no-retry` turns it off).
    pub retry: bool,
    /// The W3C trace context every call carries (`--traceparent`).
    pub traceparent: Option<TraceParent>,
    /// Fail at once when no server consumes the queue (`--wait-for-server` turns it off).
    pub require_server: bool,
}

/// Where `call` gets its N from.
#[derive(Debug, PartialEq, Eq)]
pub enum Numbers {
    /// From the command line, unparsed: a bad one is reported with its own exit code.
    Args(Vec<String>),
    /// One per line from standard input (`call -`).
    Stdin,
}

/// The options below, as in the help.
pub(super) const OPTIONS: &[&str] = &[
    "--timeout SECONDS",
    "--in-flight N",
    "--no-retry",
    "--traceparent TP",
    "--wait-for-server",
];

/// Default for `--in-flight`: enough to keep a server's workers busy.
const DEFAULT_IN_FLIGHT: usize = 64;
/// Most `--in-flight`: keeps a typo from asking for millions of slots.
const MAX_IN_FLIGHT: usize = 65_536;

/// Reads the arguments of `call`: its options given before it, then the arguments after it.
pub(super) fn parse_call(
    parsers: [Parser; 2],
    options: &mut Options,
) -> Result<Command, UsageError> {
    let mut timeout = DEFAULT_TIMEOUT;
    let mut in_flight = DEFAULT_IN_FLIGHT;
    let mut retry = true;
    let mut traceparent = None;
    let mut require_server = true;
    let mut positional = Vec::new();
    for mut parser in parsers {
        loop {
            // `-5` is a (bad) N, not an option: keep it so it gets the bad-N exit code.
            if let Some(arg) = take_dash_number(&mut parser) {
                positional.push(arg);
                continue;
            }
            let Some(arg) = parser.next()? else { break };
            match arg {
                Long("timeout") => timeout = seconds_value(&mut parser, "--timeout")?,
                Long("in-flight") => {
                    in_flight = whole_number(&mut parser, "--in-flight", MAX_IN_FLIGHT)?
                }
                Long("no-retry") => retry = false,
                Long("traceparent") => {
                    let text = parser.value()?.string()?;
                    let parsed = text.parse::<TraceParent>().map_err(|err| {
                        UsageError(format!("--traceparent: {}", err.full_message()))
                    })?;
                    traceparent = Some(parsed);
                }
                Long("wait-for-server") => require_server = false,
                Value(value) => positional.push(value.string()?),
                arg => options.take(arg.into(), &mut parser)?,
            }
        }
    }
    if let Some(instead) = options.instead_of(CommandName::Call)? {
        return Ok(instead);
    }
    Ok(Command::Call(CallArgs {
        timeout,
        in_flight,
        numbers: numbers(positional)?,
        retry,
        traceparent,
        require_server,
    }))
}

/// Takes the next argument if it looks like a negative number (`-5`), before lexopt would
/// read it as short options.
fn take_dash_number(parser: &mut Parser) -> Option<String> {
    let mut raw = parser.try_raw_args()?;
    let arg = raw.peek()?.to_str()?;
    let digits = arg.strip_prefix('-')?;
    if digits.is_empty() || !digits.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let arg = arg.to_owned();
    raw.next();
    Some(arg)
}

/// The N arguments, or `-` alone for stdin.
fn numbers(positional: Vec<String>) -> Result<Numbers, UsageError> {
    match positional.as_slice() {
        [] => Err(UsageError(
            "call: give at least one N, or - to read stdin".into(),
        )),
        [only] if only == "-" => Ok(Numbers::Stdin),
        many if many.iter().any(|n| n == "-") => Err(UsageError(
            "call: - (read stdin) cannot be mixed with N arguments".into(),
        )),
        _ => Ok(Numbers::Args(positional)),
    }
}

/// `fib-rpc call --help`, before the global options.
pub(super) fn help() -> String {
    format!(
        "Usage: fib-rpc call [OPTIONS] N...
       fib-rpc call [OPTIONS] -

Prints fib(N) in decimal, one line per N, in the order given. With -, reads one N per line
from stdin and keeps up to --in-flight calls going through one connection, still printing in
input order. Stops at the first failure with a one-line reason on stderr and its exit code;
the answers before it are printed.

Options:
  --timeout SECONDS  How long each call waits for its answer (default {timeout})
  --in-flight N      Calls kept in flight at once (default {DEFAULT_IN_FLIGHT})
  --no-retry         Do not send a call again when its request may have been lost (after a
                     connection loss or a refusal by the broker): fail with exit code 8 or 7
  --traceparent TP   Send this W3C trace context (00-<trace id>-<span id>-<flags>) with every
                     call; the server's log lines about the request carry it
  --wait-for-server  When the queue exists but no server consumes it, send anyway and wait
                     up to --timeout for one to start, instead of failing at once (exit 9)
",
        timeout = DEFAULT_TIMEOUT.as_secs(),
    )
}
