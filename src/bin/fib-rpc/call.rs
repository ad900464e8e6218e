//! `fib-rpc call`: fib(N) for each N, printed in order, pipelined through one client.
//!
//! Up to `--in-flight` calls are sent before the oldest is waited for; answers are printed
//! in input order as the oldest completes, so memory stays bounded by the window whatever
//! the input size. With `-`, a thread reads stdin so that a slow producer (or a person
//! typing) gets each answer as soon as it is ready.

use std::collections::VecDeque;
use std::io::{BufRead, BufWriter, Read, Write};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use fib_rpc::{CallOptions, ClientOptions, FibonacciRpcClient, PendingFib, ReplyTo, TraceParent};

use crate::args::{CallArgs, Global, Numbers};
use crate::exit::{Class, Failure};

/// Longest stdin line accepted as an N (u64 needs 20 digits; the rest is room for spaces).
const MAX_LINE_BYTES: u64 = 256;
/// How long connecting may take: the library's default, kept apart from `--timeout` so that a
/// short call timeout never turns a slow but reachable broker into "unreachable".
const CONNECT_TIMEOUT: Duration = fib_rpc::DEFAULT_CONNECT_TIMEOUT;
/// How long to wait for the stdin thread to notice that nobody reads its lines any more.
const STDIN_READER_GRACE: Duration = Duration::from_millis(100);

type Input = Result<u64, Failure>;

pub fn run(global: &Global, args: CallArgs) -> Result<(), Failure> {
    // N on the command line are all checked before connecting: a typo costs no broker trip.
    let (mut inputs, stdin_reader) = match args.numbers {
        Numbers::Args(numbers) => {
            let (sender, inputs) = crossbeam_channel::unbounded();
            for text in &numbers {
                let n = parse_n(text.as_bytes())
                    .map_err(|why| Failure::new(Class::BadN, format!("bad N: {why}")))?;
                let _ = sender.send(Ok(n));
            }
            (Inputs::new(inputs), None)
        }
        Numbers::Stdin => {
            let (inputs, thread) = spawn_stdin_reader(args.in_flight)?;
            (Inputs::new(inputs), Some(thread))
        }
    };
    // Connect only once there is something to ask: empty input needs no broker, and a bad
    // first line is reported as such, not as whatever connecting might say.
    let more = inputs.has_more();
    // A one-shot call spends most of its time setting up: direct reply-to spares it declaring
    // (and the broker deleting) a reply queue, ~3 ms of a ~7 ms process. A stream from stdin
    // is many calls on one connection, where the reply queue has the higher throughput.
    let reply_to = global.reply_to.unwrap_or(match stdin_reader {
        None => ReplyTo::Direct,
        Some(_) => ReplyTo::ExclusiveQueue,
    });
    let result = if let Some(Err(failure)) = inputs.peeked.take_if(|input| input.is_err()) {
        Err(failure)
    } else if more {
        let options = ClientOptions::default()
            .queue(global.queue.as_str())
            .timeout(args.timeout)
            .connect_timeout(CONNECT_TIMEOUT)
            .heartbeat(global.heartbeat)
            .reply_to(reply_to)
            .idempotent(args.retry)
            .require_server(args.require_server)
            .connection_name(format!("fib-rpc call (pid {})", std::process::id()));
        FibonacciRpcClient::connect_failover(&global.urls, options)
            .map_err(Failure::from)
            .and_then(|client| {
                let per_call = CallSettings {
                    timeout: args.timeout,
                    traceparent: args.traceparent,
                };
                let result = pipeline(&client, &mut inputs, args.in_flight, &per_call);
                client.close();
                result
            })
    } else {
        Ok(())
    };
    drop(inputs); // a reader blocked on handing over a line now stops
    if let Some(thread) = stdin_reader {
        // It may instead be blocked reading a terminal; then the process exit ends it.
        let deadline = Instant::now() + STDIN_READER_GRACE;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
    result
}

/// The N still to call, in order, with room to look one ahead.
struct Inputs {
    peeked: Option<Input>,
    receiver: Receiver<Input>,
}

/// What [`Inputs::next_ready`] found.
enum Next {
    Ready(Input),
    NotYet,
    End,
}

impl Inputs {
    fn new(receiver: Receiver<Input>) -> Inputs {
        Inputs {
            peeked: None,
            receiver,
        }
    }

    /// Waits until the next input is known; false at the end of the input.
    fn has_more(&mut self) -> bool {
        if self.peeked.is_none() {
            self.peeked = self.receiver.recv().ok();
        }
        self.peeked.is_some()
    }

    /// Waits for the next input; `None` at the end.
    fn next_blocking(&mut self) -> Option<Input> {
        self.peeked.take().or_else(|| self.receiver.recv().ok())
    }

    /// The next input if it is already here.
    fn next_ready(&mut self) -> Next {
        if let Some(input) = self.peeked.take() {
            return Next::Ready(input);
        }
        match self.receiver.try_recv() {
            Ok(input) => Next::Ready(input),
            Err(TryRecvError::Empty) => Next::NotYet,
            Err(TryRecvError::Disconnected) => Next::End,
        }
    }
}

/// Sends up to `in_flight` calls ahead and prints answers in input order. Stops at the first
/// failure, after printing every answer that comes before it. If stdout is closed
/// (`fib-rpc call - | head`), nobody wants more answers: it stops quietly.
fn pipeline(
    client: &FibonacciRpcClient,
    inputs: &mut Inputs,
    in_flight: usize,
    per_call: &CallSettings,
) -> Result<(), Failure> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut pending: VecDeque<PendingFib<'_>> = VecDeque::with_capacity(in_flight);
    // A failure met while sending (bad input, client gone): reported after earlier answers.
    let mut stopped_by: Option<Failure> = None;
    loop {
        while stopped_by.is_none() && pending.len() < in_flight {
            let input = if pending.is_empty() {
                // Nothing in flight: show what we have, then wait for input.
                if !written(out.flush())? {
                    return Ok(());
                }
                inputs.next_blocking()
            } else {
                match inputs.next_ready() {
                    Next::Ready(input) => Some(input),
                    Next::NotYet => break,
                    Next::End => None,
                }
            };
            match input {
                None => break,
                Some(Ok(n)) => match client.send_with(n, per_call.options()) {
                    Ok(call) => pending.push_back(call),
                    Err(err) => stopped_by = Some(call_failure(n, err)),
                },
                Some(Err(failure)) => stopped_by = Some(failure),
            }
        }
        let Some(call) = pending.pop_front() else {
            break;
        };
        let n = call.n();
        let digits = call.wait_decimal().map_err(|err| call_failure(n, err))?;
        let line = out
            .write_all(digits.as_bytes())
            .and_then(|()| out.write_all(b"\n"));
        if !written(line)? {
            return Ok(());
        }
    }
    if !written(out.flush())? {
        return Ok(());
    }
    stopped_by.map_or(Ok(()), Err)
}

fn call_failure(n: u64, err: fib_rpc::Error) -> Failure {
    Failure::new(Class::of(&err), format!("fib({n}): {err}"))
}

/// `Ok(true)` if written, `Ok(false)` if stdout is closed, else the failure.
fn written(result: std::io::Result<()>) -> Result<bool, Failure> {
    match result {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(err) => Err(Failure::new(
            Class::Failure,
            format!("writing stdout: {err}"),
        )),
    }
}

/// N as the server reads it (see [`fib_rpc::parse_n`]), with a message for people.
fn parse_n(text: &[u8]) -> Result<u64, String> {
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err("empty; expected a non-negative whole number".into());
    }
    fib_rpc::parse_n(text, u64::MAX).map_err(|err| err.message)
}

/// Reads one N per line from stdin on its own thread, so the pipeline never blocks on input
/// while answers are due. Stops after the first bad line, which is passed on as a failure.
fn spawn_stdin_reader(window: usize) -> std::io::Result<(Receiver<Input>, JoinHandle<()>)> {
    let (sender, inputs) = crossbeam_channel::bounded(window);
    let thread = std::thread::Builder::new()
        .name("fib-rpc-stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut line = Vec::new();
            for line_number in 1u64.. {
                line.clear();
                let read = (&mut stdin)
                    .take(MAX_LINE_BYTES + 1)
                    .read_until(b'\n', &mut line);
                let input = match read {
                    Ok(0) => break,
                    Ok(_) if line.len() as u64 > MAX_LINE_BYTES && !line.ends_with(b"\n") => {
                        Err(Failure::new(
                            Class::BadN,
                            format!("stdin line {line_number}: longer than {MAX_LINE_BYTES} bytes"),
                        ))
                    }
                    Ok(_) => parse_n(&line).map_err(|why| {
                        Failure::new(
                            Class::BadN,
                            format!("stdin line {line_number}: bad N: {why}"),
                        )
                    }),
                    Err(err) => Err(Failure::new(
                        Class::Failure,
                        format!("reading stdin: {err}"),
                    )),
                };
                let last = input.is_err();
                if sender.send(input).is_err() || last {
                    break;
                }
            }
        })?;
    Ok((inputs, thread))
}

/// What every call of one `fib-rpc call` run carries.
struct CallSettings {
    timeout: Duration,
    traceparent: Option<TraceParent>,
}

impl CallSettings {
    /// The options of a call starting now.
    fn options(&self) -> CallOptions {
        let options = CallOptions::new().deadline(Instant::now() + self.timeout);
        match self.traceparent {
            Some(traceparent) => options.traceparent(traceparent),
            None => options,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_n;

    #[test]
    fn n_is_read_like_the_server_reads_it() {
        assert_eq!(parse_n(b"30"), Ok(30));
        assert_eq!(parse_n(b" 1000\r\n"), Ok(1000));
        assert_eq!(parse_n(b"18446744073709551615"), Ok(u64::MAX));
        assert!(parse_n(b"18446744073709551616").is_err());
        assert!(parse_n(b"").unwrap_err().starts_with("empty"));
        assert!(parse_n(b"  \n").unwrap_err().starts_with("empty"));
        assert!(parse_n(b"-5").unwrap_err().contains("negative"));
        assert!(parse_n(b"1.5").unwrap_err().contains("whole"));
        assert!(parse_n(b"abc").is_err());
    }
}
