//! `fib-rpc bench`: its options and help.

use std::time::Duration;

use lexopt::prelude::*;
use lexopt::Parser;

use super::DEFAULT_TIMEOUT;
use super::{seconds_value, whole_number, Command, CommandName, Options, UsageError};

#[derive(Debug)]
pub struct BenchArgs {
    pub callers: usize,
    pub length: BenchLength,
    pub n: u64,
    pub timeout: Duration,
    pub json: bool,
    /// Send a call again when its request may have been lost (`--no-retry` turns it off).
    pub retry: bool,
    /// Have the broker confirm each request (`--no-confirms` turns it off).
    pub confirms: bool,
    /// Exit 0 even when calls failed (`--keep-going`); by default any failed or wrong call
    /// makes the exit code non-zero.
    pub keep_going: bool,
    /// Fail a call at once when no server consumes the queue (`--wait-for-server` turns it
    /// off).
    pub require_server: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BenchLength {
    Calls(u64),
    Time(Duration),
}

/// The options below, as in the help.
pub(super) const OPTIONS: &[&str] = &[
    "--callers C",
    "--calls K",
    "--seconds S",
    "--n N",
    "--timeout SECONDS",
    "--json",
    "--no-retry",
    "--no-confirms",
    "--keep-going",
    "--wait-for-server",
];

/// Default for `--calls` when neither `--calls` nor `--seconds` is given.
const DEFAULT_CALLS: u64 = 10_000;
/// Most `--callers`: keeps a typo from asking for millions of threads.
const MAX_CALLERS: usize = 4096;

/// Reads the arguments of `bench`: its options given before it, then the arguments after it.
pub(super) fn parse_bench(
    parsers: [Parser; 2],
    options: &mut Options,
) -> Result<Command, UsageError> {
    let mut args = BenchArgs {
        callers: 1,
        length: BenchLength::Calls(DEFAULT_CALLS),
        n: 10,
        timeout: DEFAULT_TIMEOUT,
        json: false,
        retry: true,
        confirms: true,
        keep_going: false,
        require_server: true,
    };
    let (mut calls, mut seconds) = (None, None);
    for mut parser in parsers {
        while let Some(arg) = parser.next()? {
            match arg {
                Long("callers") => {
                    args.callers = whole_number(&mut parser, "--callers", MAX_CALLERS)?
                }
                Long("calls") => calls = Some(whole_number(&mut parser, "--calls", u64::MAX)?),
                Long("seconds") => seconds = Some(seconds_value(&mut parser, "--seconds")?),
                Long("n") => args.n = parser.value()?.parse()?,
                Long("timeout") => args.timeout = seconds_value(&mut parser, "--timeout")?,
                Long("json") => args.json = true,
                Long("no-retry") => args.retry = false,
                Long("no-confirms") => args.confirms = false,
                Long("keep-going") => args.keep_going = true,
                Long("wait-for-server") => args.require_server = false,
                arg => options.take(arg.into(), &mut parser)?,
            }
        }
    }
    if let Some(instead) = options.instead_of(CommandName::Bench)? {
        return Ok(instead);
    }
    args.length = length(calls, seconds)?;
    Ok(Command::Bench(args))
}

/// `--calls K` or `--seconds S`, not both; by default [`DEFAULT_CALLS`].
fn length(calls: Option<u64>, seconds: Option<Duration>) -> Result<BenchLength, UsageError> {
    match (calls, seconds) {
        (Some(_), Some(_)) => Err(UsageError(
            "bench: give --calls or --seconds, not both".into(),
        )),
        (Some(calls), None) => Ok(BenchLength::Calls(calls)),
        (None, Some(seconds)) => Ok(BenchLength::Time(seconds)),
        (None, None) => Ok(BenchLength::Calls(DEFAULT_CALLS)),
    }
}

/// `fib-rpc bench --help`, before the global options.
pub(super) fn help() -> String {
    format!(
        "Usage: fib-rpc bench [OPTIONS]

Runs C threads that share one client and call fib(N) back to back, for K calls in all or
for S seconds. Prints a table with failed calls counted by kind. Every answer is checked
against fib(N); if any call failed or answered wrongly, the exit code is that of the most
frequent failure (1 for wrong answers), unless --keep-going.

Options:
  --callers C        Threads calling at once (default 1)
  --calls K          Calls in all (default {DEFAULT_CALLS})
  --seconds S        Run for S seconds instead
  --n N              The n to ask for (default 10)
  --timeout SECONDS  How long each call waits for its answer (default {timeout})
  --json             Also print the results as one JSON object on the last line
  --no-retry         Do not send a call again when its request may have been lost (after a
                     connection loss or a refusal by the broker); count it as failed
  --no-confirms      Do not have the broker confirm each request (to measure their cost)
  --keep-going       Exit 0 even when calls failed (the table still counts them)
  --wait-for-server  Send calls even when no server consumes the queue, and let them wait
                     for one; by default such calls fail at once (counted as no_consumer)
",
        timeout = DEFAULT_TIMEOUT.as_secs(),
    )
}
