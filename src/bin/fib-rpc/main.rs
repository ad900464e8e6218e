//! `fib-rpc`: serve, call and benchmark Fibonacci over RabbitMQ from the command line.
//!
//! Each command lives in its own module; this file parses the command line, sets up logging
//! and turns failures into the documented exit codes (see [`exit`]).

#![forbid(unsafe_code)]
#![warn(rust_2018_idioms)]

mod activity;
mod args;
mod bench;
mod call;
mod exit;
mod http;
mod logger;
mod metrics;
mod serve;
mod status;
mod systemd;

use std::process::ExitCode;

use args::Command;
use exit::Class;

fn main() -> ExitCode {
    let (global, command) = match args::parse(std::env::args_os().skip(1), amqp_url_env()) {
        Ok(parsed) => parsed,
        Err(args::UsageError(message)) => {
            say(&format!("fib-rpc: {message}\nTry 'fib-rpc --help'."));
            return ExitCode::from(Class::Usage.code());
        }
    };
    // `call` promises one line of reason on failure, so the library's own warnings (which
    // that line repeats) are shown only when asked for. `serve` runs unattended: its info
    // lines (ready, traffic per interval, summary) are what an operator watches.
    let quiet = match command {
        Command::Call(_) | Command::Status(_) => log::LevelFilter::Off,
        Command::Serve(_) => log::LevelFilter::Info,
        _ => log::LevelFilter::Warn,
    };
    logger::init(
        global.verbosity,
        std::env::var("RUST_LOG").ok().as_deref(),
        quiet,
    );

    let result = match command {
        Command::Help(topic) => {
            print!("{}", args::help(topic));
            Ok(0)
        }
        Command::Version => {
            println!("fib-rpc {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        // 0, or 130 when SIGINT cut it short.
        Command::Serve(serve_args) => serve::run(&global, serve_args),
        Command::Call(call_args) => call::run(&global, call_args).map(|()| 0),
        Command::Bench(bench_args) => bench::run(&global, bench_args).map(|()| 0),
        Command::Status(status_args) => status::run(&global, status_args).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            // The library's messages never contain the password; the URL is redacted there.
            // An empty message: the command has already said why (on stdout).
            if !failure.message.is_empty() {
                say(&format!("fib-rpc: {}", failure.message));
            }
            ExitCode::from(failure.class.code())
        }
    }
}

/// Writes a line to stderr. Unlike `eprintln!` it cannot panic: with stderr closed (a pipe
/// whose reader is gone), a panic in the signal thread would leave `serve` deaf to signals.
pub(crate) fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// `AMQP_URL`, unless unset or empty.
fn amqp_url_env() -> Option<String> {
    std::env::var("AMQP_URL").ok().filter(|url| !url.is_empty())
}
