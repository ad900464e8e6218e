//! Opening AMQP connections the way a latency-sensitive RPC needs them.
//!
//! amiquip's `Connection::insecure_open(url)` connects without a timeout and without
//! `TCP_NODELAY`; with Nagle's algorithm against delayed ACKs every sequential call then costs
//! ~44 ms. So we parse the URL ourselves, open the socket with a bounded connect and
//! `TCP_NODELAY`, and hand it to amiquip.
//!
//! With the `tls` feature, `amqps://` URLs go through the same socket, then a TLS handshake
//! (native-tls, certificate verification on unless the URL says `verify=verify_none`), then
//! the AMQP handshake. A watchdog shuts the socket if the handshakes are not done by the
//! connect timeout, so a peer that accepts TCP but stalls or trickles bytes cannot hold
//! `connect` past its bound.

use std::fmt;
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use amiquip::{Auth, Connection, ConnectionOptions, ConnectionTuning};

use crate::error::{BrokerError, Error, Result};

/// The broker URL used when none is given: the local RabbitMQ with its default account.
pub const DEFAULT_URL: &str = "amqp://guest:guest@localhost:5672/%2f";

/// Bound on connecting (TCP, TLS and AMQP handshakes) and on closing, unless told otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// AMQP heartbeat interval in seconds unless told otherwise. A silently dead TCP path is
/// noticed after about two intervals.
pub const DEFAULT_HEARTBEAT_SECS: u16 = 15;

/// The query parameters `amqps://` URLs take (RabbitMQ's URI query parameter names).
const TLS_PARAMETERS: [&str; 3] = ["cacertfile", "server_name_indication", "verify"];

/// A parsed `amqp://` or `amqps://` URL. Its `Display` masks the password, so it is safe to
/// log.
#[derive(Clone)]
pub(crate) struct BrokerUrl {
    host: String,
    port: u16,
    virtual_host: String,
    auth: Auth,
    /// TLS settings: `Some` exactly for `amqps://` URLs.
    #[cfg(feature = "tls")]
    tls: Option<tls::TlsSettings>,
    /// The URL as given, password replaced by `***`.
    redacted: String,
}

impl BrokerUrl {
    /// Parses `amqp://[user[:password]@]host[:port][/vhost]`. Percent-escapes are decoded
    /// (`%2f` is the vhost `/`). With the `tls` feature, also
    /// `amqps://...[?cacertfile=PATH&server_name_indication=HOST&verify=verify_peer|verify_none]`
    /// (default port 5671); the CA file is read here, so a missing or malformed one is an
    /// [`Error::InvalidArgument`] before anything touches the network. Without the feature
    /// `amqps://` is refused, saying how to get it. Any other query parameter is refused.
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
        if has_misplaced_at(&url) {
            // `amqp://user:12/secret@host` parses as host `user`, port 12, path `/secret@host`:
            // the password may be after the authority, so mask as for an unparseable URL.
            return Err(Error::InvalidArgument(format!(
                "broker URL {}: '@' after the host; write '/', '?', '#' and '@' in the \
                 password (and '@' in the vhost or query values) as %2F, %3F, %23, %40",
                redact(text)
            )));
        }
        let redacted = redact_parsed(url.clone());
        let secure = match url.scheme() {
            "amqp" => false,
            "amqps" if cfg!(feature = "tls") => true,
            "amqps" => {
                return Err(Error::InvalidArgument(format!(
                    "broker URL {redacted}: amqps (TLS) is not supported by this build; \
                     rebuild fib-rpc with `--features tls`"
                )))
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "broker URL {redacted}: scheme {other:?} is not amqp or amqps"
                )))
            }
        };
        let params = query_parameters(&url, &redacted)?;
        if !secure {
            if let Some((key, _)) = params.first() {
                let why = if TLS_PARAMETERS.contains(&key.as_str()) {
                    "is a TLS setting, only for amqps:// URLs"
                } else {
                    "is not supported; use the client or server options instead"
                };
                return Err(Error::InvalidArgument(format!(
                    "broker URL {redacted}: query parameter {key:?} {why}"
                )));
            }
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
        #[cfg(feature = "tls")]
        let tls = match secure {
            true => Some(tls::TlsSettings::from_query(&params, &redacted)?),
            false => None,
        };
        Ok(BrokerUrl {
            host,
            port: url.port().unwrap_or(if secure { 5671 } else { 5672 }),
            virtual_host,
            auth: Auth::Plain { username, password },
            #[cfg(feature = "tls")]
            tls,
            redacted,
        })
    }

    /// Opens an AMQP connection: resolve, connect each address within what is left of
    /// `timeout`, set `TCP_NODELAY`, then do the TLS handshake (`amqps://`) and the AMQP
    /// handshake within the same bound.
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
        let opened = self.open(stream, options);
        let too_late = watchdog.disarm();
        match opened {
            // The watchdog shut the socket just as the handshake finished: the connection is
            // dead already. Dropping it lets amiquip's I/O thread end.
            Ok(_) | Err(_) if too_late => Err(self.handshake_timeout(timeout)),
            Ok(connection) => Ok(connection),
            Err(err) if is_amqp_timeout(&err) => Err(self.handshake_timeout(timeout)),
            Err(cause) => Err(Error::Connect {
                broker: self.redacted.clone(),
                cause,
            }),
        }
    }

    /// The handshakes on a connected socket: TLS first for `amqps://`, then AMQP.
    fn open(
        &self,
        stream: mio::net::TcpStream,
        options: ConnectionOptions<Auth>,
    ) -> std::result::Result<Connection, BrokerError> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.open(&self.host, &self.redacted, stream, options);
        }
        Connection::insecure_open_stream(stream, options, ConnectionTuning::default())
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

    /// Stops the watchdog and joins its thread (woken, it exits at once); returns whether it
    /// had already fired (the socket is shut).
    fn disarm(self) -> bool {
        let fired = self.settled.swap(true, Ordering::SeqCst);
        drop(self.wake);
        let _ = self.thread.join();
        fired
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
    /// The defaults: [`DEFAULT_CONNECT_TIMEOUT`], [`DEFAULT_HEARTBEAT_SECS`].
    pub(crate) fn named(name: &str) -> Self {
        ConnectSettings {
            timeout: DEFAULT_CONNECT_TIMEOUT,
            heartbeat_secs: DEFAULT_HEARTBEAT_SECS,
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
        Ok(parsed) if parsed.has_authority() && !has_misplaced_at(&parsed) => redact_parsed(parsed),
        // Unparseable or without `//`: we cannot tell where a password would end, so hide
        // everything up to the last '@' (a password may itself hold '/', '?', '#' or '@').
        _ => match (url.find(':'), url.rfind('@')) {
            (Some(colon), Some(at)) if colon < at => format!("{}:***{}", &url[..colon], &url[at..]),
            _ => url.to_owned(),
        },
    }
}

/// Whether `url` has an '@' after its authority (path, query or fragment), which is almost
/// surely a password with an unescaped '/', '?' or '#' (so the real password may be there,
/// not in `url.password()`). Found by the fuzz test.
fn has_misplaced_at(url: &url::Url) -> bool {
    url[url::Position::BeforePath..].contains('@')
}

/// The query's `name=value` pairs, percent-decoded like the rest of the URL ('+' stays '+',
/// unlike in HTML forms, so paths keep it). Refuses a name without a value and a name given
/// twice; empty pairs (`?`, `&&`) are skipped.
fn query_parameters(url: &url::Url, redacted: &str) -> Result<Vec<(String, String)>> {
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in url.query().unwrap_or("").split('&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = (decode(key), decode(value));
        if value.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "broker URL {redacted}: query parameter {key:?} has no value (expected {key}=VALUE)"
            )));
        }
        if params.iter().any(|(seen, _)| *seen == key) {
            return Err(Error::InvalidArgument(format!(
                "broker URL {redacted}: query parameter {key:?} is given twice"
            )));
        }
        params.push((key, value));
    }
    Ok(params)
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

/// `amqps://`: the TLS settings a URL asks for, and the TLS half of connecting.
#[cfg(feature = "tls")]
mod tls {
    use std::fmt;

    use amiquip::{Auth, Connection, ConnectionOptions, ConnectionTuning};

    use super::TLS_PARAMETERS;
    use crate::error::{BrokerError, BrokerErrorKind, Error, Result};

    /// What an `amqps://` URL's query parameters asked for.
    #[derive(Clone)]
    pub(super) struct TlsSettings {
        /// `cacertfile`: its path and the CA certificates read from it, trusted *instead of*
        /// the system's trust store (a broker with a private CA should not also be
        /// impersonable by every public CA). `None`: the system's trust store.
        pub(super) ca_file: Option<(String, Vec<native_tls::Certificate>)>,
        /// `server_name_indication`: the name sent as SNI and that the broker's certificate
        /// must hold. `None`: the URL's host.
        pub(super) server_name: Option<String>,
        /// False for `server_name_indication=disable`: no SNI is sent (the URL's host is
        /// still what the certificate must hold).
        pub(super) sni: bool,
        /// `verify=verify_peer` (the default), or false for `verify=verify_none`.
        pub(super) verify: bool,
    }

    impl TlsSettings {
        /// Reads the TLS query parameters; reads and parses the `cacertfile` bundle now.
        pub(super) fn from_query(params: &[(String, String)], broker: &str) -> Result<TlsSettings> {
            let invalid =
                |why: String| Error::InvalidArgument(format!("broker URL {broker}: {why}"));
            let mut settings = TlsSettings {
                ca_file: None,
                server_name: None,
                sni: true,
                verify: true,
            };
            for (key, value) in params {
                match key.as_str() {
                    "cacertfile" => {
                        let certificates = read_ca_file(value)
                            .map_err(|why| invalid(format!("cacertfile {value:?}: {why}")))?;
                        settings.ca_file = Some((value.clone(), certificates));
                    }
                    "server_name_indication" if value == "disable" => settings.sni = false,
                    "server_name_indication" => {
                        let valid = value.parse::<std::net::IpAddr>().is_ok()
                            || url::Host::parse(value).is_ok();
                        if !valid {
                            return Err(invalid(format!(
                                "server_name_indication={value:?} is not a host name"
                            )));
                        }
                        settings.server_name = Some(value.clone());
                    }
                    "verify" => {
                        settings.verify = match value.as_str() {
                            "verify_peer" => true,
                            "verify_none" => false,
                            _ => {
                                return Err(invalid(format!(
                                    "verify={value:?}: expected verify_peer (the default) or \
                                     verify_none"
                                )))
                            }
                        }
                    }
                    "certfile" | "keyfile" => {
                        return Err(invalid(format!(
                            "query parameter {key:?}: client certificates are not supported \
                             (the broker checks the user name and password)"
                        )))
                    }
                    _ => {
                        return Err(invalid(format!(
                            "query parameter {key:?} is not supported; amqps:// URLs take {} \
                             (other settings go through the client or server options)",
                            TLS_PARAMETERS.join(", ")
                        )))
                    }
                }
            }
            Ok(settings)
        }

        /// TLS handshake, then AMQP handshake, on a connected socket.
        pub(super) fn open(
            &self,
            host: &str,
            broker: &str,
            stream: mio::net::TcpStream,
            options: ConnectionOptions<Auth>,
        ) -> std::result::Result<Connection, BrokerError> {
            if !self.verify {
                log::warn!(
                    "{broker}: TLS certificate verification is off: the broker is not \
                     authenticated, so anyone on the network path could pose as \
                     it and read the password"
                );
            }
            let connector = self.connector().map_err(|err| {
                BrokerError::other(BrokerErrorKind::Tls, format!("cannot set up TLS: {err}"))
            })?;
            let name = self.server_name.as_deref().unwrap_or(host);
            // amiquip starts the handshake here on the non-blocking socket, then drives it from
            // its I/O thread as the socket becomes ready, then does the AMQP handshake.
            Connection::open_tls_stream(
                connector,
                name,
                stream,
                options,
                ConnectionTuning::default(),
            )
            .map_err(|err| self.explain(name, err))
        }

        fn connector(&self) -> std::result::Result<native_tls::TlsConnector, native_tls::Error> {
            let mut builder = native_tls::TlsConnector::builder();
            builder.use_sni(self.sni);
            if let Some((_, certificates)) = &self.ca_file {
                builder.disable_built_in_roots(true);
                for certificate in certificates {
                    builder.add_root_certificate(certificate.clone());
                }
            }
            if !self.verify {
                builder
                    .danger_accept_invalid_certs(true)
                    .danger_accept_invalid_hostnames(true);
            }
            builder.build()
        }

        /// Says in words why a TLS handshake failed when it is the certificate. The texts
        /// matched are OpenSSL's (native-tls on Linux); elsewhere the platform's message is
        /// shown as it is.
        fn explain(&self, name: &str, err: amiquip::Error) -> BrokerError {
            let amiquip::Error::TlsHandshake { source } = &err else {
                return BrokerError::amqp(err);
            };
            let detail = source.to_string();
            let headline =
                if detail.contains("hostname mismatch") || detail.contains("IP address mismatch") {
                    format!(
                        "TLS: the broker's certificate was not trusted: it is not valid for the \
                     name {name:?} (server_name_indication=NAME sets the name to check)"
                    )
                } else if detail.contains("certificate verify failed") {
                    match &self.ca_file {
                        None => "TLS: the broker's certificate was not trusted by the system's \
                             CAs (if a private CA signed it, name that CA with \
                             cacertfile=PATH)"
                            .to_owned(),
                        Some((path, _)) => format!(
                            "TLS: the broker's certificate was not trusted (checked against the \
                         CAs in cacertfile {path:?})"
                        ),
                    }
                } else {
                    "TLS handshake failed".to_owned()
                };
            BrokerError::other(
                BrokerErrorKind::Tls,
                TlsFailure {
                    message: format!("{headline}: {detail}"),
                    source: err,
                },
            )
        }
    }

    /// The CA certificates in a PEM file (one or more `BEGIN CERTIFICATE` blocks).
    fn read_ca_file(path: &str) -> std::result::Result<Vec<native_tls::Certificate>, String> {
        let pem = std::fs::read(path).map_err(|err| format!("cannot read it ({err})"))?;
        let certificates = native_tls::Certificate::stack_from_pem(&pem)
            .map_err(|err| format!("not a PEM certificate bundle ({err})"))?;
        if certificates.is_empty() {
            return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into());
        }
        Ok(certificates)
    }

    /// A TLS handshake failure with a sentence on top of the TLS library's message.
    #[derive(Debug)]
    struct TlsFailure {
        message: String,
        source: amiquip::Error,
    }

    impl fmt::Display for TlsFailure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.message)
        }
    }

    impl std::error::Error for TlsFailure {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }
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

    #[cfg(not(feature = "tls"))]
    #[test]
    fn amqps_says_which_feature_it_needs() {
        let err = BrokerUrl::parse("amqps://u:topsecret@localhost/%2f").unwrap_err();
        let text = crate::util::chain(&err);
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        assert!(text.contains("--features tls"), "{text}");
        assert!(!text.contains("topsecret"), "{text}");
    }

    #[test]
    fn plain_urls_take_no_query_parameters() {
        for (url, says) in [
            (
                "amqp://u:topsecret@h/?cacertfile=/ca.pem",
                "only for amqps://",
            ),
            (
                "amqp://u:topsecret@h/?verify=verify_none",
                "only for amqps://",
            ),
            ("amqp://u:topsecret@h?heartbeat=5", "not supported"),
            ("amqp://u:topsecret@h/%2f?channel_max=9", "not supported"),
        ] {
            let err = BrokerUrl::parse(url).unwrap_err();
            let text = crate::util::chain(&err);
            assert!(matches!(err, Error::InvalidArgument(_)), "{url}: {err:?}");
            assert!(text.contains(says), "{url}: {text}");
            assert!(!text.contains("topsecret"), "{url}: {text}");
        }
        // An empty query is no parameter.
        assert!(BrokerUrl::parse("amqp://h/%2f?").is_ok());
    }

    #[test]
    fn a_password_spilling_into_the_query_stays_hidden() {
        // An unescaped '?' in the password: the parser sees host `user`, port 12 and a query.
        for leaky in [
            "amqp://user:12?s3cr@h/%2f",
            "amqps://user:12?s3cr@h/%2f",
            "amqps://u:p@h/%2f?verify=verify_peer#s3cr@x",
        ] {
            let shown = redact(leaky);
            assert!(!shown.contains("s3cr"), "{leaky} -> {shown}");
            let err = BrokerUrl::parse(leaky).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{leaky}: {err:?}");
            assert!(!crate::util::chain(&err).contains("s3cr"), "{leaky}: {err}");
        }
    }

    #[cfg(feature = "tls")]
    #[test]
    fn parses_amqps_and_its_tls_parameters() {
        let url = BrokerUrl::parse("amqps://u:topsecret@broker.example/%2f").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("broker.example", 5671));
        let tls = url.tls.as_ref().unwrap();
        assert!(tls.verify && tls.sni && tls.ca_file.is_none() && tls.server_name.is_none());
        assert!(!format!("{url} {url:?}").contains("topsecret"));
        assert!(BrokerUrl::parse(DEFAULT_URL).unwrap().tls.is_none());

        let url = BrokerUrl::parse(
            "amqps://10.0.0.1:5999/v?server_name_indication=broker.example&verify=verify_none&",
        )
        .unwrap();
        assert_eq!(url.port, 5999);
        let tls = url.tls.as_ref().unwrap();
        assert_eq!(tls.server_name.as_deref(), Some("broker.example"));
        assert!(!tls.verify);
        let url = BrokerUrl::parse("amqps://h?server_name_indication=disable&verify=verify_peer")
            .unwrap();
        let tls = url.tls.as_ref().unwrap();
        assert!(!tls.sni && tls.server_name.is_none() && tls.verify);
    }

    #[cfg(feature = "tls")]
    #[test]
    fn refuses_tls_parameters_it_cannot_honour() {
        let missing =
            std::env::temp_dir().join(format!("fib-rpc-none-{}.pem", uuid::Uuid::new_v4()));
        let not_pem = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        for (query, says) in [
            (
                format!("cacertfile={}", missing.display()),
                "cannot read it",
            ),
            (format!("cacertfile={not_pem}"), "no PEM certificate"),
            ("cacertfile=/a+b/c%20d.pem".into(), "\"/a+b/c d.pem\""),
            ("verify=verify_maybe".into(), "verify_peer"),
            ("verify=verify_peer&verify=verify_none".into(), "twice"),
            ("verify".into(), "has no value"),
            ("server_name_indication=a%20b".into(), "not a host name"),
            (
                "certfile=/c.pem&keyfile=/k.pem".into(),
                "client certificates",
            ),
            ("heartbeat=5".into(), "not supported"),
        ] {
            let url = format!("amqps://u:topsecret@h/%2f?{query}");
            let err = BrokerUrl::parse(&url).unwrap_err();
            let text = crate::util::chain(&err);
            assert!(matches!(err, Error::InvalidArgument(_)), "{url}: {err:?}");
            assert!(text.contains(says), "{url}: {text}");
            assert!(!text.contains("topsecret"), "{url}: {text}");
        }
    }

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
        let err = url.connect(&settings).unwrap_err();
        let waited = started.elapsed();
        assert!(waited < Duration::from_millis(1900), "{waited:?}");
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
        assert!(
            crate::util::chain(&err).contains("AMQP handshake did not finish within"),
            "{err}"
        );
        assert!(!crate::util::chain(&err).contains("topsecret"), "{err}");
        peer.join().unwrap();
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
            "amqp://app:12/s3cr@h",
            "amqp:///app:s3cr@h",
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
                Err(err) => assert!(
                    !crate::util::chain(&err).contains("s3cr"),
                    "{leaky:?}: {err}"
                ),
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
        assert!(!crate::util::chain(&err).contains("topsecret"), "{err}");
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
        assert!(!crate::util::chain(&err).contains("topsecret"), "{err}");
    }
}
