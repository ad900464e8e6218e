//! `fib-rpc status`: its options and help.

use std::time::Duration;

use lexopt::prelude::*;
use lexopt::Parser;

use super::{seconds_value, Command, CommandName, Options, UsageError};

#[derive(Debug)]
pub struct StatusArgs {
    /// How long to wait for the broker's answer (connecting aside).
    pub timeout: Duration,
    pub json: bool,
}

/// The options below, as in the help.
pub(super) const OPTIONS: &[&str] = &["--timeout SECONDS", "--json"];

/// Default for `--timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the arguments of `status`: its options given before it, then the arguments after it.
pub(super) fn parse_status(
    parsers: [Parser; 2],
    options: &mut Options,
) -> Result<Command, UsageError> {
    let mut args = StatusArgs {
        timeout: DEFAULT_TIMEOUT,
        json: false,
    };
    for mut parser in parsers {
        while let Some(arg) = parser.next()? {
            match arg {
                Long("timeout") => args.timeout = seconds_value(&mut parser, "--timeout")?,
                Long("json") => args.json = true,
                arg => options.take(arg.into(), &mut parser)?,
            }
        }
    }
    if let Some(instead) = options.instead_of(CommandName::Status)? {
        return Ok(instead);
    }
    Ok(Command::Status(args))
}

/// `fib-rpc status --help`, before the global options.
pub(super) fn help() -> String {
    format!(
        "Usage: fib-rpc status [OPTIONS]

Asks the broker about the server queue (--queue) and prints one line: whether it exists, how
many servers consume it (a fib-rpc server is one consumer, whatever its workers) and how many requests
wait in it. The exit code says the same for scripts: 0 when at least one server consumes the
queue, 9 when it exists but nobody consumes it, 6 when there is no such queue, 7 when the
broker cannot be reached.

Options:
  --timeout SECONDS  How long to wait for the broker's answer (default {timeout})
  --json             Print one JSON object instead: {{\"queue\":\"rpc_queue\",\"exists\":true,
                     \"consumers\":2,\"messages\":0}}
",
        timeout = DEFAULT_TIMEOUT.as_secs(),
    )
}
