//! Opening AMQP connections the way a latency-sensitive RPC needs them.
//!
//! amiquip's `Connection::insecure_open(url)` connects without a timeout and without
//! `TCP_NODELAY`; with Nagle's algorithm against delayed ACKs every sequential call then costs
//! ~44 ms. So we parse the URL ourselves, open the socket with a bounded connect and
//! `TCP_NODELAY`, and hand it to amiquip.
//!
//! For plain `amqp://` the AMQP protocol header goes out as soon as TCP connects, before
//! amiquip's I/O thread exists: the broker spends about a millisecond setting the connection
//! up once it reads the header, and that now overlaps our own start-up (see
//! [`HeaderSent`]). The name `localhost` means the loopback addresses, without a lookup.
//!
//! With the `tls` feature, `amqps://` URLs go through the same socket, then a TLS handshake
//! (native-tls, certificate verification on unless the URL says `verify=verify_none`), then
//! the AMQP handshake. A watchdog shuts the socket if the handshakes are not done by the
//! connect timeout, so a peer that accepts TCP but stalls or trickles bytes cannot hold
//! `connect` past its bound.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use amiquip::{Auth, Connection, ConnectionOptions, ConnectionTuning};

use crate::error::{BrokerError, Error, Result};

#[cfg(feature = "tls")]
mod tls;
mod url;

pub(crate) use url::BrokerUrl;
pub use url::{redact, DEFAULT_URL};

/// Bound on connecting (TCP, TLS and AMQP handshakes) and on closing, unless told otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// AMQP heartbeat interval in seconds unless told otherwise. A silently dead TCP path is
/// noticed after about two intervals.
pub const DEFAULT_HEARTBEAT_SECS: u16 = 15;

impl BrokerUrl {
    /// Opens an AMQP connection: resolve, connect each address within what is left of
    /// `timeout`, set `TCP_NODELAY`, then do the TLS handshake (`amqps://`) and the AMQP
    /// handshake within the same bound. If every address fails, the first one's error is
    /// reported: the first address is the preferred one (for `localhost`, 127.0.0.1: a box
    /// without IPv6 would otherwise answer "cannot assign requested address" for `::1`).
    ///
    /// With the connection comes the connect watchdog's thread, ending: see [`StoodDown`].
    pub(crate) fn connect(&self, settings: &ConnectSettings) -> Result<(Connection, StoodDown)> {
        let deadline = deadline_after(settings.timeout);
        let addrs = self.addresses()?;
        let mut first_error: Option<Error> = None;
        for addr in addrs {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            match self.connect_one(addr, remaining, settings) {
                Ok(connection) => return Ok(connection),
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| {
            self.connect_error(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no address answered within {:?}", settings.timeout),
            ))
        }))
    }

    /// The addresses to try, in order. `localhost` is the loopback addresses, IPv4 first
    /// (RFC 6761 lets applications answer it themselves, and curl does): no resolver
    /// configuration to read, no `/etc/hosts` to parse, ~0.15 ms less for a short-lived
    /// process. An IP literal is parsed, anything else resolved.
    fn addresses(&self) -> Result<Vec<SocketAddr>> {
        if self.host.eq_ignore_ascii_case("localhost") {
            return Ok([
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ]
            .map(|ip| SocketAddr::new(ip, self.port))
            .to_vec());
        }
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map(Iterator::collect)
            .map_err(|err| self.connect_error(err))
    }

    fn connect_one(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        settings: &ConnectSettings,
    ) -> Result<(Connection, StoodDown)> {
        let started = Instant::now();
        let stream =
            TcpStream::connect_timeout(&addr, timeout).map_err(|e| self.connect_error(e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| self.connect_error(e))?;
        let header_sent = !self.is_tls();
        if header_sent {
            // Into an empty send buffer: cannot block.
            (&stream)
                .write_all(PROTOCOL_HEADER)
                .map_err(|e| self.connect_error(e))?;
        }
        let handshake_timeout = timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1));
        // amiquip bounds each wait for the peer by `connection_timeout`, but a peer that sends
        // a byte now and then restarts that wait, and the TLS and AMQP handshakes wait
        // separately. The watchdog makes `timeout` a bound on the whole.
        let watchdog =
            Watchdog::arm(&stream, handshake_timeout).map_err(|e| self.connect_error(e))?;
        let stream = mio::net::TcpStream::from_stream(stream).map_err(|e| self.connect_error(e))?;
        let options = ConnectionOptions::<Auth>::default()
            .auth(self.auth.clone())
            .virtual_host(self.virtual_host.clone())
            .heartbeat(settings.heartbeat_secs)
            .connection_timeout(Some(handshake_timeout))
            .information(Some(settings.name.clone()));
        let opened = self.open(stream, options, header_sent);
        let (too_late, stood_down) = watchdog.disarm();
        match opened {
            // The watchdog shut the socket just as the handshake finished: the connection is
            // dead already. Dropping it lets amiquip's I/O thread end.
            Ok(_) | Err(_) if too_late => Err(self.handshake_timeout(timeout)),
            Ok(connection) => Ok((connection, stood_down)),
            Err(err) if is_amqp_timeout(&err) => Err(self.handshake_timeout(timeout)),
            Err(cause) => Err(Error::Connect {
                broker: self.redacted.clone(),
                cause,
            }),
        }
    }

    /// The handshakes on a connected socket: TLS first for `amqps://`, then AMQP, whose
    /// protocol header went out already if `header_sent`.
    fn open(
        &self,
        stream: mio::net::TcpStream,
        options: ConnectionOptions<Auth>,
        header_sent: bool,
    ) -> std::result::Result<Connection, BrokerError> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.open(&self.host, &self.redacted, stream, options);
        }
        let tuning = ConnectionTuning::default();
        match header_sent {
            true => Connection::insecure_open_stream(HeaderSent::new(stream), options, tuning),
            false => Connection::insecure_open_stream(stream, options, tuning),
        }
        .map_err(BrokerError::amqp)
    }

    fn handshake_timeout(&self, timeout: Duration) -> Error {
        let handshakes = if self.is_tls() {
            "TLS and AMQP handshakes"
        } else {
            "AMQP handshake"
        };
        self.connect_error(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "the broker accepted the TCP connection but the {handshakes} did not finish \
                 within the connect timeout ({:.1} s)",
                timeout.as_secs_f64()
            ),
        ))
    }

    /// Whether this is an `amqps://` URL.
    fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        return false;
    }

    fn connect_error(&self, err: std::io::Error) -> Error {
        Error::Connect {
            broker: self.redacted.clone(),
            cause: BrokerError::io(err),
        }
    }
}

/// What an AMQP 0-9-1 client sends first: "AMQP", 0, then the protocol version 0-9-1.
const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// A plain TCP stream on which we sent [`PROTOCOL_HEADER`] ourselves, right after connecting.
///
/// amiquip writes the header as the first thing its I/O thread does, after it has set up its
/// timer and I/O threads. The broker then takes about a millisecond to answer it (it sets the
/// connection up on reading it), which is most of a short-lived client's wait. Sent at once,
/// that millisecond overlaps amiquip's start-up. amiquip's own copy, the first 8 bytes it
/// writes, is checked and swallowed here; the rest passes through untouched.
struct HeaderSent {
    stream: mio::net::TcpStream,
    /// How many bytes of amiquip's copy of the header are still to come.
    echo_left: usize,
}

impl HeaderSent {
    fn new(stream: mio::net::TcpStream) -> HeaderSent {
        HeaderSent {
            stream,
            echo_left: PROTOCOL_HEADER.len(),
        }
    }
}

impl Read for HeaderSent {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stream.read(buf)
    }
}

impl Write for HeaderSent {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.echo_left == 0 {
            return self.stream.write(buf);
        }
        let done = PROTOCOL_HEADER.len() - self.echo_left;
        let echo = self.echo_left.min(buf.len());
        if buf[..echo] != PROTOCOL_HEADER[done..done + echo] {
            // Not the header we sent: passing it on would garble the stream.
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the AMQP client did not begin with the AMQP 0-9-1 protocol header",
            ));
        }
        self.echo_left -= echo;
        Ok(echo)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

impl mio::Evented for HeaderSent {
    fn register(
        &self,
        poll: &mio::Poll,
        token: mio::Token,
        interest: mio::Ready,
        opts: mio::PollOpt,
    ) -> std::io::Result<()> {
        self.stream.register(poll, token, interest, opts)
    }

    fn reregister(
        &self,
        poll: &mio::Poll,
        token: mio::Token,
        interest: mio::Ready,
        opts: mio::PollOpt,
    ) -> std::io::Result<()> {
        self.stream.reregister(poll, token, interest, opts)
    }

    fn deregister(&self, poll: &mio::Poll) -> std::io::Result<()> {
        self.stream.deregister(poll)
    }
}

impl amiquip::IoStream for HeaderSent {}

/// amiquip's own handshake timeout (no event from the peer within `connection_timeout`).
fn is_amqp_timeout(err: &BrokerError) -> bool {
    matches!(err.amqp_error(), Some(amiquip::Error::ConnectionTimeout))
}

/// Shuts a socket down when a deadline passes unless disarmed first, which fails whatever
/// handshake is running on it: a hard bound however the peer behaves.
struct Watchdog {
    /// Set by whichever comes first: the watchdog firing or the caller disarming.
    settled: Arc<AtomicBool>,
    /// Dropping it wakes the watchdog thread, which then exits.
    wake: crossbeam_channel::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Watchdog {
    fn arm(socket: &TcpStream, after: Duration) -> std::io::Result<Watchdog> {
        let socket = socket.try_clone()?;
        let settled = Arc::new(AtomicBool::new(false));
        let (wake, woken) = crossbeam_channel::bounded::<()>(0);
        let fire = Arc::clone(&settled);
        let thread = std::thread::Builder::new()
            .name("fib-rpc-connect-watchdog".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let expired = matches!(
                    woken.recv_timeout(after),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout)
                );
                if expired && !fire.swap(true, Ordering::SeqCst) {
                    let _ = socket.shutdown(Shutdown::Both);
                }
            })?;
        Ok(Watchdog {
            settled,
            wake,
            thread,
        })
    }

    /// Stops the watchdog; returns whether it had already fired (the socket is shut), and its
    /// thread, woken and ending.
    fn disarm(self) -> (bool, StoodDown) {
        let fired = self.settled.swap(true, Ordering::SeqCst);
        drop(self.wake);
        (fired, StoodDown(Some(self.thread)))
    }
}

/// A connect watchdog's thread, told to stand down: it exits as soon as it runs. Dropping this
/// joins it. Whoever opened the connection keeps it a while ([`Brokers`] until the next
/// connection, or its own end), so that the join finds the thread gone instead of making the
/// connecting thread wait, right after the handshake, for the watchdog's thread to be
/// scheduled (0.1 ms when a core is free, a millisecond or more when the cores are busy).
///
/// [`Brokers`]: crate::reconnect::Brokers
#[derive(Debug)]
pub(crate) struct StoodDown(Option<std::thread::JoinHandle<()>>);

impl Drop for StoodDown {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            // Woken already; it ends without waiting for anything.
            let _ = thread.join();
        }
    }
}

/// How to open a connection; part of both the client's and the server's options.
#[derive(Debug, Clone)]
pub(crate) struct ConnectSettings {
    /// Bound on TCP connect plus AMQP handshake.
    pub timeout: Duration,
    /// AMQP heartbeat interval in seconds (0 would turn heartbeats off; refused).
    pub heartbeat_secs: u16,
    /// Shown as the connection's "information" client property in RabbitMQ's tools.
    pub name: String,
}

impl ConnectSettings {
    /// The defaults: [`DEFAULT_CONNECT_TIMEOUT`], [`DEFAULT_HEARTBEAT_SECS`].
    pub(crate) fn named(name: &str) -> Self {
        ConnectSettings {
            timeout: DEFAULT_CONNECT_TIMEOUT,
            heartbeat_secs: DEFAULT_HEARTBEAT_SECS,
            name: name.to_owned(),
        }
    }
}

/// Of the error a thread saw and the one `Connection::close` returned, the one that says more.
///
/// When the socket dies, amiquip's channels only report that the I/O loop went away; the real
/// cause (reset, missed heartbeats, the broker's close reason) is what closing returns.
pub(crate) fn more_specific(
    seen: Option<amiquip::Error>,
    from_close: Option<amiquip::Error>,
) -> Option<amiquip::Error> {
    match seen {
        Some(err) if !is_generic(&err) => Some(err),
        seen => from_close.or(seen),
    }
}

/// Errors that only say "the connection's I/O thread is gone", not why.
pub(crate) fn is_generic(err: &amiquip::Error) -> bool {
    matches!(
        err,
        amiquip::Error::EventLoopDropped
            | amiquip::Error::EventLoopClientDropped
            | amiquip::Error::ClientClosedChannel
            | amiquip::Error::ClientClosedConnection
    )
}

/// `now + timeout`, saturating instead of panicking for huge timeouts (`Duration::MAX` means
/// "as long as possible", which is a few centuries here).
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let now = Instant::now();
    now.checked_add(timeout.min(FAR)).unwrap_or(now)
}

/// Checks the options every connection needs: heartbeats must be on, because they are what
/// bounds amiquip's blocking operations (declare, cancel, close) when the broker stalls.
pub(crate) fn check_settings(settings: &ConnectSettings) -> Result<()> {
    if settings.heartbeat_secs == 0 {
        return Err(Error::InvalidArgument(
            "heartbeat must be at least 1 second: without heartbeats a stalled broker \
             could block closing forever"
                .into(),
        ));
    }
    if settings.timeout.is_zero() {
        return Err(Error::InvalidArgument(
            "connect timeout must be above zero".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_that_trickles_bytes_is_cut_off_at_the_connect_timeout() {
        // A peer that accepts and then sends an AMQP frame header a byte at a time, each byte
        // well within amiquip's own idle timeout: only the watchdog bounds this.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let peer = std::thread::spawn(move || {
            use std::io::Write;
            let (mut socket, _) = listener.accept().unwrap();
            for byte in [1u8, 0, 0, 0, 0, 0xff, 0xff].iter().cycle().take(40) {
                std::thread::sleep(Duration::from_millis(150));
                if socket.write_all(&[*byte]).is_err() {
                    break;
                }
            }
        });
        let url = BrokerUrl::parse(&format!("amqp://u:topsecret@127.0.0.1:{port}/%2f")).unwrap();
        let settings = ConnectSettings {
            timeout: Duration::from_secs(1),
            heartbeat_secs: 10,
            name: "test".into(),
        };
        let started = Instant::now();
        let err = url.connect(&settings).map(|_| ()).unwrap_err();
        let waited = started.elapsed();
        assert!(waited < Duration::from_millis(1900), "{waited:?}");
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
        assert!(
            err.full_message()
                .contains("AMQP handshake did not finish within"),
            "{err}"
        );
        assert!(!err.full_message().contains("topsecret"), "{err}");
        peer.join().unwrap();
    }

    #[test]
    fn localhost_is_the_loopback_addresses_without_a_lookup() {
        let addresses = |url: &str| BrokerUrl::parse(url).unwrap().addresses().unwrap();
        let v4: SocketAddr = "127.0.0.1:5999".parse().unwrap();
        let v6: SocketAddr = "[::1]:5999".parse().unwrap();
        assert_eq!(addresses("amqp://u:p@localhost:5999/%2f"), [v4, v6]);
        assert_eq!(addresses("amqp://u:p@LocalHost:5999/%2f"), [v4, v6]);
        assert_eq!(addresses("amqp://u:p@[::1]:5999/%2f"), [v6]);
        assert_eq!(addresses("amqp://u:p@127.0.0.1:5999/%2f"), [v4]);
    }

    #[test]
    fn the_protocol_header_goes_out_once_ahead_of_the_rest() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        ours.write_all(PROTOCOL_HEADER).unwrap();
        let mut stream = HeaderSent::new(mio::net::TcpStream::from_stream(ours).unwrap());
        // amiquip's copy, in pieces, then a frame: only the frame goes out.
        assert_eq!(stream.write(b"AMQP").unwrap(), 4);
        assert_eq!(stream.write(b"\x00\x00\x09\x01frame").unwrap(), 4);
        assert_eq!(stream.write(b"frame").unwrap(), 5);
        drop(stream);
        let mut seen = Vec::new();
        peer.read_to_end(&mut seen).unwrap();
        assert_eq!(seen, b"AMQP\x00\x00\x09\x01frame");
    }

    #[test]
    fn anything_but_the_protocol_header_first_is_refused() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut stream = HeaderSent::new(mio::net::TcpStream::from_stream(ours).unwrap());
        assert_eq!(stream.write(b"AMQP").unwrap(), 4);
        let err = stream.write(b"\x00\x00\x08\x00").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn huge_timeouts_saturate() {
        assert!(deadline_after(Duration::MAX) > Instant::now() + Duration::from_secs(3600));
        assert!(deadline_after(Duration::ZERO) <= Instant::now());
    }

    #[test]
    fn unreachable_broker_is_a_connect_error_within_the_bound() {
        // Port 1 on loopback: nothing listens, the kernel refuses at once.
        let url = BrokerUrl::parse("amqp://u:topsecret@127.0.0.1:1/%2f").unwrap();
        let settings = ConnectSettings {
            timeout: Duration::from_secs(2),
            heartbeat_secs: 10,
            name: "test".into(),
        };
        let started = Instant::now();
        let err = url.connect(&settings).map(|_| ()).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
        assert!(!err.full_message().contains("topsecret"), "{err}");
    }
}
