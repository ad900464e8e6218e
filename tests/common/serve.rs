//! The `fib-rpc` binary as a test runs it: the command without the caller's environment
//! leaking in, and `fib-rpc serve` as a child process whose stderr is collected line by line
//! and which is killed if the test ends first.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::eventually;

/// The line `fib-rpc serve` prints on stderr once its workers consume.
const READY: &str = ": ready: consuming";

/// The `fib-rpc` binary, without the caller's `RUST_LOG` and `AMQP_URL`.
pub fn fib_rpc() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fib-rpc"));
    command.env_remove("RUST_LOG").env_remove("AMQP_URL");
    command
}

/// A `fib-rpc serve` child process, killed if the test ends first.
pub struct Serve {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Gets when the readiness line came.
    ready: crossbeam_channel::Receiver<Instant>,
    reader: Option<JoinHandle<()>>,
}

impl Serve {
    /// Starts `fib-rpc serve --queue QUEUE ARGS --url URL` without waiting for it.
    pub fn spawn(url: &str, queue: &str, args: &[&str]) -> Serve {
        Serve::spawn_with_env(url, queue, args, &[])
    }

    /// [`Serve::spawn`] with these environment variables set too.
    pub fn spawn_with_env(url: &str, queue: &str, args: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut child = fib_rpc()
            .args(["serve", "--queue", queue])
            .args(args)
            .args(["--url", url])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fib-rpc serve starts");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready) = crossbeam_channel::unbounded();
        let pipe = child.stderr.take().unwrap();
        let lines = Arc::clone(&stderr);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let is_ready = line.contains(READY);
                lines.lock().unwrap().push(line);
                if is_ready {
                    let _ = ready_tx.send(Instant::now());
                }
            }
        });
        Serve {
            child,
            stderr,
            ready,
            reader: Some(reader),
        }
    }

    /// Starts `fib-rpc serve --queue QUEUE ARGS --url URL` and waits (up to 30 s) for its
    /// readiness line; panics with what it printed if that never comes.
    pub fn start(url: &str, queue: &str, args: &[&str]) -> Serve {
        let mut serve = Serve::spawn(url, queue, args);
        if serve.wait_ready(Duration::from_secs(30)).is_none() {
            let _ = serve.child.kill();
            panic!("serve never became ready: {:?}", serve.stderr());
        }
        serve
    }

    /// When it printed its readiness line, waiting up to `within` for it.
    pub fn wait_ready(&self, within: Duration) -> Option<Instant> {
        self.ready.recv_timeout(within).ok()
    }

    /// What it has printed on stderr so far, a line an entry.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How it exited, if it has.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// SIGKILL, as a crash or the OOM killer would: no drain, no goodbye to the broker.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends the signal `name` (`TERM`, `STOP`, ...) with `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `within` for it to exit and returns its exit code; panics if it does not.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let exited = eventually(within, || self.child.try_wait().unwrap().is_some());
        assert!(exited, "serve did not exit: {:?}", self.stderr());
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.child.try_wait().unwrap().unwrap().code()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
