//! Broker URLs: `amqp://user:password@host:port/vhost` (and `amqps://` with the `tls`
//! feature), parsed the way RabbitMQ reads them, and shown with the password masked.

use std::fmt;

use amiquip::Auth;

#[cfg(feature = "tls")]
use super::tls;
use crate::error::{Error, Result};

/// The broker URL used when none is given: the local RabbitMQ with its default account.
pub const DEFAULT_URL: &str = "amqp://guest:guest@localhost:5672/%2f";

/// The query parameters `amqps://` URLs take (RabbitMQ's URI query parameter names).
pub(super) const TLS_PARAMETERS: [&str; 3] = ["cacertfile", "server_name_indication", "verify"];

/// A parsed `amqp://` or `amqps://` URL. Its `Display` masks the password, so it is safe to
/// log.
#[derive(Clone)]
pub(crate) struct BrokerUrl {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) virtual_host: String,
    pub(super) auth: Auth,
    /// TLS settings: `Some` exactly for `amqps://` URLs.
    #[cfg(feature = "tls")]
    pub(super) tls: Option<tls::TlsSettings>,
    /// The URL as given, password replaced by `***`.
    pub(super) redacted: String,
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
        let text = err.full_message();
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
            let text = err.full_message();
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
            assert!(!err.full_message().contains("s3cr"), "{leaky}: {err}");
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
            let text = err.full_message();
            assert!(matches!(err, Error::InvalidArgument(_)), "{url}: {err:?}");
            assert!(text.contains(says), "{url}: {text}");
            assert!(!text.contains("topsecret"), "{url}: {text}");
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
                Err(err) => assert!(!err.full_message().contains("s3cr"), "{leaky:?}: {err}"),
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
        assert!(!err.full_message().contains("topsecret"), "{err}");
        let url = BrokerUrl::parse("amqp://u:topsecret@h").unwrap();
        assert!(!format!("{url} {url:?}").contains("topsecret"));
    }
}
