//! Opening AMQP connections the way a latency-sensitive RPC needs them.
//!
//! amiquip's `Connection::insecure_open(url)` connects without a timeout and without
//! `TCP_NODELAY`; with Nagle's algorithm against delayed ACKs every sequential call then costs
//! ~44 ms. So we parse the URL ourselves, open the socket with a bounded connect and
//! `TCP_NODELAY`, and hand it to amiquip.

use std::fmt;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use amiquip::{Auth, Connection, ConnectionOptions, ConnectionTuning};

use crate::error::{Error, Result};

/// The broker URL used when none is given: the local RabbitMQ with its default account.
pub const DEFAULT_URL: &str = "amqp://guest:guest@localhost:5672/%2f";

/// A parsed `amqp://` URL. Its `Display` masks the password, so it is safe to log.
#[derive(Clone)]
pub(crate) struct BrokerUrl {
    host: String,
    port: u16,
    virtual_host: String,
    auth: Auth,
    /// The URL as given, password replaced by `***`.
    redacted: String,
}

impl BrokerUrl {
    /// Parses `amqp://[user[:password]@]host[:port][/vhost]`. Percent-escapes are decoded
    /// (`%2f` is the vhost `/`). `amqps://` is refused with a clear error: this build has no TLS.
    pub(crate) fn parse(text: &str) -> Result<BrokerUrl> {
        // Never echo a URL we could not parse: we cannot tell where its password is.
        let url = url::Url::parse(text).map_err(|err| {
            Error::InvalidArgument(format!(
                "broker URL is not valid ({err}); expected amqp://user:password@host:port/vhost, \
                 with '/', '?', '#' and '@' in the password written as %2F, %3F, %23, %40"
            ))
        })?;
        if !url.has_authority() {
            return Err(Error::InvalidArgument(
                "broker URL must start amqp:// (expected amqp://user:password@host:port/vhost)"
                    .into(),
            ));
        }
        let redacted = redact_parsed(url.clone());
        match url.scheme() {
            "amqp" => {}
            "amqps" => {
                return Err(Error::InvalidArgument(format!(
                    "broker URL {redacted}: amqps (TLS) is not supported by this build"
                )))
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "broker URL {redacted}: scheme {other:?} is not amqp"
                )))
            }
        }
        if let Some((key, _)) = url.query_pairs().next() {
            return Err(Error::InvalidArgument(format!(
                "broker URL {redacted}: query parameter {key:?} is not supported; \
                 use the client or server options instead"
            )));
        }
        let host = match url.host_str() {
            None | Some("") => "localhost".to_owned(),
            // IPv6 literals come bracketed; `ToSocketAddrs` wants them bare.
            Some(host) => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        };
        let mut segments = url.path_segments().into_iter().flatten();
        let virtual_host = match segments.next() {
            None | Some("") => "/".to_owned(),
            Some(vhost) => decode(vhost),
        };
        if segments.next().is_some() {
            return Err(Error::InvalidArgument(format!(
                "broker URL {redacted}: a vhost with '/' in it must be written %2f"
            )));
        }
        let username = match url.username() {
            "" => "guest".to_owned(),
            name => decode(name),
        };
        let password = decode(url.password().unwrap_or("guest"));
        Ok(BrokerUrl {
            host,
            port: url.port().unwrap_or(5672),
            virtual_host,
            auth: Auth::Plain { username, password },
            redacted,
        })
    }

    /// Opens an AMQP connection: resolve, connect each address within what is left of
    /// `timeout`, set `TCP_NODELAY`, then do the AMQP handshake within the same bound.
    pub(crate) fn connect(&self, settings: &ConnectSettings) -> Result<Connection> {
        let deadline = deadline_after(settings.timeout);
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|err| self.connect_error(err))?
            .collect();
        let mut last_error: Option<Error> = None;
        for addr in addrs {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            match self.connect_one(addr, remaining, settings) {
                Ok(connection) => return Ok(connection),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            self.connect_error(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no address answered within {:?}", settings.timeout),
            ))
        }))
    }

    fn connect_one(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        settings: &ConnectSettings,
    ) -> Result<Connection> {
        let started = Instant::now();
        let stream =
            TcpStream::connect_timeout(&addr, timeout).map_err(|e| self.connect_error(e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| self.connect_error(e))?;
        let stream = mio::net::TcpStream::from_stream(stream).map_err(|e| self.connect_error(e))?;
        // amiquip applies this bound to the handshake (its poll timeout until connection.open-ok).
        let handshake_timeout = timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1));
        let options = ConnectionOptions::<Auth>::default()
            .auth(self.auth.clone())
            .virtual_host(self.virtual_host.clone())
            .heartbeat(settings.heartbeat_secs)
            .connection_timeout(Some(handshake_timeout))
            .information(Some(settings.name.clone()));
        Connection::insecure_open_stream(stream, options, ConnectionTuning::default())
            .map_err(|e| self.connect_error(e))
    }

    fn connect_error(&self, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error::Connect {
            broker: self.redacted.clone(),
            source: source.into(),
        }
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUrl({})", self.redacted)
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
    /// The defaults: 10 s to connect, 15 s heartbeats.
    pub(crate) fn named(name: &str) -> Self {
        ConnectSettings {
            timeout: Duration::from_secs(10),
            heartbeat_secs: 15,
            name: name.to_owned(),
        }
    }
}

/// Decodes `%XX` escapes in a URL part (userinfo and vhost may contain escaped `@`, `:`, `/`).
/// Malformed escapes are kept as written, like RabbitMQ's own URI parser.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Returns `url` with its password, if any, replaced by `***`, for logs and error messages.
///
/// ```
/// assert_eq!(
///     fib_rpc::redact_url("amqp://app:s3cret@broker:5672/%2f"),
///     "amqp://app:***@broker:5672/%2f"
/// );
/// ```
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) if parsed.has_authority() => redact_parsed(parsed),
        // Unparseable or without `//`: we cannot tell where a password would end, so hide
        // everything up to the last '@' (a password may itself hold '/', '?', '#' or '@').
        _ => match (url.find(':'), url.rfind('@')) {
            (Some(colon), Some(at)) if colon < at => format!("{}:***{}", &url[..colon], &url[at..]),
            _ => url.to_owned(),
        },
    }
}

/// The URL as the parser understood it (which is what would be used to connect), with the
/// password replaced.
fn redact_parsed(mut url: url::Url) -> String {
    if url.password().is_some() {
        // Cannot fail: the URL has an authority.
        let _ = url.set_password(Some("***"));
    }
    url.into()
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
    fn parses_the_default_url() {
        let url = BrokerUrl::parse(DEFAULT_URL).unwrap();
        assert_eq!((url.host.as_str(), url.port), ("localhost", 5672));
        assert_eq!(url.virtual_host, "/");
        assert_eq!(
            url.auth,
            Auth::Plain {
                username: "guest".into(),
                password: "guest".into()
            }
        );
    }

    #[test]
    fn decodes_escapes_and_defaults() {
        let url = BrokerUrl::parse("amqp://us%40er:p%3Ass+w@10.0.0.1:5673/my%2fvhost").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("10.0.0.1", 5673));
        assert_eq!(url.virtual_host, "my/vhost");
        assert_eq!(
            url.auth,
            Auth::Plain {
                username: "us@er".into(),
                password: "p:ss+w".into()
            }
        );
        let bare = BrokerUrl::parse("amqp://").unwrap();
        assert_eq!((bare.host.as_str(), bare.port), ("localhost", 5672));
        assert_eq!(bare.virtual_host, "/");
        let v6 = BrokerUrl::parse("amqp://[::1]:5672/x").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.virtual_host, "x");
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        for bad in [
            "http://localhost",
            "amqps://localhost",
            "amqp://localhost/a/b",
            "amqp://localhost/?heartbeat=5",
            "not a url",
        ] {
            assert!(
                matches!(BrokerUrl::parse(bad), Err(Error::InvalidArgument(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn never_shows_the_password() {
        assert_eq!(redact("amqp://u:pw@h/%2f"), "amqp://u:***@h/%2f");
        assert_eq!(redact("amqp://u@h"), "amqp://u@h");
        assert_eq!(redact("amqp://h:5672"), "amqp://h:5672");
        // Passwords with unescaped delimiters, and shapes the URL parser accepts loosely
        // (it drops tabs and newlines; `amqp:` without `//` has no authority).
        for leaky in [
            "amqp://u:p@w@h",
            "amqp://app:s3cr/et@h:5672/%2f",
            "amqp://a:p?w#x@h/v",
            "amqp://a:b@c/d@e",
            "amqp:/\t/user:s3cr@127.0.0.1:1/%2f",
            "amqp:\n//user:s3cr@127.0.0.1:1/%2f",
            "amqp:/user:s3cr@127.0.0.1:1",
            "amqp:user:s3cr@127.0.0.1:1",
        ] {
            let shown = redact(leaky);
            assert!(shown.contains("***"), "{leaky:?} -> {shown}");
            for secret in ["s3cr", "p?w", "p@w"] {
                assert!(!shown.contains(secret), "{leaky:?} -> {shown}");
            }
            match BrokerUrl::parse(leaky) {
                Err(err) => assert!(!err.to_string().contains("s3cr"), "{leaky:?}: {err}"),
                Ok(url) => assert!(!url.to_string().contains("s3cr"), "{leaky:?}: {url}"),
            }
        }
        // Without `//` there is no host: refused rather than read as localhost.
        for opaque in ["amqp:/user:s3cr@127.0.0.1:1", "amqp:user:s3cr@127.0.0.1:1"] {
            assert!(matches!(
                BrokerUrl::parse(opaque),
                Err(Error::InvalidArgument(_))
            ));
        }
        let err = BrokerUrl::parse("amqp://u:topsecret@h/a/b").unwrap_err();
        assert!(!err.to_string().contains("topsecret"), "{err}");
        let url = BrokerUrl::parse("amqp://u:topsecret@h").unwrap();
        assert!(!format!("{url} {url:?}").contains("topsecret"));
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
        let err = url.connect(&settings).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
        assert!(!err.to_string().contains("topsecret"), "{err}");
    }
}
