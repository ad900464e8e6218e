//! `amqps://` against the real broker. The broker has no TLS listener (and the tests must not
//! reconfigure it), so each test runs its own TLS-terminating proxy in front of the broker's
//! plain AMQP port, with a throwaway CA and server certificates made by the `openssl` command
//! in a temporary directory. Needs `--features tls`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{amqp_url, fib_server, TestQueue};
use fib_rpc::{
    ClientOptions, Error, FibonacciHandler, FibonacciRpcClient, RpcServer, ServerOptions,
};

/// The name the second server certificate is for (not `localhost`, not 127.0.0.1).
const OTHER_NAME: &str = "not-localhost.example";

/// A throwaway CA with two server certificates it signed, in a temporary directory that is
/// removed on drop.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// A CA, a certificate for `localhost` and 127.0.0.1 (`localhost.p12`) and one for
    /// [`OTHER_NAME`] (`other.p12`).
    fn new() -> Pki {
        let pki = Pki::ca_only();
        pki.server("localhost", "DNS:localhost, IP:127.0.0.1", 2);
        pki.server("other", &format!("DNS:{OTHER_NAME}"), 3);
        pki
    }

    /// Just a CA (to trust the wrong one).
    fn ca_only() -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "fib-rpc-tls-test-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&dir).unwrap();
        let pki = Pki { dir };
        std::fs::write(
            pki.path("ca.cnf"),
            "[req]\ndistinguished_name = dn\n[dn]\n\
             [ca_ext]\nbasicConstraints = critical, CA:TRUE\n\
             keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n",
        )
        .unwrap();
        pki.openssl(
            "req -x509 -new -config ca.cnf -extensions ca_ext -newkey ec \
             -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 \
             -subj /CN=fib-rpc-throwaway-test-CA",
        );
        pki
    }

    /// `NAME.p12`: a server key and certificate for `san`, signed by the CA, with the CA in
    /// the chain.
    fn server(&self, name: &str, san: &str, serial: u32) {
        std::fs::write(
            self.path(&format!("{name}.ext")),
            format!(
                "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\n\
                 extendedKeyUsage = serverAuth\nsubjectAltName = {san}\n"
            ),
        )
        .unwrap();
        self.openssl(&format!(
            "req -new -config ca.cnf -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -keyout {name}.key -out {name}.csr -subj /CN={name}"
        ));
        self.openssl(&format!(
            "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -set_serial {serial} -days 2 \
             -extfile {name}.ext -out {name}.pem"
        ));
        self.openssl(&format!(
            "pkcs12 -export -inkey {name}.key -in {name}.pem -certfile ca.pem \
             -passout pass:fib-rpc-test -out {name}.p12"
        ));
    }

    /// Runs `openssl` in the directory with `command_line` split at spaces.
    fn openssl(&self, command_line: &str) {
        let args: Vec<&str> = command_line.split_whitespace().collect();
        let output = Command::new("openssl")
            .args(&args)
            .current_dir(&self.dir)
            .output()
            .expect("the openssl command runs (apt-get install openssl)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The CA bundle, as a `cacertfile=` query parameter (percent-encoded).
    fn cacertfile(&self) -> String {
        format!("cacertfile={}", encode(&self.path("ca.pem")))
    }

    fn identity(&self, name: &str) -> native_tls::Identity {
        let der = std::fs::read(self.path(&format!("{name}.p12"))).unwrap();
        native_tls::Identity::from_pkcs12(&der, "fib-rpc-test").unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes what a query value cannot hold as is.
fn encode(path: &Path) -> String {
    let mut out = String::new();
    for byte in path.to_str().unwrap().bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The broker's plain AMQP address, from `AMQP_URL`.
fn broker_addr() -> SocketAddr {
    let url = url::Url::parse(&amqp_url()).unwrap();
    let host = match url.host_str().unwrap_or("localhost") {
        "localhost" => "127.0.0.1",
        host => host,
    };
    format!("{host}:{}", url.port().unwrap_or(5672))
        .parse()
        .unwrap()
}

/// `AMQP_URL`'s credentials and vhost as `amqps://` to `host:port`, with `query`.
fn tls_url(host: &str, port: u16, query: &str) -> String {
    let mut url = url::Url::parse(&amqp_url()).unwrap();
    url.set_scheme("amqps").unwrap();
    url.set_host(Some(host)).unwrap();
    url.set_port(Some(port)).unwrap();
    url.set_query(Some(query).filter(|q| !q.is_empty()));
    url.to_string()
}

/// The same with another password, which must never be shown.
fn with_password(url: &str, password: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_password(Some(password)).unwrap();
    url.to_string()
}

/// Terminates TLS on 127.0.0.1:<random port> with a given identity and forwards plaintext
/// to the broker. Opens the broker connection only once a client's TLS handshake succeeded.
struct TlsProxy {
    port: u16,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl TlsProxy {
    fn start(identity: native_tls::Identity) -> TlsProxy {
        let tls = native_tls::TlsAcceptor::new(identity).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let acceptor = std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (tls, stop) = (tls.clone(), Arc::clone(&stop));
                        std::thread::spawn(move || serve_one(&tls, client, &stop));
                    }
                    Err(err) if err.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(err) => panic!("accept: {err}"),
                }
            }
        });
        TlsProxy {
            port,
            stopping,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// One proxied connection: TLS handshake, then bytes both ways until either side closes.
fn serve_one(tls: &native_tls::TlsAcceptor, client: TcpStream, stopping: &AtomicBool) {
    client.set_nonblocking(false).unwrap();
    client.set_nodelay(true).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // A client that refuses our certificate ends here, before the broker sees anything.
    let Ok(mut client) = tls.accept(client) else {
        return;
    };
    let Ok(mut broker) = TcpStream::connect(broker_addr()) else {
        return;
    };
    broker.set_nodelay(true).unwrap();
    // One thread both ways (a TLS stream cannot be split): short read timeouts alternate.
    let poll = Some(Duration::from_millis(2));
    client.get_ref().set_read_timeout(poll).unwrap();
    broker.set_read_timeout(poll).unwrap();
    let mut buffer = [0u8; 16 * 1024];
    let idle =
        |err: &std::io::Error| matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
    while !stopping.load(Ordering::SeqCst) {
        match client.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) if broker.write_all(&buffer[..n]).is_ok() => {}
            Ok(_) => break,
            Err(err) if idle(&err) => {}
            Err(_) => break,
        }
        match broker.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) if client.write_all(&buffer[..n]).is_ok() => {}
            Ok(_) => break,
            Err(err) if idle(&err) => {}
            Err(_) => break,
        }
    }
    let _ = broker.shutdown(Shutdown::Both);
    let _ = client.shutdown();
}

/// A TCP listener on 127.0.0.1 that accepts, hands each connection to `peer`, and holds it
/// open until dropped.
struct FakeBroker {
    port: u16,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeBroker {
    fn start(peer: fn(&TcpStream)) -> FakeBroker {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let acceptor = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((socket, _)) => {
                        socket.set_nonblocking(false).unwrap();
                        peer(&socket);
                        held.push(socket);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeBroker {
            port,
            stopping,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn client(url: &str, queue: &str) -> Result<FibonacciRpcClient, Error> {
    FibonacciRpcClient::connect_with(url, ClientOptions::default().queue(queue))
}

/// The `Error::Connect` that connecting to `url` gives, as text, checked free of `secret`.
fn connect_error(url: &str, secret: &str) -> String {
    let err = client(url, "fib-rpc-test-never-used").expect_err("connect fails");
    let text = err.full_message();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(!text.contains(secret), "password shown: {text}");
    text
}

#[test]
fn a_client_over_tls_calls_a_plain_server() {
    let pki = Pki::new();
    let proxy = TlsProxy::start(pki.identity("localhost"));
    let queue = TestQueue::new("tls-client");
    let server = fib_server(&queue.name);
    // By name (DNS SAN) and by address (IP SAN).
    for host in ["localhost", "127.0.0.1"] {
        let url = tls_url(host, proxy.port, &pki.cacertfile());
        let client = client(&url, &queue.name).expect("TLS client connects");
        assert_eq!(client.call(30).unwrap(), 832040u32.into(), "{host}");
        client.close();
    }
    server.stop().unwrap();
}

#[test]
fn a_server_over_tls_serves_a_plain_client() {
    let pki = Pki::new();
    let proxy = TlsProxy::start(pki.identity("localhost"));
    let queue = TestQueue::new("tls-server");
    let server = RpcServer::start(
        &tls_url("localhost", proxy.port, &pki.cacertfile()),
        ServerOptions::default()
            .queue(queue.name.as_str())
            .workers(2),
        FibonacciHandler::default(),
    )
    .expect("TLS server starts");
    let client = client(&amqp_url(), &queue.name).unwrap();
    assert_eq!(client.call(30).unwrap(), 832040u32.into());
    client.close();
    server.stop().unwrap();
}

#[test]
fn a_private_ca_is_not_trusted_unless_named() {
    let pki = Pki::new();
    let proxy = TlsProxy::start(pki.identity("localhost"));
    // No cacertfile: the system's trust store does not know our CA.
    let url = with_password(&tls_url("localhost", proxy.port, ""), "s3cret-tls");
    let text = connect_error(&url, "s3cret-tls");
    assert!(text.contains("certificate was not trusted"), "{text}");
    assert!(text.contains("system's CAs"), "{text}");
    // A cacertfile naming another CA: trusted instead of the system's, so still refused.
    let stranger = Pki::ca_only();
    let url = with_password(
        &tls_url("localhost", proxy.port, &stranger.cacertfile()),
        "s3cret-tls",
    );
    let text = connect_error(&url, "s3cret-tls");
    assert!(text.contains("certificate was not trusted"), "{text}");
    assert!(text.contains("cacertfile"), "{text}");
}

#[test]
fn a_certificate_for_another_name_is_refused_unless_that_name_is_asked_for() {
    let pki = Pki::new();
    let proxy = TlsProxy::start(pki.identity("other"));
    let url = with_password(
        &tls_url("localhost", proxy.port, &pki.cacertfile()),
        "s3cret-tls",
    );
    let text = connect_error(&url, "s3cret-tls");
    assert!(text.contains("certificate was not trusted"), "{text}");
    assert!(
        text.contains("not valid for the name \"localhost\""),
        "{text}"
    );
    // The same certificate is fine when its name is the one checked.
    let queue = TestQueue::new("tls-sni");
    let server = fib_server(&queue.name);
    let query = format!("{}&server_name_indication={OTHER_NAME}", pki.cacertfile());
    let client = client(&tls_url("localhost", proxy.port, &query), &queue.name)
        .expect("connects when the certificate's name is asked for");
    assert_eq!(client.call(30).unwrap(), 832040u32.into());
    client.close();
    server.stop().unwrap();
}

#[test]
fn verify_none_connects_without_trusting_the_certificate() {
    let pki = Pki::new();
    let proxy = TlsProxy::start(pki.identity("other"));
    let queue = TestQueue::new("tls-verify-none");
    let server = fib_server(&queue.name);
    let url = tls_url("localhost", proxy.port, "verify=verify_none");
    let client = client(&url, &queue.name).expect("connects without verification");
    assert_eq!(client.call(30).unwrap(), 832040u32.into());
    client.close();
    server.stop().unwrap();
}

#[test]
fn a_peer_that_never_completes_tls_fails_within_the_connect_timeout() {
    // Accepts TCP and says nothing.
    let silent = FakeBroker::start(|_| {});
    // Sends the start of a TLS record claiming 16 KiB, then one byte every 200 ms: each byte
    // is progress to the TLS library, so only the connect deadline can end it.
    let trickling = FakeBroker::start(|socket| {
        let mut socket = socket.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = socket.write_all(&[0x16, 0x03, 0x03, 0x40, 0x00]);
            for _ in 0..50 {
                std::thread::sleep(Duration::from_millis(200));
                if socket.write_all(&[0]).is_err() {
                    break;
                }
            }
        });
    });
    for (what, port) in [("silent", silent.port), ("trickling", trickling.port)] {
        let url = with_password(
            &tls_url("localhost", port, "verify=verify_none"),
            "s3cret-tls",
        );
        let started = Instant::now();
        let err = FibonacciRpcClient::connect_with(
            &url,
            ClientOptions::default().connect_timeout(Duration::from_secs(2)),
        )
        .expect_err("connect fails");
        let waited = started.elapsed();
        let text = err.full_message();
        assert!(matches!(err, Error::Connect { .. }), "{what}: {err:?}");
        assert!(waited < Duration::from_secs(4), "{what}: took {waited:?}");
        assert!(
            text.contains("TLS and AMQP handshakes did not finish within"),
            "{what}: {text}"
        );
        assert!(!text.contains("s3cret-tls"), "{what}: {text}");
    }
}

fn fib_rpc(url: &str, args: &[&str]) -> Output {
    common::serve::fib_rpc()
        .args(["--url", url])
        .args(args)
        .output()
        .expect("fib-rpc runs")
}

#[test]
fn the_command_calls_over_tls_and_never_shows_the_password() {
    let pki = Pki::new();
    let proxy = TlsProxy::start(pki.identity("localhost"));
    let queue = TestQueue::new("tls-cli");
    let server = fib_server(&queue.name);

    let url = tls_url("localhost", proxy.port, &pki.cacertfile());
    let output = fib_rpc(&url, &["--queue", &queue.name, "call", "10"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "55\n");

    let wrong = with_password(&url, "wr0ng-tls-secret");
    let output = fib_rpc(&wrong, &["--queue", &queue.name, "call", "10"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(7), "stderr: {stderr}");
    assert!(stderr.starts_with("fib-rpc: "), "{stderr}");
    assert!(!stderr.contains("wr0ng-tls-secret"), "{stderr}");

    // verify_none works, and says on every connect that nothing was verified.
    let insecure = tls_url("localhost", proxy.port, "verify=verify_none");
    let output = fib_rpc(&insecure, &["-v", "--queue", &queue.name, "call", "10"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "55\n");
    assert!(stderr.contains("verification is off"), "{stderr}");

    server.stop().unwrap();
}
