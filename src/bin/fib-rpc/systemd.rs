//! Talking to systemd: readiness, stopping, status and watchdog pings (`sd_notify`), in a
//! few lines over a Unix datagram socket instead of a crate.
//!
//! systemd passes the socket's address in `NOTIFY_SOCKET`: a path, or `@name` for the
//! abstract namespace. Each message is a datagram of `KEY=value` lines. Without
//! `NOTIFY_SOCKET` (not under systemd, or a unit that is not `Type=notify`) nothing is sent;
//! a message that cannot be sent is logged at debug level and otherwise ignored: telling
//! systemd is never worth failing the server for.
//!
//! The watchdog: with `WatchdogSec=` set, systemd passes `WATCHDOG_USEC` (and `WATCHDOG_PID`,
//! the process that must ping) and kills the service if no `WATCHDOG=1` comes within that
//! time. `serve` pings every half of it.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where to send notifications, if systemd asked for them.
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// A notifier for `NOTIFY_SOCKET`, or `None` when it is unset or empty. An address that
    /// cannot be used is logged (debug) and also gives `None`.
    pub fn from_env() -> Option<Notifier> {
        let value = std::env::var_os("NOTIFY_SOCKET")?;
        let value = value.to_str().unwrap_or_default();
        if value.is_empty() {
            return None;
        }
        match Notifier::new(value) {
            Ok(notifier) => Some(notifier),
            Err(err) => {
                log::debug!("not notifying systemd: NOTIFY_SOCKET={value:?}: {err}");
                None
            }
        }
    }

    fn new(value: &str) -> io::Result<Notifier> {
        let socket = UnixDatagram::unbound()?;
        // A datagram to a receiver whose queue is full would block the sender (serve's main
        // loop, which pings the watchdog); non-blocking, it fails and is logged instead.
        socket.set_nonblocking(true)?;
        Ok(Notifier {
            addr: socket_addr(value)?,
            socket,
        })
    }

    /// Sends `message` (`KEY=value` lines); a failure is a debug log line.
    pub fn send(&self, message: &str) {
        match self.socket.send_to_addr(message.as_bytes(), &self.addr) {
            Ok(_) => log::trace!("told systemd {message:?}"),
            Err(err) => log::debug!("could not tell systemd {message:?}: {err}"),
        }
    }
}

/// Sends `message` if there is anyone to tell.
pub fn notify(notifier: Option<&Notifier>, message: &str) {
    if let Some(notifier) = notifier {
        notifier.send(message);
    }
}

/// The address in `NOTIFY_SOCKET`: an absolute path, or `@name` in the abstract namespace.
fn socket_addr(value: &str) -> io::Result<SocketAddr> {
    if let Some(name) = value.strip_prefix('@') {
        abstract_addr(name)
    } else if value.starts_with('/') {
        SocketAddr::from_pathname(value)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "neither an absolute path nor @name",
        ))
    }
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &str) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name.as_bytes())
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_name: &str) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract socket addresses are Linux only",
    ))
}

/// `READY=1` with a status line saying what is served where.
pub fn ready_message(queue: &str, broker: &str) -> String {
    format!(
        "READY=1\nSTATUS={}",
        status_text(&format!("consuming {queue} on {broker}"))
    )
}

/// A `STATUS=` line's text: one line (systemd shows it in `systemctl status`).
pub fn status_text(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// How often to send `WATCHDOG=1`, from `WATCHDOG_USEC` and `WATCHDOG_PID`: half the
/// watchdog time, or `None` when there is no watchdog or it watches another process.
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, our_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|usec| *usec > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(our_pid) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// [`watchdog_interval`] from this process's environment.
pub fn watchdog_interval_from_env() -> Option<Duration> {
    let var = |name| std::env::var(name).ok();
    watchdog_interval(
        var("WATCHDOG_USEC").as_deref(),
        var("WATCHDOG_PID").as_deref(),
        std::process::id(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_paths_or_abstract_names() {
        let path = socket_addr("/run/systemd/notify").unwrap();
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let named = socket_addr("@fib-rpc/notify").unwrap();
            assert_eq!(named.as_abstract_name(), Some(&b"fib-rpc/notify"[..]));
            assert_eq!(named.as_pathname(), None);
        }
        assert!(socket_addr("relative/path").is_err());
        assert!(socket_addr("").is_err());
    }

    #[test]
    fn messages_reach_a_socket_at_a_path_and_in_the_abstract_namespace() {
        let dir = std::env::temp_dir().join(format!(
            "fib-rpc-notify-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::new(path.to_str().unwrap()).unwrap();
        notifier.send(&ready_message(
            "rpc_queue",
            "amqp://guest:***@localhost:5672/%2f",
        ));
        let mut buf = [0; 256];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            b"READY=1\nSTATUS=consuming rpc_queue on amqp://guest:***@localhost:5672/%2f"
        );
        std::fs::remove_dir_all(&dir).unwrap();

        #[cfg(target_os = "linux")]
        {
            let name = format!("fib-rpc-test-{}", uuid::Uuid::new_v4().simple());
            let listener =
                UnixDatagram::bind_addr(&socket_addr(&format!("@{name}")).unwrap()).unwrap();
            Notifier::new(&format!("@{name}"))
                .unwrap()
                .send("WATCHDOG=1");
            let n = listener.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"WATCHDOG=1");
        }
    }

    #[test]
    fn a_send_nobody_receives_is_not_an_error() {
        let gone = std::env::temp_dir().join(format!("fib-rpc-gone-{}", std::process::id()));
        Notifier::new(gone.to_str().unwrap())
            .unwrap()
            .send("READY=1");
    }

    #[test]
    fn status_is_one_line() {
        assert_eq!(status_text("a\nb\r\nc"), "a b  c");
        assert_eq!(
            ready_message("q", "amqp://h/%2f"),
            "READY=1\nSTATUS=consuming q on amqp://h/%2f"
        );
    }

    #[test]
    fn the_watchdog_pings_at_half_its_time_for_our_pid_only() {
        let half = |usec, pid| watchdog_interval(usec, pid, 42);
        assert_eq!(half(Some("200000"), None), Some(Duration::from_millis(100)));
        assert_eq!(
            half(Some("30000000"), Some("42")),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            half(Some("30000000"), Some("43")),
            None,
            "another process's"
        );
        assert_eq!(half(Some("30000000"), Some("x")), None);
        assert_eq!(half(None, Some("42")), None, "no watchdog");
        assert_eq!(half(Some("0"), None), None);
        assert_eq!(half(Some("soon"), None), None);
        assert_eq!(half(Some("1"), None), Some(Duration::from_millis(1)));
    }
}
