//! A TCP proxy between our code and the broker that a test can cut, so connection loss is
//! tested without touching the broker or anyone else's connections.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Forwards 127.0.0.1:<random port> to the broker's AMQP port.
pub struct TcpProxy {
    local: SocketAddr,
    stopping: Arc<AtomicBool>,
    /// While set, bytes are held back in both directions: the peers see a silent network.
    stalled: Arc<AtomicBool>,
    /// While set, new connections are closed at once, as if the broker were down.
    refusing: Arc<AtomicBool>,
    /// Both ends of every proxied connection, so `cut` can shut them.
    sockets: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl TcpProxy {
    /// Starts a proxy to `upstream` (e.g. 127.0.0.1:5672).
    pub fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let local = listener.local_addr().unwrap();
        let stopping = Arc::new(AtomicBool::new(false));
        let stalled = Arc::new(AtomicBool::new(false));
        let refusing = Arc::new(AtomicBool::new(false));
        let sockets = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let flags = Flags {
                stopping: Arc::clone(&stopping),
                stalled: Arc::clone(&stalled),
                refusing: Arc::clone(&refusing),
            };
            let sockets = Arc::clone(&sockets);
            std::thread::Builder::new()
                .name("test-proxy-accept".into())
                .spawn(move || accept_loop(listener, upstream, flags, sockets))
                .unwrap()
        };
        TcpProxy {
            local,
            stopping,
            stalled,
            refusing,
            sockets,
            acceptor: Some(acceptor),
        }
    }

    /// Starts a proxy to the broker named by `AMQP_URL` (host:port, default localhost:5672).
    pub fn to_broker() -> TcpProxy {
        let url = url::Url::parse(&super::amqp_url()).unwrap();
        let host = url.host_str().unwrap_or("localhost");
        let host = if host == "localhost" {
            "127.0.0.1"
        } else {
            host
        };
        let port = url.port().unwrap_or(5672);
        TcpProxy::start(format!("{host}:{port}").parse().unwrap())
    }

    /// The broker URL that goes through this proxy.
    pub fn url(&self) -> String {
        let mut url = url::Url::parse(&super::amqp_url()).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.local.port())).unwrap();
        url.to_string()
    }

    /// Stops forwarding bytes without closing anything, like a network path that went silent.
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    /// Forwards bytes again after [`stall`](Self::stall).
    pub fn resume(&self) {
        self.stalled.store(false, Ordering::SeqCst);
    }

    /// While `refusing`, closes new connections at once, like a broker that is down; existing
    /// ones are not touched (use [`cut`](Self::cut) too for a broker that went away).
    pub fn refuse(&self, refusing: bool) {
        self.refusing.store(refusing, Ordering::SeqCst);
    }

    /// Abruptly ends every connection going through the proxy (new ones are still accepted).
    pub fn cut(&self) {
        for socket in self.sockets.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stalled.store(false, Ordering::SeqCst);
        self.cut();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// What the proxy's threads watch.
#[derive(Clone)]
struct Flags {
    stopping: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    refusing: Arc<AtomicBool>,
}

fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    flags: Flags,
    sockets: Arc<Mutex<Vec<TcpStream>>>,
) {
    while !flags.stopping.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        client.set_nonblocking(false).unwrap();
        if flags.refusing.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(server) = TcpStream::connect(upstream) else {
            continue; // the client sees its connection closed
        };
        for socket in [&client, &server] {
            socket.set_nodelay(true).unwrap();
        }
        {
            let mut sockets = sockets.lock().unwrap();
            sockets.push(client.try_clone().unwrap());
            sockets.push(server.try_clone().unwrap());
        }
        pump(
            client.try_clone().unwrap(),
            server.try_clone().unwrap(),
            flags.clone(),
        );
        pump(server, client, flags.clone());
    }
}

/// Copies bytes one way until either side closes, then shuts both. While stalled, holds what
/// it read instead of writing it on.
fn pump(mut from: TcpStream, mut to: TcpStream, flags: Flags) {
    std::thread::Builder::new()
        .name("test-proxy-pump".into())
        .spawn(move || {
            let mut buffer = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        while flags.stalled.load(Ordering::SeqCst)
                            && !flags.stopping.load(Ordering::SeqCst)
                        {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        if to.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        })
        .unwrap();
}
