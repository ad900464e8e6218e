//! Random raw requests through the real broker: whatever a peer publishes (any body, with or
//! without `reply_to` and `correlation_id`, odd ids, random headers and properties), the server
//! answers each request that can be answered exactly once, with fib(n) or an error reply whose
//! code is the one the documentation gives, and keeps serving.
//!
//! The in-process fuzzing of the same functions is `src/wire/fuzz.rs`; this is the end-to-end
//! check that nothing between the socket and the handler changes the picture. Reproducible:
//! the seed is printed, and `FIB_RPC_FUZZ_SEED` replaces it.

mod common;
// The lib's fuzz test and this one draw from the same generator.
#[path = "../src/fuzz/rng.rs"]
mod rng;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use amiquip::{AmqpProperties, AmqpValue, ConsumerMessage, Delivery, FieldTable, Publish};
use common::{admin_connection, amqp_url, TestQueue};
use fib_rpc::{ClientOptions, FibonacciHandler, FibonacciRpcClient, RpcServer, ServerOptions};
use num_bigint::BigUint;
use rng::Rng;

const REQUESTS: usize = 20_000;

/// Small, so a debug-build server answers 20,000 requests in a few seconds.
const MAX_N: u64 = 300;

const DEFAULT_SEED: u64 = 0x5EED_F1B0_2024_0002;

/// Bound on everything: publishing, every reply, the checks after.
const DEADLINE: Duration = Duration::from_secs(60);

/// How long to keep listening after the last expected reply, to catch duplicates.
const SETTLE: Duration = Duration::from_millis(500);

#[test]
fn every_answerable_request_gets_exactly_one_right_reply_and_the_server_survives() {
    let seed = std::env::var("FIB_RPC_FUZZ_SEED")
        .ok()
        .map(|text| parse_seed(&text))
        .unwrap_or(DEFAULT_SEED);
    println!("fuzz over the broker: seed {seed:#x} (FIB_RPC_FUZZ_SEED), {REQUESTS} requests");
    let started = Instant::now();
    let deadline = started + DEADLINE;
    let mut rng = Rng(seed);
    let fibs = fib_table(MAX_N);

    let queue = TestQueue::new("fuzz");
    let server = RpcServer::start(
        &amqp_url(),
        ServerOptions::default()
            .queue(queue.name.as_str())
            .workers(2),
        FibonacciHandler::new(MAX_N),
    )
    .expect("server starts");

    let mut connection = admin_connection();
    let channel = connection.open_channel(None).unwrap();
    let (reply_queue, consumer) = common::reply_consumer(&channel);
    let decimal = decimal_template();

    // Requests with a unique id, by id; and those sharing no id or the empty id, as multisets
    // of outcomes (their replies can only be told apart by content).
    let mut by_id: HashMap<String, (Vec<u8>, String)> = HashMap::new();
    let mut shared: HashMap<Option<String>, Vec<String>> = HashMap::new();
    let mut kinds = [0usize; 3]; // answered to us, no reply_to, reply_to elsewhere
    for index in 0..REQUESTS {
        let body = request_body(&mut rng);
        let correlation_id = match rng.below(20) {
            0 | 1 => None,
            2 => Some(String::new()),
            _ => Some(unique_id(&mut rng, index)),
        };
        let reply_to = match rng.below(20) {
            0..=2 => None,
            // Replies the broker drops: no such queue, an empty or odd routing key, direct
            // reply-to names nobody consumes. The server must not care.
            3 => Some(match rng.below(6) {
                0 => format!("fib-rpc-test-fuzz-nowhere-{}", rng.next()),
                1 => String::new(),
                2 => " ".into(),
                3 => "amq.gen-nothing".into(),
                4 => "amq.rabbitmq.reply-to.garbage".into(),
                _ => "amq.rabbitmq.reply-to.g1h2AA5yZXBseUAyMjkwMjg5NQAAAEQAAAAAXk2BzA==".into(),
            }),
            _ => Some(reply_queue.clone()),
        };
        let mut properties = random_properties(&mut rng, &decimal);
        if let Some(id) = &correlation_id {
            properties = properties.with_correlation_id(id.clone());
        }
        if let Some(to) = &reply_to {
            properties = properties.with_reply_to(to.clone());
        }
        let answered = reply_to.as_deref() == Some(reply_queue.as_str());
        kinds[match (answered, &reply_to) {
            (true, _) => 0,
            (false, None) => 1,
            (false, Some(_)) => 2,
        }] += 1;
        if answered {
            let outcome = expected_outcome(&body, &fibs);
            match &correlation_id {
                Some(id) if !id.is_empty() => {
                    let previous = by_id.insert(id.clone(), (body.clone(), outcome));
                    assert!(previous.is_none(), "generated id {id:?} twice");
                }
                _ => shared
                    .entry(correlation_id.clone())
                    .or_default()
                    .push(outcome),
            }
        }
        channel
            .basic_publish(
                "",
                Publish {
                    body: &body,
                    routing_key: queue.name.clone(),
                    mandatory: false,
                    immediate: false,
                    properties,
                },
            )
            .unwrap();
    }
    let published = started.elapsed();
    let expected_replies = by_id.len() + shared.values().map(Vec::len).sum::<usize>();
    assert_eq!(expected_replies, kinds[0]);

    // Collect: each reply is checked as it comes; the shared ones are compared as multisets.
    let mut received_shared: HashMap<Option<String>, Vec<String>> = HashMap::new();
    let mut received = 0;
    let mut last_expected_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let wait_until = match last_expected_at {
            Some(at) => (at + SETTLE).min(deadline),
            None => deadline,
        };
        if now >= wait_until {
            break;
        }
        let delivery = match consumer.receiver().recv_timeout(wait_until - now) {
            Ok(ConsumerMessage::Delivery(delivery)) => delivery,
            Ok(other) => panic!("reply consumer ended: {other:?}"),
            Err(_) => break, // the deadline or the settling time passed
        };
        received += 1;
        let outcome = reply_outcome(&delivery);
        match delivery.properties.correlation_id() {
            Some(id) if !id.is_empty() => {
                let Some((body, expected)) = by_id.remove(id) else {
                    panic!("reply with unknown or repeated correlation_id {id:?}: {outcome}");
                };
                assert_eq!(
                    outcome,
                    expected,
                    "request {:?} (correlation_id {id:?})",
                    String::from_utf8_lossy(&body)
                );
            }
            id => received_shared.entry(id.clone()).or_default().push(outcome),
        }
        if received == expected_replies {
            last_expected_at = Some(Instant::now());
        }
        assert!(
            received <= expected_replies,
            "more replies than requests to answer"
        );
    }
    let collected = started.elapsed();
    assert!(
        by_id.is_empty(),
        "{} requests with a correlation_id got no reply within {DEADLINE:?}, e.g. {:?}",
        by_id.len(),
        by_id.iter().next()
    );
    for outcomes in shared.values_mut().chain(received_shared.values_mut()) {
        outcomes.sort();
    }
    assert_eq!(
        received_shared, shared,
        "replies without a (non-empty) correlation_id"
    );
    assert_eq!(received, expected_replies);

    // Still serving, through the ordinary client.
    let client = FibonacciRpcClient::connect_with(
        &amqp_url(),
        ClientOptions::default()
            .queue(queue.name.as_str())
            .timeout(deadline.saturating_duration_since(Instant::now())),
    )
    .expect("client connects");
    assert_eq!(client.call(30).unwrap(), BigUint::from(832_040u32));
    client.close();

    // A graceful stop acks what it holds; anything left unacked or unconsumed would now be
    // ready in the queue.
    server
        .stop_timeout(deadline.saturating_duration_since(Instant::now()))
        .expect("server stops cleanly");
    assert_eq!(queue.message_count(), 0, "requests left in the queue");
    common::cancel_consumer(consumer);
    connection.close().unwrap();
    println!(
        "fuzz over the broker: {REQUESTS} requests ({} answerable, {} without reply_to, {} \
         replying elsewhere) published in {:.2} s; {received} replies checked by {:.2} s; \
         {:.2} s in all",
        kinds[0],
        kinds[1],
        kinds[2],
        published.as_secs_f64(),
        collected.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        started.elapsed() < DEADLINE,
        "took longer than {DEADLINE:?}"
    );
}

fn parse_seed(text: &str) -> u64 {
    let text = text.trim().replace('_', "");
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    }
    .unwrap_or_else(|_| panic!("FIB_RPC_FUZZ_SEED={text:?} is not a number"))
}

/// The reply as one comparable string: `fib <decimal>` or `error <code>`. Anything else (an
/// error header that is not text, an unknown code, a success that is not decimal, an empty
/// error message) fails the test here.
fn reply_outcome(delivery: &Delivery) -> String {
    let headers = delivery.properties.headers().as_ref();
    match headers.and_then(|headers| headers.get("x-rpc-error")) {
        None => {
            assert!(
                !delivery.body.is_empty() && delivery.body.iter().all(u8::is_ascii_digit),
                "success reply that is not decimal: {:?}",
                String::from_utf8_lossy(&delivery.body)
            );
            format!("fib {}", String::from_utf8_lossy(&delivery.body))
        }
        Some(AmqpValue::LongString(code)) => {
            assert!(
                ["bad_request", "out_of_range", "internal"].contains(&code.as_str()),
                "unknown error code {code:?}"
            );
            assert!(
                !delivery.body.is_empty(),
                "error reply {code} without words"
            );
            format!("error {code}")
        }
        Some(other) => panic!("error header is not text: {other:?}"),
    }
}

/// What the server must answer, from the documentation alone: fib(n) when the body is UTF-8
/// and, without surrounding ASCII whitespace (not vertical tab), decimal digits whose value is
/// at most `MAX_N`; `out_of_range` for larger numbers; `bad_request` for anything else.
fn expected_outcome(body: &[u8], fibs: &[String]) -> String {
    let space = |b: &u8| b" \t\n\x0c\r".contains(b);
    let start = body.iter().position(|b| !space(b)).unwrap_or(body.len());
    let end = body
        .iter()
        .rposition(|b| !space(b))
        .map_or(start, |end| end + 1);
    let core = &body[start..end];
    if std::str::from_utf8(body).is_err() || core.is_empty() || !core.iter().all(u8::is_ascii_digit)
    {
        return "error bad_request".into();
    }
    let significant = &core[core.iter().take_while(|&&b| b == b'0').count()..];
    let value = match significant.len() {
        // More digits than MAX_N has: out of range, and beyond u64 too.
        0..=18 => significant
            .iter()
            .fold(0u64, |value, digit| value * 10 + u64::from(digit - b'0')),
        _ => return "error out_of_range".into(),
    };
    match fibs.get(value as usize) {
        Some(fib) if value <= MAX_N => format!("fib {fib}"),
        _ => "error out_of_range".into(),
    }
}

/// fib(0..=max) in decimal, by repeated addition.
fn fib_table(max: u64) -> Vec<String> {
    let (mut a, mut b) = (BigUint::ZERO, BigUint::from(1u8));
    let mut table = Vec::new();
    for _ in 0..=max {
        table.push(a.to_string());
        let next = &a + &b;
        a = std::mem::replace(&mut b, next);
    }
    table
}

const SPACES: &[&str] = &["", "", " ", "\t", "\r\n", "\n", "\x0b", "\x0c", "\u{a0}"];
const ODD: &[&str] = &[
    "-5", "+5", "1.5", "1e3", "0x10", "3 4", "abc", "\u{661}", "\u{ff11}", "-0", "1_000", "٣",
];

/// A body from a mix: good numbers (with spaces), numbers above the limit or u64, near misses,
/// empty, binary, and long bodies of a few KB.
fn request_body(rng: &mut Rng) -> Vec<u8> {
    let (before, after) = (rng.pick(SPACES), rng.pick(SPACES));
    match rng.below(20) {
        0..=7 => format!("{before}{}{after}", rng.below(MAX_N + 1)).into_bytes(),
        8 => format!("{before}{}{after}", MAX_N + 1 + rng.below(1000)).into_bytes(),
        9 => format!("{}{}", u64::MAX as u128 + u128::from(rng.below(3)), after).into_bytes(),
        10 => format!("{before}0000{}", rng.below(MAX_N + 1)).into_bytes(),
        11..=13 => format!("{before}{}{after}", rng.pick(ODD)).into_bytes(),
        14 => Vec::new(),
        15 | 16 => {
            let len = rng.index(64);
            rng.bytes_of(&(0..=255).collect::<Vec<u8>>(), len)
        }
        17 => {
            let len = rng.index(16);
            rng.bytes_of(b"0123456789 \t\r\n-+.e\xff\xc2\xa0", len)
        }
        _ => {
            let len = 64 + rng.index(4000);
            match rng.below(3) {
                0 => vec![b'1'; len],
                1 => [vec![b' '; len], b"42".to_vec()].concat(),
                _ => rng.bytes_of(&(0..=255).collect::<Vec<u8>>(), len),
            }
        }
    }
}

/// A correlation id no other request has, often with odd characters; at most 255 bytes, what
/// an AMQP short string holds.
fn unique_id(rng: &mut Rng, index: usize) -> String {
    const PREFIXES: &[&str] = &[
        "",
        "id-",
        "\u{fc}\u{2713}-",
        "\n\t",
        "\0",
        "\"'\\",
        "x-rpc-error:",
        " ",
        "\u{1f980}",
    ];
    let mut id = match rng.below(6) {
        0 => uuid::Uuid::new_v4().to_string(),
        1 => "x".repeat(240),
        _ => rng.pick(PREFIXES).to_owned(),
    };
    id.push_str(&format!("#{index}"));
    id
}

/// Every other property a publisher may set, at random; the server must ignore them all.
fn random_properties(rng: &mut Rng, decimal: &AmqpValue) -> AmqpProperties {
    let mut properties = AmqpProperties::default();
    if rng.below(3) == 0 {
        properties = properties.with_headers(random_table(rng, 2, decimal));
    }
    if rng.below(4) == 0 {
        let content_type = rng.pick(&["text/plain", "application/json", "", "\u{e9}"]);
        properties = properties.with_content_type(content_type.to_owned());
    }
    if rng.below(6) == 0 {
        properties = properties.with_content_encoding("gzip".into());
    }
    if rng.below(4) == 0 {
        properties = properties.with_delivery_mode(1 + rng.below(2) as u8);
    }
    if rng.below(6) == 0 {
        properties = properties.with_priority(rng.next() as u8);
    }
    if rng.below(6) == 0 {
        // Long enough never to expire during the test; a short one would (rightly) drop it.
        properties = properties.with_expiration("600000".into());
    }
    if rng.below(6) == 0 {
        properties = properties.with_message_id(format!("m{}", rng.next()));
    }
    if rng.below(6) == 0 {
        properties = properties.with_timestamp(rng.next());
    }
    if rng.below(6) == 0 {
        properties = properties.with_type_("fib".into());
    }
    if rng.below(8) == 0 {
        // The broker refuses any other user_id than the connection's own.
        properties = properties.with_user_id("guest".into());
    }
    if rng.below(6) == 0 {
        properties = properties.with_app_id("fuzz".into());
    }
    properties
}

fn random_table(rng: &mut Rng, depth: u32, decimal: &AmqpValue) -> FieldTable {
    const KEYS: &[&str] = &[
        "x-rpc-error",
        "x-death",
        "",
        "k",
        "x-match",
        "\u{e9}",
        "reply_to",
    ];
    let mut table = FieldTable::default();
    for _ in 0..rng.below(4) {
        let key = rng.pick(KEYS).to_owned();
        table.insert(key, random_value(rng, depth, decimal));
    }
    table
}

/// A header value of any kind amiquip can send, nested up to `depth`.
fn random_value(rng: &mut Rng, depth: u32, decimal: &AmqpValue) -> AmqpValue {
    match rng.below(if depth == 0 { 17 } else { 19 }) {
        0 => AmqpValue::Boolean(rng.below(2) == 0),
        1 => AmqpValue::ShortShortInt(rng.next() as i8),
        2 => AmqpValue::ShortShortUInt(rng.next() as u8),
        3 => AmqpValue::ShortInt(rng.next() as i16),
        4 => AmqpValue::ShortUInt(rng.next() as u16),
        5 => AmqpValue::LongInt(rng.next() as i32),
        6 => AmqpValue::LongUInt(rng.next() as u32),
        7 => AmqpValue::LongLongInt(rng.next() as i64),
        // Finite only: RabbitMQ 3.10 cannot decode a NaN or infinite header value and closes
        // the publisher's connection (541 INTERNAL_ERROR).
        8 => AmqpValue::Float(rng.next() as i32 as f32 / 1024.0),
        9 => AmqpValue::Double(rng.next() as i64 as f64 / 1e6),
        10 => {
            let mut value = decimal.clone();
            if let AmqpValue::DecimalValue(decimal) = &mut value {
                decimal.scale = rng.next() as u8;
                decimal.value = rng.next() as u32;
            }
            value
        }
        11 | 12 => AmqpValue::LongString(
            rng.pick(&["bad_request", "internal", "", "\u{1f980}", "teapot"])
                .to_owned(),
        ),
        13 => AmqpValue::Timestamp(rng.next()),
        14 => {
            let len = rng.index(16);
            AmqpValue::ByteArray(rng.bytes_of(b"\x00\xffab", len))
        }
        15 | 16 => AmqpValue::Void,
        17 => AmqpValue::FieldArray(
            (0..rng.below(3))
                .map(|_| random_value(rng, depth - 1, decimal))
                .collect(),
        ),
        _ => AmqpValue::FieldTable(random_table(rng, depth - 1, decimal)),
    }
}

/// amiquip does not re-export `DecimalValue`; deserializing one (serde_json is already a
/// dev-dependency) and changing its public fields builds any.
fn decimal_template() -> AmqpValue {
    serde_json::from_str(r#"{"DecimalValue":{"scale":2,"value":12345}}"#).unwrap()
}
