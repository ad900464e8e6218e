//! A minimal HTTP/1.x responder for one read-only page (`serve --metrics-addr`), on std's
//! `TcpListener`: no HTTP crate, no async runtime.
//!
//! It answers `GET` (and `HEAD`) of its one path and refuses everything else: another path
//! 404, another method 405, a request that is not HTTP/1.x 400, a request head over
//! [`MAX_HEAD`] 431, one not complete within [`READ_DEADLINE`] 408. Every response says
//! `Connection: close` and carries a `Content-Length`; the connection is then closed, so
//! there is no keep-alive and no request body to read.
//!
//! # Threads
//!
//! [`CONNECTIONS`] threads (`fib-rpc-http-N`) each block in `accept` on the same socket and
//! handle one connection at a time, so that many connections are served at once; more wait in
//! the kernel's backlog. A connection holds its thread at most [`READ_DEADLINE`] to send its
//! request head and [`WRITE_DEADLINE`] to take the response, so a client that stalls delays
//! others by at most that much, and only once every thread is taken. Nothing here touches
//! the RPC server's threads: the page is rendered from atomics.
//!
//! [`HttpServer::stop`] (or dropping it) sets a flag, wakes the threads blocked in `accept`
//! by connecting to the socket, and joins them. A thread busy with a connection notices the
//! flag within [`POLL`]; if one still has not ended after [`STOP_BOUND`] (a write stuck on a
//! client that takes nothing), it is left to finish on its own rather than block the caller.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// Connections handled at once.
pub const CONNECTIONS: usize = 2;
/// Longest request head taken (request line and headers), in bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// How long a client has to send its whole request head.
pub const READ_DEADLINE: Duration = Duration::from_secs(2);
/// How long a client has to take the whole response.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(2);
/// How often a thread waiting on a slow client looks at the stop flag.
const POLL: Duration = Duration::from_millis(200);
/// How long [`HttpServer::stop`] waits for the threads to end.
const STOP_BOUND: Duration = Duration::from_secs(3);
/// How long, after responding, a thread reads what the client still sends (a request body it
/// was not asked for) so that closing does not reset the connection under the response.
const LINGER: Duration = Duration::from_millis(100);

/// The page served: its path, content type, and a function that renders it per request.
pub struct Page {
    pub path: &'static str,
    pub content_type: &'static str,
    pub render: Box<dyn Fn() -> String + Send + Sync>,
}

/// A running responder; stops and joins its threads when stopped or dropped.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Disconnects once every thread has ended, so waiting for them can be bounded.
    finished: Receiver<()>,
}

impl HttpServer {
    /// Serves `page` on `listener` (already bound, so a bind failure is the caller's to
    /// report before anything starts).
    pub fn start(listener: TcpListener, page: Page) -> std::io::Result<HttpServer> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let page = Arc::new(page);
        let (done, finished) = crossbeam_channel::bounded::<()>(0);
        let mut server = HttpServer {
            addr,
            stop,
            threads: Vec::with_capacity(CONNECTIONS),
            finished,
        };
        for index in 0..CONNECTIONS {
            let (stop, page, sender) = (Arc::clone(&server.stop), Arc::clone(&page), done.clone());
            let spawned = listener.try_clone().and_then(|listener| {
                std::thread::Builder::new()
                    .name(format!("fib-rpc-http-{index}"))
                    .spawn(move || accept_loop(&listener, &stop, &page, sender))
            });
            match spawned {
                Ok(thread) => server.threads.push(thread),
                Err(err) => {
                    // Then `server` drops, which stops the threads already started.
                    drop(done);
                    return Err(err);
                }
            }
        }
        Ok(server)
    }

    /// The address it listens on (with the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and joins the threads, waiting at most a few seconds.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        self.stop.store(true, Ordering::SeqCst);
        // One connection per thread: each blocked in `accept` takes one, sees the flag and
        // ends; a busy one sees the flag before it accepts again. Unaccepted ones are closed
        // with the listener.
        let wake_addr = wake_address(self.addr);
        for _ in 0..self.threads.len() {
            if let Err(err) = TcpStream::connect_timeout(&wake_addr, Duration::from_secs(1)) {
                log::warn!("could not wake the metrics endpoint: {err}");
                break;
            }
        }
        let threads = std::mem::take(&mut self.threads);
        match self.finished.recv_timeout(STOP_BOUND) {
            Err(RecvTimeoutError::Disconnected) => {
                for thread in threads {
                    let _ = thread.join();
                }
            }
            _ => log::warn!("metrics endpoint not stopped within {STOP_BOUND:?}; leaving it"),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Where to connect to reach a listener bound to `addr`: the loopback address for a
/// wildcard (`0.0.0.0`, `[::]`), else `addr` itself.
fn wake_address(addr: SocketAddr) -> SocketAddr {
    let mut wake = addr;
    if addr.ip().is_unspecified() {
        wake.set_ip(match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    wake
}

/// One thread: accept a connection, answer it, again, until stopped. `_done` is dropped when
/// the thread ends (see [`HttpServer::finished`]).
fn accept_loop(listener: &TcpListener, stop: &AtomicBool, page: &Page, _done: Sender<()>) {
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                if let Err(err) = handle(stream, stop, page) {
                    log::debug!("metrics request from {peer}: {err}");
                }
            }
            // Out of file descriptors, or the like: wait rather than spin.
            Err(err) => {
                log::warn!("metrics endpoint cannot accept: {err}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// What a request head asks for, or the status refusing it.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// `GET` (`head: false`) or `HEAD` (`head: true`) of `path` (query string removed).
    Get { path: String, head: bool },
    /// Any other method.
    OtherMethod { path: String },
}

/// A response status we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    HeadTooLarge,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::RequestTimeout => "408 Request Timeout",
            Status::HeadTooLarge => "431 Request Header Fields Too Large",
        }
    }
}

/// The length of the request head in `buffer` (through the blank line ending it), once it
/// is all there. Bare `\n` line ends are taken as well as `\r\n`.
pub fn head_length(buffer: &[u8]) -> Option<usize> {
    buffer
        .windows(2)
        .enumerate()
        .find_map(|(at, pair)| match pair {
            b"\n\n" => Some(at + 2),
            b"\n\r" if buffer.get(at + 2) == Some(&b'\n') => Some(at + 3),
            _ => None,
        })
}

/// Reads the request line: `METHOD SP TARGET SP HTTP/1.x`. Headers are not needed for
/// anything and are not looked at. Only the request line need be there.
pub fn parse_request_line(head: &[u8]) -> Result<Parsed, Status> {
    let line_end = head
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(Status::BadRequest)?;
    let line = head[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&head[..line_end]);
    let line = std::str::from_utf8(line).map_err(|_| Status::BadRequest)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Status::BadRequest);
    };
    let is_token = |s: &str| !s.is_empty() && s.bytes().all(is_token_byte);
    let version_ok = version
        .strip_prefix("HTTP/1.")
        .is_some_and(|minor| minor.len() == 1 && minor.as_bytes()[0].is_ascii_digit());
    if !is_token(method) || !version_ok || !target.starts_with('/') {
        return Err(Status::BadRequest);
    }
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Status::BadRequest);
    }
    let path = target.split(['?', '#']).next().unwrap_or("").to_owned();
    Ok(match method {
        "GET" => Parsed::Get { path, head: false },
        "HEAD" => Parsed::Get { path, head: true },
        _ => Parsed::OtherMethod { path },
    })
}

/// Whether the bytes so far cannot be the start of an HTTP request: the method has a byte no
/// method has. Lets garbage be refused before the head would be complete.
fn cannot_be_http(buffer: &[u8]) -> bool {
    let method = buffer.split(|&b| b == b' ').next().unwrap_or(buffer);
    let complete = method.len() < buffer.len();
    !method.iter().all(|&b| is_token_byte(b))
        || (complete && method.is_empty())
        || method.len() > 16
}

/// A byte allowed in a method name (an HTTP token).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Answers one connection.
fn handle(mut stream: TcpStream, stop: &AtomicBool, page: &Page) -> std::io::Result<()> {
    let head = match read_head(&mut stream, stop)? {
        Ok(head) => head,
        Err(None) => return Ok(()), // closed, or stopping: nothing to answer
        Err(Some(status)) => return respond(&mut stream, status, "", None, false),
    };
    match parse_request_line(&head) {
        Ok(Parsed::Get { path, head }) if path == page.path => {
            let body = (page.render)();
            respond(
                &mut stream,
                Status::Ok,
                &body,
                Some(page.content_type),
                head,
            )
        }
        Ok(Parsed::Get { head, .. }) => respond(&mut stream, Status::NotFound, "", None, head),
        Ok(Parsed::OtherMethod { path }) if path == page.path => {
            respond(&mut stream, Status::MethodNotAllowed, "", None, false)
        }
        Ok(Parsed::OtherMethod { .. }) => respond(&mut stream, Status::NotFound, "", None, false),
        Err(status) => respond(&mut stream, status, "", None, false),
    }
}

/// Reads the request head within [`READ_DEADLINE`]: `Ok(Ok(head))`, or `Ok(Err(status))` to
/// refuse it, or `Ok(Err(None))` to close without a word (the client closed, or we stop).
fn read_head(
    stream: &mut TcpStream,
    stop: &AtomicBool,
) -> std::io::Result<Result<Vec<u8>, Option<Status>>> {
    let deadline = Instant::now() + READ_DEADLINE;
    let mut buffer = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(Err(Some(Status::RequestTimeout)));
        }
        if stop.load(Ordering::SeqCst) {
            return Ok(Err(None));
        }
        stream.set_read_timeout(Some((deadline - now).min(POLL)))?;
        let read = match stream.read(&mut chunk) {
            Ok(0) => return Ok(Err(None)),
            Ok(read) => read,
            Err(err) if is_timeout(&err) || err.kind() == ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(length) = head_length(&buffer) {
            if length > MAX_HEAD {
                return Ok(Err(Some(Status::HeadTooLarge)));
            }
            buffer.truncate(length);
            return Ok(Ok(buffer));
        }
        if cannot_be_http(&buffer) {
            return Ok(Err(Some(Status::BadRequest)));
        }
        if buffer.len() > MAX_HEAD {
            return Ok(Err(Some(Status::HeadTooLarge)));
        }
    }
}

fn is_timeout(err: &std::io::Error) -> bool {
    matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Sends the response and closes. A refusal's body is its status line in words; `HEAD`
/// gets the headers of the `GET` without the body.
fn respond(
    stream: &mut TcpStream,
    status: Status,
    body: &str,
    content_type: Option<&str>,
    head_only: bool,
) -> std::io::Result<()> {
    let refusal;
    let body = if status == Status::Ok {
        body
    } else {
        refusal = format!("{}\n", status.line());
        &refusal
    };
    let mut response = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        status.line(),
        content_type.unwrap_or("text/plain; charset=utf-8"),
        body.len()
    );
    if status == Status::MethodNotAllowed {
        response.push_str("Allow: GET, HEAD\r\n");
    }
    response.push_str("\r\n");
    if !head_only {
        response.push_str(body);
    }
    write_within(stream, response.as_bytes(), Instant::now() + WRITE_DEADLINE)?;
    // Half-close, then read briefly what the client may still send, so that closing with
    // unread bytes does not reset the connection before the client has the response.
    stream.shutdown(Shutdown::Write)?;
    let linger_until = Instant::now() + LINGER;
    let mut sink = [0u8; 1024];
    let mut drained = 0;
    while drained < MAX_HEAD {
        let now = Instant::now();
        if now >= linger_until {
            break;
        }
        stream.set_read_timeout(Some(linger_until - now))?;
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(read) => drained += read,
        }
    }
    Ok(())
}

/// `write_all`, but all of it by `deadline`.
fn write_within(
    stream: &mut TcpStream,
    mut bytes: &[u8],
    deadline: Instant,
) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            return Err(ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(deadline - now))?;
        match stream.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(written) => bytes = &bytes[written..],
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Result<Parsed, Status> {
        Ok(Parsed::Get {
            path: path.into(),
            head: false,
        })
    }

    #[test]
    fn request_lines() {
        let parse = |text: &str| parse_request_line(text.as_bytes());
        assert_eq!(parse("GET /metrics HTTP/1.1\r\n\r\n"), get("/metrics"));
        assert_eq!(parse("GET /metrics HTTP/1.0\n\n"), get("/metrics"));
        assert_eq!(parse("GET /metrics?x=1 HTTP/1.1\r\n"), get("/metrics"));
        assert_eq!(parse("GET /other HTTP/1.1\r\n"), get("/other"));
        assert_eq!(
            parse("HEAD /metrics HTTP/1.1\r\n"),
            Ok(Parsed::Get {
                path: "/metrics".into(),
                head: true
            })
        );
        assert_eq!(
            parse("POST /metrics HTTP/1.1\r\n"),
            Ok(Parsed::OtherMethod {
                path: "/metrics".into()
            })
        );
        for bad in [
            "GET /metrics\r\n",
            "GET  /metrics HTTP/1.1\r\n",
            "GET /metrics HTTP/2.0\r\n",
            "GET /metrics HTTP/1.10\r\n",
            "GET metrics HTTP/1.1\r\n",
            "GET /met rics HTTP/1.1\r\n",
            "G(T /metrics HTTP/1.1\r\n",
            "PRI * HTTP/2.0\r\n",
            "GET /metrics HTTP/1.1 extra\r\n",
            "\r\n",
            "GET /metrics HTTP/1.1", // no line end
        ] {
            assert_eq!(parse(bad), Err(Status::BadRequest), "{bad:?}");
        }
        assert_eq!(
            parse_request_line(b"GET /\xff HTTP/1.1\r\n"),
            Err(Status::BadRequest)
        );
    }

    #[test]
    fn a_head_ends_at_its_blank_line() {
        assert_eq!(
            head_length(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"),
            Some(27)
        );
        assert_eq!(head_length(b"GET / HTTP/1.1\n\nbody"), Some(16));
        assert_eq!(head_length(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(head_length(b"GET / HTTP/1.1\r\n\r"), None);
    }

    #[test]
    fn garbage_is_refused_before_the_head_ends() {
        assert!(cannot_be_http(b"\x16\x03\x01\x02\x00")); // a TLS client hello
        assert!(cannot_be_http(b" GET"));
        assert!(cannot_be_http(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"));
        assert!(!cannot_be_http(b"GE"));
        assert!(!cannot_be_http(b"GET /metr"));
        assert!(!cannot_be_http(b"OPTIONS * HTTP/1.1\r\n"));
        assert!(!cannot_be_http(b"M-SEARCH * HTTP/1.1\r\n"));
    }

    #[test]
    fn wildcard_addresses_are_woken_on_loopback() {
        let at = |text: &str| wake_address(text.parse().unwrap()).to_string();
        assert_eq!(at("0.0.0.0:9464"), "127.0.0.1:9464");
        assert_eq!(at("[::]:9464"), "[::1]:9464");
        assert_eq!(at("192.0.2.1:80"), "192.0.2.1:80");
    }
}
