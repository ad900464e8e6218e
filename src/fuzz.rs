//! Property tests over generated inputs ("fuzzing" without a fuzzer or a dependency): request
//! parsing, reply decoding, the decimal check, the Fibonacci handler and URL redaction, each
//! checked against an oracle written independently here.
//!
//! An ordinary `cargo test` runs a short round ([`SHORT_RUN`] inputs, a second or so in a debug
//! build); the full round of a million or more runs on demand:
//! `cargo test --release --lib fuzz -- --ignored`.
//!
//! Everything these functions read comes from the network or from people, so besides the
//! oracles the one property that always holds is: no panic, whatever the input.
//!
//! Runs are reproducible: the root seed is fixed (printed with `--nocapture`) and
//! `FIB_RPC_FUZZ_SEED` replaces it; `FIB_RPC_FUZZ_ITERATIONS` raises the number of inputs (for
//! long runs, best in `--release`). A failing case panics with its target, case number, seed
//! and the input itself.

use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use amiquip::{AmqpValue, FieldTable};

use crate::connect::{redact, BrokerUrl};
use crate::fib::{check_decimal_reply, parse_n, FibonacciHandler};
use crate::server::{Handler, Request};
use crate::wire::reply::decode as decode_reply;
use crate::wire::{ErrorCode, ERROR_HEADER};

mod rng;
use rng::Rng;

/// Inputs of the round every `cargo test` runs: every target gets thousands of cases.
const SHORT_RUN: u64 = 100_000;

/// Inputs of the full round, at least: enough to reach rare shapes.
const MIN_INPUTS: u64 = 1_000_000;

/// Root seed of a normal run; fixed so that a failure in CI reproduces locally.
const DEFAULT_SEED: u64 = 0x5EED_F1B0_2024_0001;

/// The largest `max_n` given to the handler: fib(2000) keeps each case in microseconds.
const HANDLER_MAX_N: u64 = 2000;

/// Longest acceptable error message. Messages embed `preview` of at most 40 bytes, each at
/// most 6 characters once escaped (`\u{7f}`), plus a sentence; an unbounded message would show
/// up on the long bodies the generators make.
const MAX_MESSAGE: usize = 400;

#[test]
fn generated_inputs_without_a_panic_or_a_wrong_answer() {
    run(SHORT_RUN);
}

#[test]
#[ignore = "the full round: run on demand, best with --release"]
fn million_generated_inputs_without_a_panic_or_a_wrong_answer() {
    run(MIN_INPUTS);
}

/// Runs at least `at_least` inputs (more with `FIB_RPC_FUZZ_ITERATIONS`) across the targets.
fn run(at_least: u64) {
    let seed = env_u64("FIB_RPC_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let requested = env_u64("FIB_RPC_FUZZ_ITERATIONS").unwrap_or(at_least);
    let total = requested.max(at_least);
    let fibs = fib_table(HANDLER_MAX_N);

    // Shares of the inputs, so that the slower targets (URL parsing, fib) get fewer.
    let targets: [(&str, u64, Target); 5] = [
        ("parse_n", 40, fuzz_parse_n),
        ("decode_reply", 22, fuzz_decode_reply),
        ("check_decimal_reply", 22, fuzz_check_decimal_reply),
        ("FibonacciHandler::handle", 8, fuzz_handler),
        ("redact/BrokerUrl::parse", 8, fuzz_redact),
    ];
    let weight_sum: u64 = targets.iter().map(|(_, weight, _)| weight).sum();
    let mut root = Rng(seed);
    println!("fuzz: root seed {seed:#x} (FIB_RPC_FUZZ_SEED), {total} inputs");

    let started = Instant::now();
    let results: Vec<(&str, u64, Duration, Vec<String>)> = std::thread::scope(|scope| {
        let mut assigned = 0;
        let handles: Vec<_> = targets
            .iter()
            .enumerate()
            .map(|(index, &(name, weight, target))| {
                let cases = if index + 1 == targets.len() {
                    total - assigned
                } else {
                    total * weight / weight_sum
                };
                assigned += cases;
                let target_seed = root.next();
                println!("fuzz: {name}: seed {target_seed:#x}, {cases} inputs");
                let context = Context {
                    name,
                    seed: target_seed,
                    fibs: &fibs,
                };
                scope.spawn(move || {
                    let begun = Instant::now();
                    let mut notes = Vec::new();
                    let done = target(&context, cases, &mut notes);
                    (name, done, begun.elapsed(), notes)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|e| std::panic::resume_unwind(e))
            })
            .collect()
    });
    let elapsed = started.elapsed();

    let mut inputs = 0;
    for (name, done, took, notes) in &results {
        println!("fuzz: {name}: {done} inputs in {:.2} s", took.as_secs_f64());
        for note in notes {
            println!("fuzz: {name}: {note}");
        }
        inputs += done;
    }
    println!(
        "fuzz: {inputs} inputs in {:.2} s ({:.0}/s), no panic, every answer as the oracles say",
        elapsed.as_secs_f64(),
        inputs as f64 / elapsed.as_secs_f64()
    );
    assert!(inputs >= at_least, "only {inputs} inputs ran");
    assert_eq!(inputs, total);
}

/// One fuzz target: runs `cases` inputs, returns how many ran, and may leave notes to print.
type Target = fn(&Context<'_>, u64, &mut Vec<String>) -> u64;

/// What every target needs to know.
struct Context<'a> {
    name: &'static str,
    seed: u64,
    /// fib(0..=HANDLER_MAX_N) in decimal, computed by plain addition.
    fibs: &'a [String],
}

impl Context<'_> {
    /// Runs one case. A panic in the code under test, or a property `check` says is broken,
    /// fails the test with everything needed to reproduce it.
    fn case(&self, index: u64, input: &dyn Debug, check: impl FnOnce() -> Result<(), String>) {
        let outcome = catch_unwind(AssertUnwindSafe(check)).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            Err(format!("panicked: {what}"))
        });
        if let Err(why) = outcome {
            panic!(
                "fuzz {}: case {index} (target seed {:#x}) failed: {why}\n  input: {input:?}",
                self.name, self.seed
            );
        }
    }
}

/// Returns `Err` with a formatted reason when a property does not hold.
macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim().replace('_', "");
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={text:?} is not a number")))
}

// ---------------------------------------------------------------------------------------------
// parse_n

/// Whitespace `parse_n` must strip: ASCII whitespace as Rust and the WHATWG define it, which
/// leaves out vertical tab (`\x0b`).
const ASCII_SPACE: &[u8] = b" \t\n\x0c\r";

/// What `parse_n(body, max_n)` must return, decided from the documentation alone: `Ok(n)`
/// exactly when the body is UTF-8 and, without surrounding ASCII whitespace, one or more ASCII
/// digits whose value fits in a u64 and is at most `max_n`; `out_of_range` for digits above
/// either bound; `bad_request` for everything else.
fn expected_n(body: &[u8], max_n: u64) -> Result<u64, ErrorCode> {
    if std::str::from_utf8(body).is_err() {
        return Err(ErrorCode::BadRequest);
    }
    let start = body.iter().position(|b| !ASCII_SPACE.contains(b));
    let end = body.iter().rposition(|b| !ASCII_SPACE.contains(b));
    let core = match (start, end) {
        (Some(start), Some(end)) => &body[start..=end],
        _ => return Err(ErrorCode::BadRequest),
    };
    if !core.iter().all(u8::is_ascii_digit) {
        return Err(ErrorCode::BadRequest);
    }
    let zeros = core.iter().take_while(|&&b| b == b'0').count();
    let significant = &core[zeros..];
    // u64::MAX has 20 digits; more cannot fit (and would overflow the u128 below).
    if significant.len() > 20 {
        return Err(ErrorCode::OutOfRange);
    }
    let value = significant
        .iter()
        .fold(0u128, |value, digit| value * 10 + u128::from(digit - b'0'));
    if value > u128::from(max_n) {
        return Err(ErrorCode::OutOfRange);
    }
    Ok(value as u64)
}

const SPACES: &[&str] = &[" ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "   "];
const UNICODE_SPACES: &[&str] = &[
    "\u{a0}", "\u{3000}", "\u{2028}", "\u{2003}", "\u{feff}", "\u{85}", "\u{1680}", "\u{0}",
];
const SIGNS: &[&str] = &["-", "+", "--", "+-", "\u{2212}", "-0", "- "];
const TAILS: &[&str] = &[
    ".", ".0", ".5", "e3", "E3", "e+2", "E-1", "e", "_000", ",5", "x", "0x1f", "h", " 4",
    "\u{660}", "\u{ff11}", "n", "-",
];
const BAD_UTF8: &[&[u8]] = &[
    b"\xff",
    b"\xfe",
    b"\xc0\x80",
    b"\xe2\x82",
    b"\xed\xa0\x80",
    b"\x80",
    b"\xf4\x90\x80\x80",
    b"\xf0\x9f\x98",
];

fn spaces(rng: &mut Rng, unicode: bool) -> String {
    let mut text = String::new();
    for _ in 0..rng.below(3) {
        if unicode && rng.one_in(2) {
            text.push_str(rng.pick(UNICODE_SPACES));
        } else {
            text.push_str(rng.pick(SPACES));
        }
    }
    text
}

/// Decimal digits of every interesting size: none, small (near the limits under test), long,
/// around u64::MAX, and far beyond.
fn digits(rng: &mut Rng) -> String {
    let mut text = match rng.below(7) {
        0 => String::new(),
        1 | 2 => rng.below(2200).to_string(),
        3 => rng.next().to_string(),
        4 => near_u64_max(rng),
        5 => {
            let len = 1 + rng.index(25);
            String::from_utf8(rng.bytes_of(b"0123456789", len)).unwrap()
        }
        _ => {
            let len = 20 + rng.index(60);
            String::from_utf8(rng.bytes_of(b"0123456789", len)).unwrap()
        }
    };
    if rng.one_in(6) {
        text.insert_str(0, &"0".repeat(1 + rng.index(25)));
    }
    text
}

/// A number within a thousand of u64::MAX, 10¹⁹ or 10²⁰, where a parser's overflow check lives.
fn near_u64_max(rng: &mut Rng) -> String {
    let base: u128 = match rng.below(3) {
        0 => u128::from(u64::MAX),
        1 => 10u128.pow(19),
        _ => 10u128.pow(20),
    };
    (base + u128::from(rng.below(2001)) - 1000).to_string()
}

/// `[spaces][sign][digits][tail][spaces]`, every part optional.
fn structured_number(rng: &mut Rng, unicode: bool) -> Vec<u8> {
    let mut text = spaces(rng, unicode);
    if rng.one_in(5) {
        text.push_str(rng.pick(SIGNS));
    }
    text.push_str(&digits(rng));
    if rng.one_in(5) {
        text.push_str(rng.pick(TAILS));
    }
    text.push_str(&spaces(rng, unicode));
    text.into_bytes()
}

/// A request body from a mix of generators: random bytes, a dense alphabet of number-ish
/// bytes, well-formed and nearly well-formed numbers, non-ASCII spaces, invalid UTF-8,
/// mutations, and long bodies (for the message bound).
fn request_body(rng: &mut Rng) -> Vec<u8> {
    match rng.below(20) {
        0..=1 => {
            let len = rng.index(64);
            rng.bytes(len)
        }
        2..=3 => {
            let len = rng.index(24);
            rng.bytes_of(b"0123456789 \t\n\r\x0b\x0c-+.eE\xff\xc2\xa0", len)
        }
        4..=9 => structured_number(rng, false),
        10..=11 => structured_number(rng, true),
        12..=13 => {
            let mut body = structured_number(rng, false);
            let at = rng.index(body.len() + 1);
            let bad = rng.pick(BAD_UTF8);
            body.splice(at..at, bad.iter().copied());
            body
        }
        14..=16 => {
            let mut body = structured_number(rng, false);
            for _ in 0..1 + rng.below(3) {
                let at = rng.index(body.len() + 1);
                match rng.below(3) {
                    0 if at < body.len() => {
                        body.remove(at);
                    }
                    1 if at < body.len() => body[at] = rng.next() as u8,
                    _ => body.insert(at, rng.next() as u8),
                }
            }
            body
        }
        17..=18 => {
            let mut text = spaces(rng, false);
            text.push_str(&near_u64_max(rng));
            text.push_str(&spaces(rng, false));
            text.into_bytes()
        }
        _ => long_body(rng),
    }
}

/// Up to 4 KiB: long runs of digits, of spaces around a number, of garbage.
fn long_body(rng: &mut Rng) -> Vec<u8> {
    let len = 41 + rng.index(4096);
    match rng.below(4) {
        0 => vec![b'7'; len],
        1 => {
            let mut body = vec![b' '; len];
            body.extend_from_slice(b"42");
            body
        }
        2 => rng.bytes_of(b"\x01\x7f\xff\xc2\x85", len),
        _ => rng.bytes(len),
    }
}

/// A limit that is sometimes exactly at, just below or just above the body's number.
fn max_n_for(rng: &mut Rng, body: &[u8]) -> u64 {
    match rng.below(8) {
        0 => 0,
        1 => u64::MAX,
        2 => rng.next(),
        3 => rng.below(3000),
        _ => match expected_n(body, u64::MAX) {
            Ok(n) => match rng.below(3) {
                0 => n.saturating_sub(1),
                1 => n,
                _ => n.saturating_add(1),
            },
            Err(_) => rng.below(100),
        },
    }
}

fn fuzz_parse_n(context: &Context<'_>, cases: u64, _notes: &mut Vec<String>) -> u64 {
    let mut rng = Rng(context.seed);
    let mut done = 0;
    for index in 0..cases {
        let body = request_body(&mut rng);
        let max_n = max_n_for(&mut rng, &body);
        let input = (ByteText(&body), max_n);
        context.case(index, &input, || {
            let got = parse_n(&body, max_n);
            let expected = expected_n(&body, max_n);
            match (&got, &expected) {
                (Ok(n), Ok(m)) => ensure!(n == m, "got Ok({n}), expected Ok({m})"),
                (Err(err), Err(code)) => {
                    ensure!(err.code == *code, "got {err:?}, expected {code}");
                    ensure!(
                        !err.message.is_empty() && err.message.len() <= MAX_MESSAGE,
                        "message of {} bytes: {:?}",
                        err.message.len(),
                        err.message
                    );
                    if std::str::from_utf8(&body).is_err() {
                        ensure!(err.message.contains("UTF-8"), "message: {:?}", err.message);
                    }
                }
                _ => return Err(format!("got {got:?}, expected {expected:?}")),
            }
            Ok(())
        });
        done += 1;
    }
    done
}

/// Shows bytes as text where they are UTF-8 (and escaped where not), so failures are readable.
struct ByteText<'a>(&'a [u8]);

impl Debug for ByteText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

// ---------------------------------------------------------------------------------------------
// FibonacciHandler

/// fib(0..=max) in decimal by schoolbook addition of digit vectors: nothing shared with the
/// fast doubling or `num-bigint`'s formatting under test.
fn fib_table(max: u64) -> Vec<String> {
    // Little-endian decimal digits.
    let (mut a, mut b) = (vec![0u8], vec![1u8]);
    let mut table = Vec::new();
    for _ in 0..=max {
        table.push(a.iter().rev().map(|d| char::from(b'0' + d)).collect());
        let mut sum = Vec::with_capacity(b.len() + 1);
        let mut carry = 0;
        for (i, digit_b) in b.iter().enumerate() {
            let digit = a.get(i).copied().unwrap_or(0) + digit_b + carry;
            sum.push(digit % 10);
            carry = digit / 10;
        }
        if carry > 0 {
            sum.push(carry);
        }
        a = std::mem::replace(&mut b, sum);
    }
    table
}

#[test]
fn fib_table_is_right() {
    let table = fib_table(100);
    assert_eq!(table[0], "0");
    assert_eq!(table[1], "1");
    assert_eq!(table[30], "832040");
    assert_eq!(table[93], "12200160415121876738");
    assert_eq!(table[100], "354224848179261915075");
}

fn fuzz_handler(context: &Context<'_>, cases: u64, _notes: &mut Vec<String>) -> u64 {
    let mut rng = Rng(context.seed);
    let mut done = 0;
    for index in 0..cases {
        let max_n = rng.below(HANDLER_MAX_N + 1);
        // Half well-formed requests, so fib is computed often, half anything.
        let body = if rng.one_in(2) {
            let n = rng.below(HANDLER_MAX_N + 200);
            format!("{}{n}{}", spaces(&mut rng, false), spaces(&mut rng, false)).into_bytes()
        } else {
            request_body(&mut rng)
        };
        let handler = FibonacciHandler::new(max_n);
        let input = (ByteText(&body), max_n);
        context.case(index, &input, || {
            let got = handler.handle(&Request::new(body.clone()));
            match (got, expected_n(&body, max_n)) {
                (Ok(reply), Ok(n)) => {
                    let expected = &context.fibs[n as usize];
                    ensure!(
                        reply == expected.as_bytes(),
                        "fib({n}): got {}, expected {expected}",
                        String::from_utf8_lossy(&reply)
                    );
                }
                (Err(err), Err(code)) => {
                    ensure!(
                        matches!(err.code, ErrorCode::BadRequest | ErrorCode::OutOfRange),
                        "error code {} is neither bad_request nor out_of_range",
                        err.code
                    );
                    ensure!(err.code == code, "got {err:?}, expected {code}");
                }
                (got, expected) => {
                    let got = got.map(|reply| String::from_utf8_lossy(&reply).into_owned());
                    return Err(format!("got {got:?}, expected {expected:?}"));
                }
            }
            Ok(())
        });
        done += 1;
    }
    done
}

// ---------------------------------------------------------------------------------------------
// decode_reply

/// Header keys: the error header, near misses of it, and random ones.
const KEYS: &[&str] = &[
    "x-rpc-error",
    "x-rpc-error",
    "X-RPC-ERROR",
    "x-rpc-error ",
    " x-rpc-error",
    "x-rpc-errors",
    "x-rpc-erro",
    "x_rpc_error",
    "",
    "x-death",
    "content-type",
    "\u{0}",
    "x-rpc-\u{e9}rror",
];

/// Error-code strings: the known ones, near misses, and odd text.
const CODES: &[&str] = &[
    "bad_request",
    "out_of_range",
    "internal",
    "",
    "BAD_REQUEST",
    "bad_request ",
    " internal",
    "bad-request",
    "teapot",
    "out_of_range\0",
    "\u{fffd}",
    "internal\n",
];

/// A value of the error header or anywhere else: every kind amiquip has, nested up to `depth`.
fn amqp_value(rng: &mut Rng, depth: u32, decimal: &AmqpValue) -> AmqpValue {
    let kinds = if depth == 0 { 17 } else { 19 };
    match rng.below(kinds) {
        0 => AmqpValue::Boolean(rng.one_in(2)),
        1 => AmqpValue::ShortShortInt(rng.next() as i8),
        2 => AmqpValue::ShortShortUInt(rng.next() as u8),
        3 => AmqpValue::ShortInt(rng.next() as i16),
        4 => AmqpValue::ShortUInt(rng.next() as u16),
        5 => AmqpValue::LongInt(rng.next() as i32),
        6 => AmqpValue::LongUInt(rng.next() as u32),
        7 => AmqpValue::LongLongInt(rng.next() as i64),
        // Every bit pattern: NaNs, infinities, subnormals.
        8 => AmqpValue::Float(f32::from_bits(rng.next() as u32)),
        9 => AmqpValue::Double(f64::from_bits(rng.next())),
        10 => {
            let mut value = decimal.clone();
            if let AmqpValue::DecimalValue(decimal) = &mut value {
                decimal.scale = rng.next() as u8;
                decimal.value = rng.next() as u32;
            }
            value
        }
        11 | 12 => AmqpValue::LongString(short_text(rng)),
        13 => AmqpValue::Timestamp(rng.next()),
        14 | 15 => AmqpValue::ByteArray(code_bytes(rng)),
        16 => AmqpValue::Void,
        17 => AmqpValue::FieldArray(
            (0..rng.below(4))
                .map(|_| amqp_value(rng, depth - 1, decimal))
                .collect(),
        ),
        _ => AmqpValue::FieldTable(field_table(rng, depth - 1, decimal)),
    }
}

/// Text that is often an error code, sometimes anything.
fn short_text(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 | 1 => rng.pick(CODES).to_owned(),
        2 => {
            let len = rng.index(20);
            String::from_utf8_lossy(&rng.bytes(len)).into_owned()
        }
        _ => {
            let len = rng.index(12);
            String::from_utf8(rng.bytes_of(b"abcdefghijklmnopqrstuvwxyz_-", len)).unwrap()
        }
    }
}

/// Bytes that are often an error code, sometimes not UTF-8.
fn code_bytes(rng: &mut Rng) -> Vec<u8> {
    let mut bytes = rng.pick(CODES).as_bytes().to_vec();
    if rng.one_in(3) {
        let at = rng.index(bytes.len() + 1);
        bytes.insert(at, rng.next() as u8);
    }
    bytes
}

fn field_table(rng: &mut Rng, depth: u32, decimal: &AmqpValue) -> FieldTable {
    let mut table = FieldTable::default();
    for _ in 0..rng.below(5) {
        let key = if rng.one_in(3) {
            short_text(rng)
        } else {
            rng.pick(KEYS).to_owned()
        };
        table.insert(key, amqp_value(rng, depth, decimal));
    }
    table
}

/// The code a client must report for an error header holding `text`.
fn expected_code(text: &str) -> ErrorCode {
    match text {
        "bad_request" => ErrorCode::BadRequest,
        "out_of_range" => ErrorCode::OutOfRange,
        "internal" => ErrorCode::Internal,
        other => ErrorCode::Other(other.to_owned()),
    }
}

/// amiquip does not re-export `DecimalValue`, so the one way to build one without a new
/// dependency is to deserialize it (serde_json is already a dev-dependency); the generator
/// then changes its public fields.
fn decimal_template() -> AmqpValue {
    let value: AmqpValue =
        serde_json::from_str(r#"{"DecimalValue":{"scale":2,"value":12345}}"#).unwrap();
    assert!(matches!(value, AmqpValue::DecimalValue(_)), "{value:?}");
    value
}

fn fuzz_decode_reply(context: &Context<'_>, cases: u64, _notes: &mut Vec<String>) -> u64 {
    let mut rng = Rng(context.seed);
    let decimal = decimal_template();
    let mut done = 0;
    for index in 0..cases {
        let headers = match rng.below(8) {
            0 => None,
            _ => {
                let mut table = field_table(&mut rng, 2, &decimal);
                // Half the replies are error replies, with a value of any kind.
                if rng.one_in(2) {
                    let value = match rng.below(4) {
                        0 => AmqpValue::LongString(rng.pick(CODES).to_owned()),
                        1 => AmqpValue::LongString(short_text(&mut rng)),
                        2 => AmqpValue::ByteArray(code_bytes(&mut rng)),
                        _ => amqp_value(&mut rng, 2, &decimal),
                    };
                    table.insert(ERROR_HEADER.to_owned(), value);
                }
                Some(table)
            }
        };
        let body = if rng.one_in(10) {
            long_body(&mut rng)
        } else {
            request_body(&mut rng)
        };
        let input = (&headers, ByteText(&body));
        context.case(index, &input, || {
            let error_value = headers
                .iter()
                .flat_map(|table| table.iter())
                .find_map(|(key, value)| (key.as_bytes() == b"x-rpc-error").then_some(value));
            let got = decode_reply(headers.as_ref(), body.clone());
            match (got, error_value) {
                (Ok(reply), None) => ensure!(reply == body, "the body changed: {reply:?}"),
                (Err(crate::Error::Remote(remote)), Some(value)) => {
                    let message = String::from_utf8_lossy(&body);
                    ensure!(remote.message == message, "message {:?}", remote.message);
                    match value {
                        AmqpValue::LongString(text) => {
                            let code = expected_code(text);
                            ensure!(
                                remote.code == code,
                                "code {:?}, expected {code:?}",
                                remote.code
                            );
                        }
                        AmqpValue::ByteArray(bytes) => {
                            let code = expected_code(&String::from_utf8_lossy(bytes));
                            ensure!(
                                remote.code == code,
                                "code {:?}, expected {code:?}",
                                remote.code
                            );
                        }
                        _ => ensure!(
                            matches!(&remote.code, ErrorCode::Other(text) if !text.is_empty()),
                            "a non-text header value gave code {:?}",
                            remote.code
                        ),
                    }
                }
                (got, value) => {
                    return Err(format!("got {got:?} with error header value {value:?}"));
                }
            }
            Ok(())
        });
        done += 1;
    }
    done
}

// ---------------------------------------------------------------------------------------------
// check_decimal_reply

/// Bytes that are almost digits: ASCII neighbours of '0' and '9', signs, spaces, and digits of
/// other scripts.
const NEAR_DIGITS: &[&[u8]] = &[
    b"/",
    b":",
    b" ",
    b"\n",
    b"\r\n",
    b"-",
    b"+",
    b".",
    b"\0",
    b"\xff",
    "\u{663}".as_bytes(),
    "\u{ff11}".as_bytes(),
    "\u{1d7ce}".as_bytes(),
    b"e",
];

fn fuzz_check_decimal_reply(context: &Context<'_>, cases: u64, _notes: &mut Vec<String>) -> u64 {
    let mut rng = Rng(context.seed);
    let mut done = 0;
    for index in 0..cases {
        let n = if rng.one_in(2) {
            rng.below(3000)
        } else {
            rng.next()
        };
        let reply = match rng.below(8) {
            0..=2 => {
                let len = rng.index(41);
                rng.bytes_of(b"0123456789", len)
            }
            3..=4 => {
                let len = rng.index(41);
                let mut reply = rng.bytes_of(b"0123456789", len);
                let at = rng.index(reply.len() + 1);
                let odd = rng.pick(NEAR_DIGITS);
                reply.splice(at..at, odd.iter().copied());
                reply
            }
            5 => {
                let len = rng.index(33);
                rng.bytes(len)
            }
            6 => {
                let len = rng.index(600);
                rng.bytes_of(b"0123456789", len)
            }
            _ => long_body(&mut rng),
        };
        let input = (n, ByteText(&reply));
        context.case(index, &input, || {
            let decimal = !reply.is_empty() && reply.iter().all(u8::is_ascii_digit);
            match check_decimal_reply(n, reply.clone()) {
                Ok(text) => {
                    ensure!(decimal, "accepted a reply that is not decimal");
                    ensure!(text.as_bytes() == reply, "returned {text:?}");
                }
                Err(crate::Error::InvalidReply(why)) => {
                    ensure!(!decimal, "refused a decimal reply: {why}");
                    ensure!(why.contains(&format!("fib({n})")), "message {why:?}");
                    ensure!(why.len() <= MAX_MESSAGE, "message of {} bytes", why.len());
                }
                Err(other) => return Err(format!("unexpected error {other:?}")),
            }
            Ok(())
        });
        done += 1;
    }
    done
}

// ---------------------------------------------------------------------------------------------
// redact and BrokerUrl::parse

/// No special scheme (`http`...): the URL standard reads `http:secret@h` as a user name.
const SCHEMES: &[&str] = &[
    "amqp", "amqp", "amqp", "amqps", "AMQP", "rabbit", "", "amqp+x", "1a",
];
const AFTER_SCHEME: &[&str] = &[
    "://", "://", "://", "://", ":/", ":", "//", ":\t//", ":\n//", ":/\t/", ":///", "", " ://",
];
const USERS: &[&str] = &[
    "",
    "guest",
    "u",
    "us%40er",
    "user name",
    "\u{fc}",
    "a.b",
    "u@x",
    "%",
    "12",
    "[::1]",
];
/// Pieces that go between the secret parts of a password: every delimiter a URL has, escapes
/// good and bad, control and non-ASCII characters.
const PASSWORD_PIECES: &[&str] = &[
    ":", "@", "/", "?", "#", "%", "%2F", "%40", "%zz", "%4", " ", "\t", "\n", "\r", "\u{e9}",
    "\u{20ac}", "\u{0}", "[", "]", "\\", "12", "5672", "", ";", "=", "&", "+", "'", "\"", "*",
];
const HOSTS: &[&str] = &[
    "localhost",
    "h",
    "127.0.0.1",
    "[::1]",
    "",
    "broker.example",
    "ho st",
    "%41",
    "\u{e9}t\u{e9}",
    "[",
];
const PORTS: &[&str] = &["", ":5672", ":", ":99999", ":abc", ":0", ":1"];
const TAILS_OF_URL: &[&str] = &[
    "",
    "",
    "/",
    "/%2f",
    "/vhost",
    "/a/b",
    "/x@y",
    "?heartbeat=5",
    "#frag",
    "/v?x=1#y",
    "/%",
    "/@",
];
const ALPHANUMERIC: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// A URL-like string whose password holds one or more secrets (4 to 16 random alphanumeric
/// characters each) among delimiters; returns it with the secrets.
fn url_with_secret(rng: &mut Rng) -> (String, Vec<String>) {
    let mut secrets = Vec::new();
    let mut password = String::new();
    for part in 0..1 + rng.below(3) {
        if part > 0 || rng.one_in(3) {
            for _ in 0..1 + rng.below(2) {
                password.push_str(rng.pick(PASSWORD_PIECES));
            }
        }
        let len = 4 + rng.index(13);
        let secret = String::from_utf8(rng.bytes_of(ALPHANUMERIC, len)).unwrap();
        password.push_str(&secret);
        secrets.push(secret);
    }
    if rng.one_in(3) {
        password.push_str(rng.pick(PASSWORD_PIECES));
    }
    let mut url = String::new();
    url.push_str(rng.pick(SCHEMES));
    url.push_str(rng.pick(AFTER_SCHEME));
    url.push_str(rng.pick(USERS));
    if !url.contains(':') && password.starts_with(['/', '\t', '\n', '\r']) {
        // Else the password's ':' ends the scheme: `amqp` + `://secret@h` has a user `secret`
        // and no password at all.
        password.insert(0, 'x');
    }
    url.push(':');
    url.push_str(&password);
    url.push('@');
    url.push_str(rng.pick(HOSTS));
    url.push_str(rng.pick(PORTS));
    url.push_str(rng.pick(TAILS_OF_URL));
    (url, secrets)
}

/// A password with an unescaped '/', '?' or '#' can end the URL's authority early, leaving
/// the rest of it in the path, query or fragment (`amqp://u:12/secret@host`); this found that
/// `redact` showed it, before it learnt to mask up to the last '@' in such URLs.
fn fuzz_redact(context: &Context<'_>, cases: u64, _notes: &mut Vec<String>) -> u64 {
    let mut rng = Rng(context.seed);
    let mut done = 0;
    for index in 0..cases {
        let (url, secrets) = url_with_secret(&mut rng);
        let input = &url;
        context.case(index, &input, || {
            let redacted = redact(&url);
            let parsed = match BrokerUrl::parse(&url) {
                Ok(parsed) => format!("{parsed} {parsed:?}"),
                Err(err) => err.to_string(),
            };
            for (shown, by) in [(&redacted, "redact"), (&parsed, "BrokerUrl::parse")] {
                if let Some(secret) = leaked_secret(&url, &secrets, shown) {
                    return Err(format!("{by} shows secret {secret:?}: {shown:?}"));
                }
            }
            Ok(())
        });
        done += 1;
    }
    done
}

/// The secret `shown` gives away, if any. A secret also found in the text shown for the same
/// URL with that secret replaced is a coincidence with fixed text, not a leak.
fn leaked_secret<'a>(url: &str, secrets: &'a [String], shown: &str) -> Option<&'a String> {
    secrets.iter().find(|secret| {
        // Occurrences outside the password (in a host, say) are not the password's.
        if !shown.contains(secret.as_str()) || url.matches(secret.as_str()).count() > 1 {
            return false;
        }
        let masked = url.replace(secret.as_str(), &"Q".repeat(secret.len()));
        let coincidence = redact(&masked).contains(secret.as_str())
            || match BrokerUrl::parse(&masked) {
                Ok(parsed) => format!("{parsed} {parsed:?}").contains(secret.as_str()),
                Err(err) => err.to_string().contains(secret.as_str()),
            };
        !coincidence
    })
}
