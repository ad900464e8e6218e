//! The command line: what `fib-rpc` accepts, parsed into plain structs, and the help texts.
//!
//! Global options may appear before or after the command (`fib-rpc --queue q call 5` and
//! `fib-rpc call 5 --queue q` mean the same).

use std::ffi::OsString;
use std::time::Duration;

use fib_rpc::{ReplyTo, DEFAULT_MAX_N, DEFAULT_PREFETCH, DEFAULT_URL};
use lexopt::prelude::*;

/// Options every command takes.
#[derive(Debug)]
pub struct Global {
    /// Broker URLs, tried in turn (failover); they may hold passwords: never print them
    /// unredacted.
    pub urls: Vec<String>,
    /// AMQP heartbeat interval.
    pub heartbeat: u16,
    pub queue: String,
    /// Where `call` and `bench` get their replies; `None`: the command's own default.
    pub reply_to: Option<ReplyTo>,
    /// How many times `-v` was given.
    pub verbosity: u8,
}

#[derive(Debug)]
pub enum Command {
    /// `--help`, for the whole tool or for one command.
    Help(Option<CommandName>),
    Version,
    Serve(ServeArgs),
    Call(CallArgs),
    Bench(BenchArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandName {
    Serve,
    Call,
    Bench,
}

#[derive(Debug)]
pub struct ServeArgs {
    /// `None`: one per CPU (the library's default).
    pub workers: Option<usize>,
    pub prefetch: u16,
    pub max_n: u64,
    pub durable_quorum: bool,
    pub cache_bytes: usize,
}

#[derive(Debug)]
pub struct CallArgs {
    pub timeout: Duration,
    /// How many calls `call` keeps in flight at once.
    pub in_flight: usize,
    pub numbers: Numbers,
}

/// Where `call` gets its N from.
#[derive(Debug, PartialEq, Eq)]
pub enum Numbers {
    /// From the command line, unparsed: a bad one is reported with its own exit code.
    Args(Vec<String>),
    /// One per line from standard input (`call -`).
    Stdin,
}

#[derive(Debug)]
pub struct BenchArgs {
    pub callers: usize,
    pub length: BenchLength,
    pub n: u64,
    pub timeout: Duration,
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BenchLength {
    Calls(u64),
    Time(Duration),
}

/// The default call timeout of `call` and `bench`, as the library's.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for `call --in-flight`: enough to keep a server's workers busy.
pub const DEFAULT_IN_FLIGHT: usize = 64;
/// Default for `bench --calls` when neither `--calls` nor `--seconds` is given.
pub const DEFAULT_BENCH_CALLS: u64 = 10_000;

/// Default for `serve --cache-mib`: the library's default cache size.
pub const DEFAULT_CACHE_MIB: usize = fib_rpc::DEFAULT_CACHE_BYTES >> 20;
/// Default for `--heartbeat`, as the library's.
pub const DEFAULT_HEARTBEAT: u16 = 15;

/// Upper bounds that keep a typo from asking for millions of threads or slots.
const MAX_WORKERS: usize = 1024;
const MAX_CALLERS: usize = 4096;
const MAX_IN_FLIGHT: usize = 65_536;
/// Longest `--timeout` or `--seconds`: a year.
const MAX_SECONDS: f64 = 365.0 * 86_400.0;

/// A command line we cannot run; printed with a hint to `--help`, exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl From<lexopt::Error> for UsageError {
    fn from(err: lexopt::Error) -> Self {
        UsageError(err.to_string())
    }
}

/// Parses the command line (without the program name). `amqp_url_env` is `AMQP_URL`, which
/// may hold several URLs separated by whitespace; so may `--url`, given more than once.
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    amqp_url_env: Option<String>,
) -> Result<(Global, Command), UsageError> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut global = Global {
        urls: amqp_url_env
            .map(|urls| urls.split_whitespace().map(str::to_owned).collect())
            .filter(|urls: &Vec<String>| !urls.is_empty())
            .unwrap_or_else(|| vec![DEFAULT_URL.to_owned()]),
        heartbeat: DEFAULT_HEARTBEAT,
        queue: fib_rpc::DEFAULT_QUEUE.to_owned(),
        reply_to: None,
        verbosity: 0,
    };
    let mut command: Option<CommandName> = None;
    let mut help = false;
    let mut version = false;
    // Options of every command are collected, then checked against the command given.
    let mut seen: Vec<(&'static str, &'static [CommandName])> = Vec::new();
    let mut serve = ServeArgs {
        workers: None,
        prefetch: DEFAULT_PREFETCH,
        max_n: DEFAULT_MAX_N,
        durable_quorum: false,
        cache_bytes: DEFAULT_CACHE_MIB << 20,
    };
    let mut urls_given: Vec<String> = Vec::new();
    let mut timeout = DEFAULT_TIMEOUT;
    let mut in_flight = DEFAULT_IN_FLIGHT;
    let mut positional: Vec<String> = Vec::new();
    let mut callers = 1;
    let mut calls: Option<u64> = None;
    let mut seconds: Option<Duration> = None;
    let mut bench_n = 10;
    let mut json = false;

    loop {
        // `-5` is a (bad) N for `call`, not an option: keep it so it gets the bad-N exit code.
        if command == Some(CommandName::Call) {
            if let Some(arg) = take_dash_number(&mut parser) {
                positional.push(arg);
                continue;
            }
        }
        let Some(arg) = parser.next()? else { break };
        match arg {
            Short('h') | Long("help") => help = true,
            Short('V') | Long("version") => version = true,
            Short('v') | Long("verbose") => global.verbosity = global.verbosity.saturating_add(1),
            Long("url") => urls_given.push(parser.value()?.string()?),
            Long("heartbeat") => {
                global.heartbeat = whole_number(&mut parser, "--heartbeat", u16::MAX)?;
            }
            Long("queue") => global.queue = parser.value()?.string()?,
            Long("reply-to") => {
                seen.push(("--reply-to", &[CommandName::Call, CommandName::Bench]));
                global.reply_to = match parser.value()?.string()?.as_str() {
                    "queue" => Some(ReplyTo::ExclusiveQueue),
                    "direct" => Some(ReplyTo::Direct),
                    other => {
                        return Err(UsageError(format!(
                            "--reply-to takes `queue` or `direct`, not {other:?}"
                        )))
                    }
                };
            }

            Long("workers") => {
                seen.push(("--workers", &[CommandName::Serve]));
                serve.workers = Some(whole_number(&mut parser, "--workers", MAX_WORKERS)?);
            }
            Long("prefetch") => {
                seen.push(("--prefetch", &[CommandName::Serve]));
                serve.prefetch = whole_number(&mut parser, "--prefetch", u16::MAX)?;
            }
            Long("max-n") => {
                seen.push(("--max-n", &[CommandName::Serve]));
                serve.max_n = parser.value()?.parse()?;
            }
            Long("cache-mib") => {
                seen.push(("--cache-mib", &[CommandName::Serve]));
                let mib: usize = parser.value()?.parse()?;
                serve.cache_bytes = mib.checked_mul(1 << 20).ok_or_else(|| {
                    UsageError(format!("--cache-mib {mib} is too large for this machine"))
                })?;
            }
            Long("durable-quorum") => {
                seen.push(("--durable-quorum", &[CommandName::Serve]));
                serve.durable_quorum = true;
            }

            Long("timeout") => {
                seen.push(("--timeout", &[CommandName::Call, CommandName::Bench]));
                timeout = seconds_value(&mut parser, "--timeout")?;
            }
            Long("in-flight") => {
                seen.push(("--in-flight", &[CommandName::Call]));
                in_flight = whole_number(&mut parser, "--in-flight", MAX_IN_FLIGHT)?;
            }

            Long("callers") => {
                seen.push(("--callers", &[CommandName::Bench]));
                callers = whole_number(&mut parser, "--callers", MAX_CALLERS)?;
            }
            Long("calls") => {
                seen.push(("--calls", &[CommandName::Bench]));
                calls = Some(whole_number(&mut parser, "--calls", u64::MAX)?);
            }
            Long("seconds") => {
                seen.push(("--seconds", &[CommandName::Bench]));
                seconds = Some(seconds_value(&mut parser, "--seconds")?);
            }
            Long("n") => {
                seen.push(("--n", &[CommandName::Bench]));
                bench_n = parser.value()?.parse()?;
            }
            Long("json") => {
                seen.push(("--json", &[CommandName::Bench]));
                json = true;
            }

            Value(value) if command.is_none() => {
                command = Some(match value.to_str() {
                    Some("serve") => CommandName::Serve,
                    Some("call") => CommandName::Call,
                    Some("bench") => CommandName::Bench,
                    Some("help") => {
                        help = true;
                        continue;
                    }
                    _ => return Err(UsageError(format!("unknown command {value:?}"))),
                });
            }
            Value(value) if command == Some(CommandName::Call) => {
                positional.push(value.string()?);
            }
            Value(value) => return Err(lexopt::Error::UnexpectedArgument(value).into()),
            _ => return Err(arg.unexpected().into()),
        }
    }

    if !urls_given.is_empty() {
        global.urls = urls_given;
    }
    if help {
        return Ok((global, Command::Help(command)));
    }
    if version {
        return Ok((global, Command::Version));
    }
    let Some(command) = command else {
        return Err(UsageError("missing command: serve, call or bench".into()));
    };
    if let Some((option, _)) = seen.iter().find(|(_, owners)| !owners.contains(&command)) {
        return Err(UsageError(format!(
            "{option} is not an option of `{}`",
            command.as_str()
        )));
    }

    let command = match command {
        CommandName::Serve => Command::Serve(serve),
        CommandName::Call => {
            let numbers = match positional.as_slice() {
                [] => {
                    return Err(UsageError(
                        "call: give at least one N, or - to read stdin".into(),
                    ))
                }
                [only] if only == "-" => Numbers::Stdin,
                many if many.iter().any(|n| n == "-") => {
                    return Err(UsageError(
                        "call: - (read stdin) cannot be mixed with N arguments".into(),
                    ))
                }
                _ => Numbers::Args(positional),
            };
            Command::Call(CallArgs {
                timeout,
                in_flight,
                numbers,
            })
        }
        CommandName::Bench => {
            let length = match (calls, seconds) {
                (Some(_), Some(_)) => {
                    return Err(UsageError(
                        "bench: give --calls or --seconds, not both".into(),
                    ))
                }
                (Some(calls), None) => BenchLength::Calls(calls),
                (None, Some(seconds)) => BenchLength::Time(seconds),
                (None, None) => BenchLength::Calls(DEFAULT_BENCH_CALLS),
            };
            Command::Bench(BenchArgs {
                callers,
                length,
                n: bench_n,
                timeout,
                json,
            })
        }
    };
    Ok((global, command))
}

/// Takes the next argument if it looks like a negative number (`-5`), before lexopt would
/// read it as short options.
fn take_dash_number(parser: &mut lexopt::Parser) -> Option<String> {
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

/// A whole number from 1 to `max`.
fn whole_number<T>(parser: &mut lexopt::Parser, option: &str, max: T) -> Result<T, UsageError>
where
    T: std::str::FromStr + PartialOrd + From<u8> + std::fmt::Display,
{
    let text = parser.value()?.string()?;
    match text.parse::<T>() {
        Ok(value) if value >= T::from(1) && value <= max => Ok(value),
        _ => Err(UsageError(format!(
            "{option} needs a whole number from 1 to {max}, got {text:?}"
        ))),
    }
}

/// A number of seconds above zero and at most [`MAX_SECONDS`], fractions allowed (`0.5`).
fn seconds_value(parser: &mut lexopt::Parser, option: &str) -> Result<Duration, UsageError> {
    let text = parser.value()?.string()?;
    text.parse::<f64>()
        .ok()
        .filter(|secs| *secs > 0.0 && *secs <= MAX_SECONDS)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            UsageError(format!(
                "{option} needs a number of seconds above 0 and at most {MAX_SECONDS}, got {text:?}"
            ))
        })
}

impl CommandName {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandName::Serve => "serve",
            CommandName::Call => "call",
            CommandName::Bench => "bench",
        }
    }
}
