//! `fib-rpc`: serve, call and benchmark Fibonacci over RabbitMQ from the command line.
//!
//! Each command lives in its own module; this file parses the command line, sets up logging
//! and turns failures into the documented exit codes (see [`exit`]).

#![forbid(unsafe_code)]
#![warn(rust_2018_idioms)]

mod args;
mod bench;
mod call;
mod exit;
mod logger;
mod serve;

use std::process::ExitCode;

use args::{Command, CommandName};
use exit::Class;

fn main() -> ExitCode {
    let (global, command) = match args::parse(std::env::args_os().skip(1), amqp_url_env()) {
        Ok(parsed) => parsed,
        Err(args::UsageError(message)) => {
            eprintln!("fib-rpc: {message}");
            eprintln!("Try 'fib-rpc --help'.");
            return ExitCode::from(Class::Usage.code());
        }
    };
    // `call` promises one line of reason on failure, so the library's own warnings (which
    // that line repeats) are shown only when asked for.
    let quiet = match command {
        Command::Call(_) => log::LevelFilter::Off,
        _ => log::LevelFilter::Warn,
    };
    logger::init(
        global.verbosity,
        std::env::var("RUST_LOG").ok().as_deref(),
        quiet,
    );

    let result = match command {
        Command::Help(topic) => {
            print!("{}", help(topic));
            Ok(())
        }
        Command::Version => {
            println!("fib-rpc {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Serve(serve_args) => serve::run(&global, serve_args),
        Command::Call(call_args) => call::run(&global, call_args),
        Command::Bench(bench_args) => bench::run(&global, bench_args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // The library's messages never contain the password; the URL is redacted there.
            eprintln!("fib-rpc: {}", failure.message);
            ExitCode::from(failure.class.code())
        }
    }
}

/// `AMQP_URL`, unless unset or empty.
fn amqp_url_env() -> Option<String> {
    std::env::var("AMQP_URL").ok().filter(|url| !url.is_empty())
}

fn help(topic: Option<CommandName>) -> String {
    let mut text = match topic {
        None => format!(
            "fib-rpc {version}: Fibonacci over RabbitMQ (RPC as in RabbitMQ tutorial six)

Usage: fib-rpc [OPTIONS] <COMMAND> [ARGS]

Commands:
  serve          Serve fib(n) on the queue until SIGINT/SIGTERM, then drain and exit 0
  call N...      Print fib(N) in decimal, one line per N, in order (`call -`: N from stdin)
  bench          Measure calls/s and latency with many callers sharing one client
  help [CMD]     Show this help, or a command's

Run 'fib-rpc <COMMAND> --help' for the command's options.
",
            version = env!("CARGO_PKG_VERSION")
        ),
        Some(CommandName::Serve) => format!(
            "Usage: fib-rpc serve [OPTIONS]

Serves fib(n) on the queue. Prints one line on stderr once it consumes. On SIGINT or
SIGTERM it stops taking requests, answers those it has, and exits 0; a second signal
exits at once (unanswered requests go back to the queue for another server).

Options:
  --workers N        Worker threads, each with its own channel (default: one per CPU)
  --prefetch N       Unacknowledged requests per worker (default {DEFAULT_PREFETCH})
  --max-n N          Largest n served; larger gets an out_of_range error (default {DEFAULT_MAX_N})
  --durable-quorum   If the queue does not exist, declare it durable quorum (default classic)
  --cache-mib N      Memory for cached results of n >= 1000, in MiB; 0 turns it off
                     (default {DEFAULT_CACHE_MIB})

If the broker cannot be reached at start-up, it retries with backoff until it can (bad
credentials or vhost exit 7 at once). Once serving, it never exits because the broker went
away: it reconnects and resumes.
",
            DEFAULT_PREFETCH = fib_rpc::DEFAULT_PREFETCH,
            DEFAULT_CACHE_MIB = args::DEFAULT_CACHE_MIB,
            DEFAULT_MAX_N = fib_rpc::DEFAULT_MAX_N,
        ),
        Some(CommandName::Call) => format!(
            "Usage: fib-rpc call [OPTIONS] N...
       fib-rpc call [OPTIONS] -

Prints fib(N) in decimal, one line per N, in the order given. With -, reads one N per line
from stdin and keeps up to --in-flight calls going through one connection, still printing in
input order. Stops at the first failure with a one-line reason on stderr and its exit code;
the answers before it are printed.

Options:
  --timeout SECONDS  How long each call waits for its answer (default {timeout})
  --in-flight N      Calls kept in flight at once (default {in_flight})
",
            timeout = args::DEFAULT_TIMEOUT.as_secs(),
            in_flight = args::DEFAULT_IN_FLIGHT,
        ),
        Some(CommandName::Bench) => format!(
            "Usage: fib-rpc bench [OPTIONS]

Runs C threads that share one client and call fib(N) back to back, for K calls in all or
for S seconds. Prints a table; failed calls are counted by kind, not fatal.

Options:
  --callers C        Threads calling at once (default 1)
  --calls K          Calls in all (default {calls})
  --seconds S        Run for S seconds instead
  --n N              The n to ask for (default 10)
  --timeout SECONDS  How long each call waits for its answer (default {timeout})
  --json             Also print the results as one JSON object on the last line
",
            calls = args::DEFAULT_BENCH_CALLS,
            timeout = args::DEFAULT_TIMEOUT.as_secs(),
        ),
    };
    text.push_str(&format!(
        "
Global options:
  --url URL      Broker (default: $AMQP_URL, else {default_url}). Give it more than
                 once (or several URLs in $AMQP_URL, space-separated) to fail over in turn
  --heartbeat S  AMQP heartbeat interval in seconds (default {heartbeat}); a dead network
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
        default_url = fib_rpc::DEFAULT_URL,
        queue = fib_rpc::DEFAULT_QUEUE,
        heartbeat = args::DEFAULT_HEARTBEAT,
    ));
    for class in Class::ALL {
        text.push_str(&format!("  {}  {}\n", class.code(), class.meaning()));
    }
    text
}
