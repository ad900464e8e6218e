//! The benchmark's floor: request/reply over RabbitMQ with the thinnest client there is,
//! amiquip used directly (no fib_rpc code), to show what the broker allows on this machine.
//! `scripts/bench.sh` compares `fib-rpc bench --callers 64` against it, and runs its client
//! against `fib-rpc serve` too (EXPECT `55`, fib(10)) to compare the clients alone.
//!
//! ```text
//! cargo build --release --example amiquip_floor
//! amiquip_floor server QUEUE                          # echo server; runs until killed
//! amiquip_floor client QUEUE IN_FLIGHT SECONDS [EXPECT]
//!     # prints {"calls":..,"calls_per_s":..,"in_flight":..}
//! ```
//!
//! The server declares QUEUE (classic, non-durable, not auto-deleted: delete it yourself) and
//! sends each request's body back to its `reply_to` with its `correlation_id`, acking after the
//! publish. The client publishes body `10` with `reply_to` (its exclusive, server-named reply
//! queue, consumed with no_ack) and a `correlation_id`, keeps IN_FLIGHT requests outstanding
//! (a new one for each reply), and counts replies for SECONDS, all on one thread. A reply
//! counts when its body is EXPECT (default `10`, the request body: what the echo server sends
//! back); `calls` counts only those.
//!
//! Broker: `AMQP_URL` (default `amqp://guest:guest@localhost:5672/%2f`); only plain
//! `amqp://user:password@host:port/vhost` URLs.

use std::collections::HashSet;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use amiquip::{
    AmqpProperties, Auth, Channel, Connection, ConnectionOptions, ConnectionTuning,
    ConsumerMessage, ConsumerOptions, Publish, QueueDeclareOptions,
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Server prefetch: at least the client's 64 requests in flight, so the broker never holds a
/// request back waiting for an ack; the floor must not be limited by flow control.
const SERVER_PREFETCH: u16 = 64;

/// The body of every request: n = 10 for `fib-rpc serve`; the echo server sends it back.
const REQUEST: &[u8] = b"10";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@localhost:5672/%2f".into());
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["server", queue] => server(&url, queue),
        ["client", queue, in_flight, seconds] => {
            client(&url, queue, in_flight.parse()?, seconds.parse()?, REQUEST)
        }
        ["client", queue, in_flight, seconds, expect] => client(
            &url,
            queue,
            in_flight.parse()?,
            seconds.parse()?,
            expect.as_bytes(),
        ),
        _ => Err(
            "usage: amiquip_floor server QUEUE | client QUEUE IN_FLIGHT SECONDS [EXPECT]".into(),
        ),
    }
}

fn server(url: &str, queue: &str) -> Result<()> {
    let mut connection = connect(url)?;
    let channel = connection.open_channel(None)?;
    channel.qos(0, SERVER_PREFETCH, false)?;
    let options = QueueDeclareOptions {
        durable: false,
        auto_delete: false,
        ..QueueDeclareOptions::default()
    };
    let consumer = channel
        .queue_declare(queue, options)?
        .consume(ConsumerOptions::default())?;
    eprintln!("amiquip_floor server: consuming {queue:?}");
    for message in consumer.receiver() {
        let ConsumerMessage::Delivery(request) = message else {
            return Err(format!("consumer ended: {message:?}").into());
        };
        let props = &request.properties;
        if let Some(reply_to) = props.reply_to() {
            let mut reply = AmqpProperties::default();
            if let Some(id) = props.correlation_id() {
                reply = reply.with_correlation_id(id.clone());
            }
            let publish = Publish::with_properties(&request.body, reply_to.as_str(), reply);
            channel.basic_publish("", publish)?;
        }
        consumer.ack(request)?;
    }
    Ok(())
}

fn client(url: &str, queue: &str, in_flight: usize, seconds: f64, expect: &[u8]) -> Result<()> {
    let mut connection = connect(url)?;
    let channel = connection.open_channel(None)?;
    let options = QueueDeclareOptions {
        exclusive: true,
        ..QueueDeclareOptions::default()
    };
    let reply_queue = channel.queue_declare("", options)?;
    let reply_to = reply_queue.name().to_owned();
    let consumer = reply_queue.consume(ConsumerOptions {
        no_ack: true,
        ..ConsumerOptions::default()
    })?;

    // Correlation ids are a counter: unique within the run, which is all a floor needs.
    let mut next_id = 0u64;
    let mut outstanding = HashSet::with_capacity(in_flight);
    let mut send = |channel: &Channel, outstanding: &mut HashSet<String>| -> Result<()> {
        let id = next_id.to_string();
        next_id += 1;
        let properties = AmqpProperties::default()
            .with_reply_to(reply_to.clone())
            .with_correlation_id(id.clone());
        channel.basic_publish("", Publish::with_properties(REQUEST, queue, properties))?;
        outstanding.insert(id);
        Ok(())
    };

    let started = Instant::now();
    let end = started + Duration::from_secs_f64(seconds);
    for _ in 0..in_flight {
        send(&channel, &mut outstanding)?;
    }
    let mut calls = 0u64;
    while Instant::now() < end {
        let message = consumer
            .receiver()
            .recv_timeout(end.saturating_duration_since(Instant::now()));
        let reply = match message {
            Ok(ConsumerMessage::Delivery(reply)) => reply,
            Ok(other) => return Err(format!("reply consumer ended: {other:?}").into()),
            Err(_) => break, // the run's end (a timeout) or a dead connection
        };
        // Only replies to our own requests, with the expected body, count.
        let known = reply
            .properties
            .correlation_id()
            .as_ref()
            .is_some_and(|id| outstanding.remove(id));
        if known && reply.body == expect {
            calls += 1;
            send(&channel, &mut outstanding)?;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{{\"calls\":{calls},\"calls_per_s\":{:.1},\"in_flight\":{in_flight}}}",
        calls as f64 / elapsed
    );
    connection.close()?;
    Ok(())
}

/// Opens the socket ourselves (connect timeout, `TCP_NODELAY`: without it each round trip
/// waits ~40 ms for Nagle against delayed ACKs) and hands it to amiquip.
fn connect(url: &str) -> Result<Connection> {
    let rest = url
        .strip_prefix("amqp://")
        .ok_or("only amqp:// URLs are supported")?;
    let (user_info, rest) = rest.rsplit_once('@').unwrap_or(("guest:guest", rest));
    let (username, password) = user_info.split_once(':').unwrap_or((user_info, ""));
    let (host_port, vhost) = rest.split_once('/').unwrap_or((rest, ""));
    let host_port = match host_port.rsplit_once(':') {
        Some(_) => host_port.to_owned(),
        None => format!("{host_port}:5672"),
    };
    let address = host_port
        .to_socket_addrs()?
        .next()
        .ok_or("broker host has no address")?;
    let stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_nodelay(true)?;
    let options = ConnectionOptions::<Auth>::default()
        .auth(Auth::Plain {
            username: percent_decode(username)?,
            password: percent_decode(password)?,
        })
        .virtual_host(match vhost {
            "" => "/".to_owned(),
            vhost => percent_decode(vhost)?,
        })
        .connection_timeout(Some(Duration::from_secs(5)));
    let stream = mio::net::TcpStream::from_stream(stream)?;
    Ok(Connection::insecure_open_stream(
        stream,
        options,
        ConnectionTuning::default(),
    )?)
}

/// `%2f` → `/` and so on, as URLs write them.
fn percent_decode(text: &str) -> Result<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' && tail.len() >= 2 {
            let hex = std::str::from_utf8(&tail[..2])?;
            bytes.push(u8::from_str_radix(hex, 16)?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    Ok(String::from_utf8(bytes)?)
}
