//! The command line: what `fib-rpc` accepts, parsed into plain structs, and the help texts.
//!
//! The global options are read here, before or after the command (`fib-rpc --queue q call 5`
//! and `fib-rpc call 5 --queue q` mean the same); each command reads its own options in its
//! module, next to its help text, and hands whatever else it meets back to [`Options::take`].
//! A command's options may also come before it (`fib-rpc --workers 2 serve`): they are kept
//! aside and read by the command first.

mod bench;
mod call;
mod serve;
mod status;

use std::ffi::OsString;
use std::time::Duration;

use fib_rpc::{ReplyTo, DEFAULT_URL};
use lexopt::prelude::*;
use lexopt::{Arg, Parser};

use crate::exit::Class;

pub use bench::{BenchArgs, BenchLength};
pub use call::{CallArgs, Numbers};
pub use serve::ServeArgs;
pub use status::StatusArgs;

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
    Status(StatusArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandName {
    Serve,
    Call,
    Bench,
    Status,
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
const DEFAULT_TIMEOUT: Duration = fib_rpc::DEFAULT_TIMEOUT;
/// Default for `--heartbeat`, in seconds.
const DEFAULT_HEARTBEAT: u16 = fib_rpc::DEFAULT_HEARTBEAT_SECS;
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
                Some("serve") => break serve::parse_serve(options.then(parser), &mut options)?,
                Some("call") => break call::parse_call(options.then(parser), &mut options)?,
                Some("bench") => break bench::parse_bench(options.then(parser), &mut options)?,
                Some("status") => break status::parse_status(options.then(parser), &mut options)?,
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
    /// Options of commands given before the command, with their values, as typed.
    before_command: Vec<OsString>,
    /// Whether the command has been read (see [`Options::then`]).
    in_command: bool,
    /// The first option of another command met after the command; refused once `--help` and
    /// `--version` have had their say.
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
                queue: fib_rpc::DEFAULT_QUEUE.to_owned(),
                reply_to: None,
                verbosity: 0,
            },
            urls: Vec::new(),
            help: false,
            version: false,
            before_command: Vec::new(),
            in_command: false,
            misplaced: None,
        }
    }

    /// Reads a global option, or keeps an option of some command for later (see
    /// `before_command` and `misplaced`); anything else is an error.
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
                Some((option, takes_value)) => self.keep(option, takes_value, parser)?,
                None => return Err(arg.as_arg().unexpected().into()),
            },
            arg => return Err(arg.unexpected().into()),
        }
        Ok(())
    }

    /// Keeps `option` of some command (and its value) for the command, or, once in a command,
    /// as misplaced.
    fn keep(
        &mut self,
        option: &'static str,
        takes_value: bool,
        parser: &mut Parser,
    ) -> Result<(), UsageError> {
        let value = if takes_value {
            Some(parser.value()?)
        } else {
            None
        };
        if self.in_command {
            self.misplaced.get_or_insert(option);
        } else {
            self.before_command.push(option.into());
            self.before_command.extend(value);
        }
        Ok(())
    }

    /// What the command just named reads, in order: the options of commands given before it,
    /// then the `rest` of the command line.
    fn then(&mut self, rest: Parser) -> [Parser; 2] {
        self.in_command = true;
        let before = std::mem::take(&mut self.before_command);
        [Parser::from_args(before), rest]
    }

    /// At the end of the command line, when no command was given.
    fn without_command(&self) -> Result<Command, UsageError> {
        if self.help {
            Ok(Command::Help(None))
        } else if self.version {
            Ok(Command::Version)
        } else {
            Err(UsageError(
                "missing command: serve, call, bench or status".into(),
            ))
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
            return Err(UsageError(format!("{option} is not an option of `{name}`")));
        }
        if matches!(command, CommandName::Serve | CommandName::Status)
            && self.global.reply_to.is_some()
        {
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
    CommandName::ALL
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
    const ALL: [CommandName; 4] = [
        CommandName::Serve,
        CommandName::Call,
        CommandName::Bench,
        CommandName::Status,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CommandName::Serve => "serve",
            CommandName::Call => "call",
            CommandName::Bench => "bench",
            CommandName::Status => "status",
        }
    }

    /// The command's own options, spelled as in its help: `--name` or `--name VALUE`.
    fn options(self) -> &'static [&'static str] {
        match self {
            CommandName::Serve => serve::OPTIONS,
            CommandName::Call => call::OPTIONS,
            CommandName::Bench => bench::OPTIONS,
            CommandName::Status => status::OPTIONS,
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
  status         Say whether the queue exists and how many servers consume it
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
        Some(CommandName::Status) => status::help(),
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
        queue = fib_rpc::DEFAULT_QUEUE,
    ));
    for class in Class::ALL {
        text.push_str(&format!("  {}  {}\n", class.code(), class.meaning()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<(Global, Command), UsageError> {
        parse(args.iter().map(OsString::from), None)
    }

    fn error(args: &[&str]) -> String {
        parse_str(args).expect_err("a usage error").0
    }

    #[test]
    fn every_command_option_is_in_its_help_as_listed() {
        for command in CommandName::ALL {
            let text = help(Some(command));
            for entry in command.options() {
                assert!(text.contains(&format!("\n  {entry} ")), "{entry}");
            }
        }
    }

    #[test]
    fn defaults_are_the_librarys() {
        let (global, command) = parse_str(&["serve"]).unwrap();
        assert_eq!(global.urls, [DEFAULT_URL]);
        assert_eq!(global.queue, fib_rpc::DEFAULT_QUEUE);
        assert_eq!(
            (global.heartbeat, global.reply_to, global.verbosity),
            (15, None, 0)
        );
        let Command::Serve(serve) = command else {
            panic!("{command:?}")
        };
        assert_eq!(serve.prefetch, fib_rpc::DEFAULT_PREFETCH);
        assert_eq!(serve.max_n, fib_rpc::DEFAULT_MAX_N);
        assert_eq!(serve.cache_bytes, fib_rpc::DEFAULT_CACHE_BYTES);
        assert_eq!(serve.log_interval, Some(Duration::from_secs(60)));
        let (_, command) = parse_str(&["bench"]).unwrap();
        let Command::Bench(bench) = command else {
            panic!("{command:?}")
        };
        assert_eq!(bench.length, BenchLength::Calls(10_000));
        assert_eq!(bench.timeout, Duration::from_secs(30));
    }

    #[test]
    fn options_before_or_after_the_command_mean_the_same() {
        let given = ["-v", "--url", "amqp://a", "--workers", "3", "--queue", "q"];
        let (global, command) = parse_str(&[&given[..], &["serve", "-v"]].concat()).unwrap();
        assert_eq!((global.verbosity, global.queue.as_str()), (2, "q"));
        assert_eq!(global.urls, ["amqp://a"]);
        let Command::Serve(serve) = command else {
            panic!("{command:?}")
        };
        assert_eq!(serve.workers, Some(3));
        let (_, command) = parse_str(&["--timeout", "2", "call", "5", "--timeout=1"]).unwrap();
        let Command::Call(call) = command else {
            panic!("{command:?}")
        };
        assert_eq!(call.timeout, Duration::from_secs(1));
        assert_eq!(call.numbers, Numbers::Args(vec!["5".into()]));
    }

    #[test]
    fn usage_errors() {
        assert_eq!(error(&[]), "missing command: serve, call, bench or status");
        assert_eq!(error(&["launch"]), "unknown command \"launch\"");
        assert_eq!(
            error(&["call", "--frobnicate"]),
            "invalid option '--frobnicate'"
        );
        assert_eq!(
            error(&["call", "--workers", "2", "5"]),
            "--workers is not an option of `call`"
        );
        assert_eq!(
            error(&["--json", "call", "5"]),
            "--json is not an option of `call`"
        );
        assert_eq!(
            error(&["serve", "--reply-to", "direct"]),
            "--reply-to is not an option of `serve`"
        );
        assert_eq!(error(&["serve", "x"]), "unexpected argument \"x\"");
        assert_eq!(
            error(&["call", "5", "-"]),
            "call: - (read stdin) cannot be mixed with N arguments"
        );
        assert_eq!(
            error(&["bench", "--calls", "5", "--seconds", "1"]),
            "bench: give --calls or --seconds, not both"
        );
    }

    #[test]
    fn log_interval_takes_whole_seconds_and_0_for_never() {
        let interval = |value: &str| match parse_str(&["serve", "--log-interval", value]) {
            Ok((_, Command::Serve(serve))) => Ok(serve.log_interval),
            Ok((_, command)) => panic!("{command:?}"),
            Err(UsageError(message)) => Err(message),
        };
        assert_eq!(interval("1"), Ok(Some(Duration::from_secs(1))));
        assert_eq!(interval("0"), Ok(None));
        for bad in ["-1", "1.5", "86401", "soon"] {
            let message = interval(bad).expect_err(bad);
            assert!(message.starts_with("--log-interval needs"), "{message}");
        }
    }

    #[test]
    fn help_and_version_win_over_what_is_missing() {
        let (_, command) = parse_str(&["call", "--workers", "2", "--help"]).unwrap();
        assert!(matches!(command, Command::Help(Some(CommandName::Call))));
        let (_, command) = parse_str(&["help", "bench"]).unwrap();
        assert!(matches!(command, Command::Help(Some(CommandName::Bench))));
        let (_, command) = parse_str(&["-V", "call"]).unwrap();
        assert!(matches!(command, Command::Version));
    }

    #[test]
    fn status_takes_the_global_queue_anywhere() {
        for args in [
            &["status", "--queue", "q"][..],
            &["--queue", "q", "status"],
            &["--json", "status", "--queue=q"],
        ] {
            let (global, command) = parse_str(args).unwrap();
            assert_eq!(global.queue, "q", "{args:?}");
            assert!(matches!(command, Command::Status(_)), "{command:?}");
        }
        assert_eq!(
            error(&["status", "--reply-to", "direct"]),
            "--reply-to is not an option of `status`"
        );
        assert_eq!(
            error(&["status", "--in-flight", "3"]),
            "--in-flight is not an option of `status`"
        );
        let (_, command) = parse_str(&["call", "--wait-for-server", "5"]).unwrap();
        let Command::Call(call) = command else {
            panic!("{command:?}")
        };
        assert!(!call.require_server);
        let (_, command) = parse_str(&["call", "5"]).unwrap();
        let Command::Call(call) = command else {
            panic!("{command:?}")
        };
        assert!(call.require_server);
    }

    #[test]
    fn a_negative_n_is_an_n() {
        let (_, command) = parse_str(&["call", "-5", "--", "-x"]).unwrap();
        let Command::Call(call) = command else {
            panic!("{command:?}")
        };
        assert_eq!(call.numbers, Numbers::Args(vec!["-5".into(), "-x".into()]));
    }
}
