//! `amqps://`: the TLS settings a URL asks for, and the TLS half of connecting.

use std::fmt;

use amiquip::{Auth, Connection, ConnectionOptions, ConnectionTuning};

use super::url::TLS_PARAMETERS;
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
        let invalid = |why: String| Error::InvalidArgument(format!("broker URL {broker}: {why}"));
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
