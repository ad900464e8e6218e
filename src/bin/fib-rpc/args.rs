//! The command line: what `fib-rpc` accepts, parsed into plain structs, and the help texts.
//!
//! The global options are read here, before or after the command (`fib-rpc --queue q call 5`
//! and `fib-rpc call 5 --queue q` mean the same); each command reads its own options in its
//! module, next to its help text, and hands whatever else it meets back to [`Options::take`].

mod bench;
mod call;
mod serve;

use std::ffi::OsString;
use std::time::Duration;

use fib_rpc::{ReplyTo, DEFAULT_URL};
use lexopt::prelude::*;
use lexopt::{Arg, Parser};

use crate::exit::Class;

pub use bench::{BenchArgs, BenchLength};
pub use call::{CallArgs, Numbers};
pub use serve::ServeArgs;

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

/// A command line we cannot run; printed with a hint to `--help`, exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl From<lexopt::Error> for UsageError {
    fn from(err: lexopt::Error) -> Self {
        UsageError(err.to_string())
    }
}

/// Default call timeout of `call` and `bench`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30); // = the library's default
/// Default for `--heartbeat`, in seconds.
const DEFAULT_HEARTBEAT: u16 = 15; // = the library's default
/// Longest `--timeout` or `--seconds`: a year.
const MAX_SECONDS: f64 = 365.0 * 86_400.0;

/// Parses the command line (without the program name). `amqp_url_env` is `AMQP_URL`, which
/// may hold several URLs separated by whitespace; so may `--url`, given more than once.
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    amqp_url_env: Option<String>,
) -> Result<(Global, Command), UsageError> {
    let mut parser = Parser::from_args(args);
    let mut options = Options::new(amqp_url_env);
    let command = loop {
        let Some(arg) = parser.next()? else {
            break options.without_command()?;
        };
        match arg {
            Value(word) => match word.to_str() {
                Some("serve") => break serve::parse_serve(&mut parser, &mut options)?,
                Some("call") => break call::parse_call(&mut parser, &mut options)?,
                Some("bench") => break bench::parse_bench(&mut parser, &mut options)?,
                Some("help") => options.help = true,
                _ => return Err(UsageError(format!("unknown command {word:?}"))),
            },
            arg => options.take(arg.into(), &mut parser)?,
        }
    };
    Ok((options.into_global(), command))
}

/// The global options as read so far, and what they ask for instead of running the command.
struct Options {
    global: Global,
    /// `--url`s given; they replace `AMQP_URL` (or the default) rather than add to it.
    urls: Vec<String>,
    help: bool,
    version: bool,
    /// The first option of some command met where it does not belong (before the command,
    /// or after another command); refused once `--help` and `--version` have had their say.
    misplaced: Option<&'static str>,
}

/// An argument a command did not take, detached from the parser (a lexopt [`Arg`] borrows
/// it), so that [`Options::take`] can still read the option's value.
enum Unclaimed {
    Short(char),
    Long(String),
    Value(OsString),
}

impl From<Arg<'_>> for Unclaimed {
    fn from(arg: Arg<'_>) -> Self {
        match arg {
            Short(short) => Unclaimed::Short(short),
            Long(long) => Unclaimed::Long(long.to_owned()),
            Value(value) => Unclaimed::Value(value),
        }
    }
}

impl Unclaimed {
    fn as_arg(&self) -> Arg<'_> {
        match self {
            Unclaimed::Short(short) => Short(*short),
            Unclaimed::Long(long) => Long(long),
            Unclaimed::Value(value) => Value(value.clone()),
        }
    }
}

impl Options {
    fn new(amqp_url_env: Option<String>) -> Self {
        let urls = amqp_url_env
            .map(|urls| urls.split_whitespace().map(str::to_owned).collect())
            .filter(|urls: &Vec<String>| !urls.is_empty())
            .unwrap_or_else(|| vec![DEFAULT_URL.to_owned()]);
        Options {
            global: Global {
                urls,
                heartbeat: DEFAULT_HEARTBEAT,
                queue: fib_rpc::wire::DEFAULT_QUEUE.to_owned(),
                reply_to: None,
                verbosity: 0,
            },
            urls: Vec::new(),
            help: false,
            version: false,
            misplaced: None,
        }
    }

    /// Reads a global option, or notes an option of some command (see `misplaced`); anything
    /// else is an error.
    fn take(&mut self, arg: Unclaimed, parser: &mut Parser) -> Result<(), UsageError> {
        let global = &mut self.global;
        match arg.as_arg() {
            Short('h') | Long("help") => self.help = true,
            Short('V') | Long("version") => self.version = true,
            Short('v') | Long("verbose") => global.verbosity = global.verbosity.saturating_add(1),
            Long("url") => self.urls.push(parser.value()?.string()?),
            Long("heartbeat") => {
                global.heartbeat = whole_number(parser, "--heartbeat", u16::MAX)?;
            }
            Long("queue") => global.queue = parser.value()?.string()?,
            Long("reply-to") => global.reply_to = Some(reply_to(parser)?),
            Long(name) => match command_option(name) {
                Some((option, takes_value)) => {
                    if takes_value {
                        parser.value()?;
                    }
                    self.misplaced.get_or_insert(option);
                }
                None => return Err(arg.as_arg().unexpected().into()),
            },
            arg => return Err(arg.unexpected().into()),
        }
        Ok(())
    }

    /// At the end of the command line, when no command was given.
    fn without_command(&self) -> Result<Command, UsageError> {
        if self.help {
            Ok(Command::Help(None))
        } else if self.version {
            Ok(Command::Version)
        } else {
            Err(UsageError("missing command: serve, call or bench".into()))
        }
    }

    /// At the end of the command line, once `command` has read its arguments: what to do
    /// instead of running it (help or the version), or why it cannot run.
    fn instead_of(&self, command: CommandName) -> Result<Option<Command>, UsageError> {
        if self.help {
            return Ok(Some(Command::Help(Some(command))));
        }
        if self.version {
            return Ok(Some(Command::Version));
        }
        let name = command.as_str();
        if let Some(option) = self.misplaced {
            let owned = command
                .options()
                .iter()
                .any(|entry| option_name(entry) == option);
            return Err(UsageError(if owned {
                format!("{option} must come after `{name}`")
            } else {
                format!("{option} is not an option of `{name}`")
            }));
        }
        if command == CommandName::Serve && self.global.reply_to.is_some() {
            return Err(UsageError(format!(
                "--reply-to is not an option of `{name}`"
            )));
        }
        Ok(None)
    }

    fn into_global(mut self) -> Global {
        if !self.urls.is_empty() {
            self.global.urls = self.urls;
        }
        self.global
    }
}

fn reply_to(parser: &mut Parser) -> Result<ReplyTo, UsageError> {
    match parser.value()?.string()?.as_str() {
        "queue" => Ok(ReplyTo::ExclusiveQueue),
        "direct" => Ok(ReplyTo::Direct),
        other => Err(UsageError(format!(
            "--reply-to takes `queue` or `direct`, not {other:?}"
        ))),
    }
}

/// `--name` as an option of some command: its spelling (`--name`), and whether it takes a
/// value.
fn command_option(name: &str) -> Option<(&'static str, bool)> {
    [CommandName::Serve, CommandName::Call, CommandName::Bench]
        .iter()
        .flat_map(|command| command.options())
        .find(|entry| option_name(entry).strip_prefix("--") == Some(name))
        .map(|entry| (option_name(entry), entry.contains(' ')))
}

/// `--name` from an entry of a command's `OPTIONS` (`--name` or `--name VALUE`).
fn option_name(entry: &'static str) -> &'static str {
    entry.split(' ').next().unwrap_or(entry)
}

/// A whole number from 1 to `max`.
fn whole_number<T>(parser: &mut Parser, option: &str, max: T) -> Result<T, UsageError>
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
fn seconds_value(parser: &mut Parser, option: &str) -> Result<Duration, UsageError> {
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

    /// The command's own options, spelled as in its help: `--name` or `--name VALUE`.
    fn options(self) -> &'static [&'static str] {
        match self {
            CommandName::Serve => serve::OPTIONS,
            CommandName::Call => call::OPTIONS,
            CommandName::Bench => bench::OPTIONS,
        }
    }
}

/// `fib-rpc --help`, before the global options.
const HELP: &str = concat!(
    "fib-rpc ",
    env!("CARGO_PKG_VERSION"),
    ": Fibonacci over RabbitMQ (RPC as in RabbitMQ tutorial six)

Usage: fib-rpc [OPTIONS] <COMMAND> [ARGS]

Commands:
  serve          Serve fib(n) on the queue until SIGINT/SIGTERM, then drain and exit 0
  call N...      Print fib(N) in decimal, one line per N, in order (`call -`: N from stdin)
  bench          Measure calls/s and latency with many callers sharing one client
  help [CMD]     Show this help, or a command's

Run 'fib-rpc <COMMAND> --help' for the command's options.
"
);

/// The help for the whole tool (`None`) or for one command: its own text, then the global
/// options and the exit codes.
pub fn help(topic: Option<CommandName>) -> String {
    let mut text = match topic {
        None => HELP.to_owned(),
        Some(CommandName::Serve) => serve::help(),
        Some(CommandName::Call) => call::help(),
        Some(CommandName::Bench) => bench::help(),
    };
    text.push_str(&format!(
        "
Global options:
  --url URL      Broker (default: $AMQP_URL, else {DEFAULT_URL}). Give it more than
                 once (or several URLs in $AMQP_URL, space-separated) to fail over in turn
  --heartbeat S  AMQP heartbeat interval in seconds (default {DEFAULT_HEARTBEAT}); a dead network
                 path is noticed after about two intervals
  --queue NAME   Server queue (default {queue})
  --reply-to W   Where call and bench get replies: `queue` (an exclusive reply queue)
                 or `direct` (RabbitMQ's direct reply-to). Default: direct for call with
                 N on the command line (faster start), queue for `call -` and bench
                 (higher throughput)
  -v, --verbose  More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG also works
  -h, --help     Show help
  -V, --version  Show the version

Exit codes:
  0  success
",
        queue = fib_rpc::wire::DEFAULT_QUEUE,
    ));
    for class in Class::ALL {
        text.push_str(&format!("  {}  {}\n", class.code(), class.meaning()));
    }
    text
}
