//! Whether any server consumes the queue: the probe thread, its side channel, and what the
//! client remembers of the answers.
//!
//! The broker says how many consumers a queue has in its answer to a passive `queue.declare`.
//! That is a channel round trip with no timeout in amiquip, and for a missing queue the broker
//! answers by closing the channel (404). So it runs on a side channel owned by a probe thread
//! (`fib-rpc-probe`, started on the first probe), never on the reader's channel and never on
//! the reader's thread: callers ask the probe thread over a crossbeam channel and wait at
//! most until their own bound, so neither a caller nor the reader is ever stuck behind a
//! probe. The reader only opens side channels for it, on request, on its current connection
//! (one quick round trip), so after a reconnection the next probe uses the new connection.
//!
//! A positive answer is kept for [`PROBE_TTL`], and a reply received within that time proves a
//! server without asking: a healthy queue under load is never probed, and one called now and
//! then is probed at most once a second. A negative answer (no consumer, no queue) stands only
//! for [`NEGATIVE_TTL`]: after that, the next call that requires a server probes again (one
//! probe shared by all callers asking then), so a server that starts is seen at once; only the
//! failure path pays for that. With `require_server` on, the reader also probes once while
//! setting up each connection, on its new channel before that is used for anything (like its
//! other setup round trips), so a cold call needs no probe thread at all.
//!
//! A call that times out never waits for a probe after its deadline: a call still waiting
//! shortly before it ([`kick_at`]) starts one without waiting for it, and at the deadline the
//! call reports whatever answer is there by then ([`Prober::consumers_known`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use amiquip::Channel;
use crossbeam_channel::{select, Receiver, RecvTimeoutError, Sender};

use super::handle::Shared;
use crate::error::{BrokerError, Error, NoServerReason, Result};
use crate::util::is_disconnected;

/// How long a probe's positive answer, or a reply, stands for the queue's state.
pub(super) const PROBE_TTL: Duration = Duration::from_secs(1);

/// How long a probe's negative answer (no consumer, or no queue) stands before a call that
/// requires a server probes again.
pub(super) const NEGATIVE_TTL: Duration = Duration::from_millis(100);

/// How long a call that requires a server waits for a probe before it goes ahead unchecked
/// (the broker is then too slow to answer a passive declare: the call will meet that anyway).
const CHECK_WAIT: Duration = Duration::from_secs(1);

/// A probe this recent makes a call about to time out start none: calls that time out
/// together share one probe.
const PROBE_SHARED: Duration = Duration::from_millis(100);

/// How long before its deadline a call still waiting starts a probe (half its timeout for calls
/// shorter than twice this), so that its `Timeout` can say whether a server was consuming
/// without waiting past the deadline.
const KICK_LEAD: Duration = Duration::from_millis(250);

/// When a call sent at `started` with `deadline`, if still waiting, starts a probe: see
/// [`KICK_LEAD`].
pub(super) fn kick_at(started: Instant, deadline: Instant) -> Instant {
    let timeout = deadline.saturating_duration_since(started);
    deadline
        .checked_sub(KICK_LEAD.min(timeout / 2))
        .unwrap_or(started)
}

/// The state of the server queue, from [`RpcClient::queue_status`](crate::RpcClient::queue_status).
///
/// A snapshot from the broker's answer to a passive `queue.declare`: by the time you read it,
/// servers may have come or gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStatus {
    /// Consumers of the queue: one per running fib-rpc server (its workers share one
    /// consumer). Zero means nobody will answer.
    pub consumers: u32,
    /// Requests waiting in the queue (ready, not yet delivered to a server).
    pub messages: u32,
}

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    Queue(QueueStatus),
    NoQueue,
}

impl Seen {
    /// Consumers of the queue (none without a queue).
    fn consumers(self) -> u32 {
        match self {
            Seen::Queue(status) => status.consumers,
            Seen::NoQueue => 0,
        }
    }

    /// How long this answer stands: a negative one only briefly.
    fn ttl(self) -> Duration {
        match self.consumers() {
            0 => NEGATIVE_TTL,
            _ => PROBE_TTL,
        }
    }
}

/// Why a probe found nothing.
#[derive(Debug, Clone)]
pub(super) enum ProbeFailed {
    /// The client is reconnecting.
    NotConnected,
    /// The broker failed the passive declare (other than with 404), or no side channel could
    /// be opened.
    Broker(BrokerError),
}

type Answer = std::result::Result<Seen, ProbeFailed>;

/// What the client last learnt of its queue; see [`Watch::latest`].
enum Latest {
    /// A reply arrived: a server consumes the queue.
    Replied,
    Probed(Seen),
}

/// A caller's question to the probe thread: answer with a probe made after `asked_at`.
struct Ask {
    asked_at: Instant,
    reply: Sender<Answer>,
}

/// A side channel the reader opened for the probe thread, with its session number, or why it
/// could not.
pub(super) type OpenedChannel = std::result::Result<(u64, Channel), ProbeFailed>;

/// The probe thread's request to the reader for a side channel.
pub(super) type ChannelAsk = Sender<OpenedChannel>;

/// What the client knows of its queue, shared by callers, the reader and the probe thread.
pub(super) struct Watch {
    epoch: Instant,
    /// When the last reply arrived, in nanoseconds since `epoch` plus one; 0 for never.
    last_reply: AtomicU64,
    /// When the last probe started, stamped like `last_reply`.
    last_probe_at: AtomicU64,
    /// The last probe's answer and when that probe started.
    last_probe: Mutex<Option<(Instant, Seen)>>,
}

impl Watch {
    pub(super) fn new() -> Watch {
        Watch {
            epoch: Instant::now(),
            last_reply: AtomicU64::new(0),
            last_probe_at: AtomicU64::new(0),
            last_probe: Mutex::new(None),
        }
    }

    /// Reader: a reply arrived, so a server consumes the queue.
    pub(super) fn saw_reply(&self) {
        self.last_reply
            .store(self.stamp(Instant::now()), Ordering::Relaxed);
    }

    /// The newer of the last reply and the last probe, if it still stands: a reply or a
    /// positive probe for [`PROBE_TTL`], a negative probe for [`NEGATIVE_TTL`]. While replies
    /// flow this takes no lock: two atomic loads and the clock.
    fn latest(&self, now: Instant) -> Option<Latest> {
        let replied = self.last_reply.load(Ordering::Relaxed);
        let probed = self.last_probe_at.load(Ordering::Acquire);
        let (stamp, latest) = if replied != 0 && replied >= probed {
            (replied, Latest::Replied)
        } else if probed != 0 {
            let last = *self.last_probe.lock().unwrap_or_else(|e| e.into_inner());
            let (at, seen) = last?;
            return (now.saturating_duration_since(at) < seen.ttl())
                .then_some(Latest::Probed(seen));
        } else {
            return None;
        };
        let at = self.epoch + Duration::from_nanos(stamp - 1);
        (now.saturating_duration_since(at) < PROBE_TTL).then_some(latest)
    }

    /// `at` as stored in the atomics: nanoseconds since `epoch` plus one (0 is "never").
    fn stamp(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1
    }

    /// Whether a probe that started at or after `since` has answered (no lock).
    fn probed_after(&self, since: Instant) -> bool {
        self.last_probe_at.load(Ordering::Acquire) >= self.stamp(since)
    }

    /// For a call that timed out: the consumers the last probe saw, if it started within
    /// [`PROBE_TTL`] before `now`; `None` if there is no such probe, or if it saw none but a
    /// reply has arrived since (a server came: how many is unknown).
    fn consumers(&self, now: Instant) -> Option<u32> {
        let (at, seen) = (*self.last_probe.lock().unwrap_or_else(|e| e.into_inner()))?;
        if now.saturating_duration_since(at) >= PROBE_TTL {
            return None;
        }
        let consumers = seen.consumers();
        if consumers == 0 && self.last_reply.load(Ordering::Relaxed) > self.stamp(at) {
            return None;
        }
        Some(consumers)
    }

    /// The last probe's answer if that probe started at or after `since`.
    fn probed_since(&self, since: Instant) -> Option<Seen> {
        let last = *self.last_probe.lock().unwrap_or_else(|e| e.into_inner());
        last.filter(|(at, _)| *at >= since).map(|(_, seen)| seen)
    }

    fn record(&self, at: Instant, seen: Seen) {
        *self.last_probe.lock().unwrap_or_else(|e| e.into_inner()) = Some((at, seen));
        self.last_probe_at.store(self.stamp(at), Ordering::Release);
    }
}

/// The caller's side of probing: asks the probe thread (starting it on first use) and waits
/// within a bound.
pub(super) struct Prober {
    queue: String,
    shared: Arc<Shared>,
    asks: Sender<Ask>,
    /// Handed to the probe thread when it starts.
    thread_asks: Receiver<Ask>,
    channel_asks: Sender<ChannelAsk>,
    closed: Receiver<()>,
    started: AtomicBool,
    thread: Mutex<Option<ProbeThread>>,
}

struct ProbeThread {
    thread: JoinHandle<()>,
    finished: Receiver<()>,
}

impl Prober {
    pub(super) fn new(
        queue: String,
        shared: Arc<Shared>,
        channel_asks: Sender<ChannelAsk>,
        closed: Receiver<()>,
    ) -> Prober {
        let (asks, thread_asks) = crossbeam_channel::unbounded();
        Prober {
            queue,
            shared,
            asks,
            thread_asks,
            channel_asks,
            closed,
            started: AtomicBool::new(false),
            thread: Mutex::new(None),
        }
    }

    /// For a call that requires a server: `Ok` to send it, or [`Error::NoServer`] when the
    /// queue is missing or nobody consumes it. Unknown (not connected, the broker slow or
    /// failing) counts as `Ok`: the call then meets whatever is wrong by itself.
    pub(super) fn check(&self, deadline: Instant) -> Result<()> {
        let now = Instant::now();
        if !self.shared.connected.load(Ordering::SeqCst) {
            return Ok(());
        }
        let seen = match self.shared.watch.latest(now) {
            Some(Latest::Replied) => return Ok(()),
            Some(Latest::Probed(seen)) => seen,
            // Nothing stands (none at all, or a negative answer older than NEGATIVE_TTL): a
            // probe started since then will do, one in flight included.
            None => match self.ask(
                now.checked_sub(NEGATIVE_TTL).unwrap_or(now),
                deadline.min(now + CHECK_WAIT),
            ) {
                Some(Ok(seen)) => seen,
                _ => return Ok(()),
            },
        };
        match seen {
            Seen::Queue(status) if status.consumers > 0 => Ok(()),
            Seen::Queue(_) => Err(self.no_server(NoServerReason::NoConsumer)),
            Seen::NoQueue => Err(self.no_server(NoServerReason::NoQueue)),
        }
    }

    /// For a call still waiting shortly before its deadline ([`kick_at`]): starts a probe,
    /// without waiting for it, unless one started within [`PROBE_SHARED`] or one is already
    /// asked for. Never blocks.
    pub(super) fn kick(&self) {
        let now = Instant::now();
        if !self.shared.connected.load(Ordering::SeqCst) || is_disconnected(&self.closed) {
            return;
        }
        let since = now.checked_sub(PROBE_SHARED).unwrap_or(now);
        // A queued ask is answered by a probe that starts after now.
        if self.shared.watch.probed_after(since) || !self.asks.is_empty() {
            return;
        }
        if self.start_thread().is_none() {
            return;
        }
        // Nobody waits for the answer: the probe records it in the watch.
        let (reply, _) = crossbeam_channel::bounded(1);
        let _ = self.asks.send(Ask {
            asked_at: since,
            reply,
        });
    }

    /// For a call that timed out: how many servers consumed the queue, from an answer already
    /// there (the probe the call kicked, if it has answered, or one at most [`PROBE_TTL`] old);
    /// `None` if unknown. Never probes, never waits.
    pub(super) fn consumers_known(&self) -> Option<u32> {
        if !self.shared.connected.load(Ordering::SeqCst) || is_disconnected(&self.closed) {
            return None;
        }
        self.shared.watch.consumers(Instant::now())
    }

    /// A fresh probe (one started after this call), waiting at most `timeout`.
    pub(super) fn status(&self, timeout: Duration) -> Result<QueueStatus> {
        let started = Instant::now();
        if is_disconnected(&self.closed) {
            return Err(Error::Closed);
        }
        let not_connected = || Error::NotConnected {
            waited: started.elapsed(),
            last_error: self.shared.last_error(),
        };
        if !self.shared.connected.load(Ordering::SeqCst) {
            return Err(not_connected());
        }
        match self.ask(started, crate::connect::deadline_after(timeout)) {
            Some(Ok(Seen::Queue(status))) => Ok(status),
            Some(Ok(Seen::NoQueue)) => Err(self.no_server(NoServerReason::NoQueue)),
            Some(Err(ProbeFailed::NotConnected)) => Err(not_connected()),
            Some(Err(ProbeFailed::Broker(cause))) => Err(Error::Broker(cause)),
            None if is_disconnected(&self.closed) => Err(Error::Closed),
            None => Err(Error::Timeout {
                waited: started.elapsed(),
                consumers: None,
            }),
        }
    }

    fn no_server(&self, reason: NoServerReason) -> Error {
        Error::NoServer {
            queue: self.queue.clone(),
            reason,
        }
    }

    /// Asks for a probe started at or after `asked_at`; `None` if none answered by `until`
    /// (or the client closed).
    fn ask(&self, asked_at: Instant, until: Instant) -> Option<Answer> {
        self.start_thread()?;
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.asks.send(Ask { asked_at, reply }).ok()?;
        let wait = until.saturating_duration_since(Instant::now());
        select! {
            recv(answer) -> answer => answer.ok(),
            recv(self.closed) -> _ => None,
            default(wait) => None,
        }
    }

    /// Starts the probe thread unless it runs already; `None` if it cannot.
    fn start_thread(&self) -> Option<()> {
        if self.started.load(Ordering::Acquire) {
            return Some(());
        }
        let mut thread = self.thread.lock().unwrap_or_else(|e| e.into_inner());
        if thread.is_none() {
            let (finished_tx, finished) = crossbeam_channel::bounded::<()>(0);
            let probe = ProbeLoop {
                queue: self.queue.clone(),
                shared: Arc::clone(&self.shared),
                asks: self.thread_asks.clone(),
                channel_asks: self.channel_asks.clone(),
                closed: self.closed.clone(),
                channel: None,
            };
            let spawned = std::thread::Builder::new()
                .name("fib-rpc-probe".into())
                .spawn(move || {
                    let _finished = finished_tx;
                    probe.run();
                });
            match spawned {
                Ok(handle) => {
                    *thread = Some(ProbeThread {
                        thread: handle,
                        finished,
                    })
                }
                Err(err) => {
                    log::warn!("cannot start the probe thread: {err}");
                    return None;
                }
            }
            self.started.store(true, Ordering::Release);
        }
        Some(())
    }

    /// Joins the probe thread (after the client's close signal) if it ends within `bound`.
    pub(super) fn join_within(&self, bound: Duration) {
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(ProbeThread { thread, finished }) = thread {
            match finished.recv_timeout(bound) {
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = thread.join();
                }
                _ => log::debug!("probe thread did not stop within {bound:?}"),
            }
        }
    }
}

/// One passive declare of `queue` on `channel`, its answer recorded in `watch`. After
/// `NoQueue` the channel is closed (the broker answers a missing queue with 404 on it).
pub(super) fn declare_passive(
    channel: &Channel,
    queue: &str,
    watch: &Watch,
) -> std::result::Result<Seen, amiquip::Error> {
    let started = Instant::now();
    let seen = match channel.queue_declare_passive(queue) {
        Ok(queue) => Seen::Queue(QueueStatus {
            consumers: queue.declared_consumer_count().unwrap_or(0),
            messages: queue.declared_message_count().unwrap_or(0),
        }),
        Err(amiquip::Error::ServerClosedChannel { code: 404, .. }) => Seen::NoQueue,
        Err(err) => return Err(err),
    };
    watch.record(started, seen);
    Ok(seen)
}

/// The probe thread: answers asks with passive declares on its side channel.
struct ProbeLoop {
    queue: String,
    shared: Arc<Shared>,
    asks: Receiver<Ask>,
    channel_asks: Sender<ChannelAsk>,
    closed: Receiver<()>,
    /// The side channel and the session (connection) it belongs to.
    channel: Option<(u64, Channel)>,
}

impl ProbeLoop {
    fn run(mut self) {
        loop {
            let first = select! {
                recv(self.asks) -> ask => match ask {
                    Ok(ask) => ask,
                    Err(_) => break,
                },
                recv(self.closed) -> _ => break,
            };
            // Everyone asking now shares one probe.
            let mut waiting = vec![first];
            waiting.extend(self.asks.try_iter());
            let latest = waiting.iter().map(|ask| ask.asked_at).max();
            let answer = match latest.and_then(|at| self.shared.watch.probed_since(at)) {
                Some(seen) => Ok(seen),
                None => self.probe(),
            };
            for ask in waiting {
                let _ = ask.reply.send(answer.clone());
            }
        }
        // Dropping the channel closes it (quickly: the connection is closing or gone).
    }

    /// One passive declare, on the current connection. A channel of an earlier connection is
    /// replaced first; one that fails is replaced and the probe tried once more.
    fn probe(&mut self) -> Answer {
        let mut last_failure = ProbeFailed::NotConnected;
        for _ in 0..2 {
            if !self.shared.connected.load(Ordering::SeqCst) || is_disconnected(&self.closed) {
                return Err(ProbeFailed::NotConnected);
            }
            let session = self.shared.session.load(Ordering::SeqCst);
            if self.channel.as_ref().is_none_or(|(of, _)| *of != session) {
                self.channel = None; // closes an old one
                self.channel = Some(self.open_channel()?);
            }
            let Some((_, channel)) = &self.channel else {
                continue;
            };
            match declare_passive(channel, &self.queue, &self.shared.watch) {
                Ok(seen) => {
                    if seen == Seen::NoQueue {
                        // The broker closed the side channel with its answer.
                        self.channel = None;
                    }
                    return Ok(seen);
                }
                Err(err) => {
                    log::debug!("probing queue {:?}: {err}", self.queue);
                    self.channel = None;
                    last_failure = ProbeFailed::Broker(BrokerError::amqp(err));
                }
            }
        }
        Err(last_failure)
    }

    /// Asks the reader for a side channel on its current connection.
    fn open_channel(&self) -> std::result::Result<(u64, Channel), ProbeFailed> {
        let (reply, opened) = crossbeam_channel::bounded(1);
        if self.channel_asks.send(reply).is_err() {
            return Err(ProbeFailed::NotConnected);
        }
        select! {
            // `Err`: the reader dropped the request (it is reconnecting, or stopped).
            recv(opened) -> opened => opened.unwrap_or(Err(ProbeFailed::NotConnected)),
            recv(self.closed) -> _ => Err(ProbeFailed::NotConnected),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replied(watch: &Watch, now: Instant) -> bool {
        matches!(watch.latest(now), Some(Latest::Replied))
    }

    #[test]
    fn the_newer_of_reply_and_probe_decides_until_the_ttl() {
        let watch = Watch::new();
        assert!(watch.latest(Instant::now()).is_none());
        watch.saw_reply();
        assert!(replied(&watch, Instant::now()));
        // A later probe that found nobody overrides the reply...
        std::thread::sleep(Duration::from_millis(2));
        watch.record(Instant::now(), Seen::NoQueue);
        assert!(matches!(
            watch.latest(Instant::now()),
            Some(Latest::Probed(Seen::NoQueue))
        ));
        // ...until a reply comes again.
        std::thread::sleep(Duration::from_millis(2));
        watch.saw_reply();
        assert!(replied(&watch, Instant::now()));
        // Nothing stands after the TTL.
        assert!(watch.latest(Instant::now() + PROBE_TTL).is_none());
        assert!(watch.probed_since(Instant::now()).is_none());
    }

    #[test]
    fn a_negative_answer_stands_briefly_and_a_positive_one_for_the_ttl() {
        let status = |consumers| {
            Seen::Queue(QueueStatus {
                consumers,
                messages: 0,
            })
        };
        let watch = Watch::new();
        let at = Instant::now();
        watch.record(at, status(0));
        assert!(matches!(watch.latest(at), Some(Latest::Probed(_))));
        assert!(watch.latest(at + NEGATIVE_TTL).is_none());
        // A timed-out call still reports it, for up to the TTL.
        assert_eq!(watch.consumers(at + NEGATIVE_TTL), Some(0));
        assert_eq!(watch.consumers(at + PROBE_TTL), None);
        watch.record(at, Seen::NoQueue);
        assert!(watch.latest(at + NEGATIVE_TTL).is_none());
        watch.record(at, status(2));
        assert!(matches!(
            watch.latest(at + NEGATIVE_TTL),
            Some(Latest::Probed(_))
        ));
        assert!(watch.latest(at + PROBE_TTL).is_none());
        assert_eq!(watch.consumers(at + NEGATIVE_TTL), Some(2));
        // A reply after a probe that saw nobody: how many servers is unknown.
        watch.record(at, status(0));
        std::thread::sleep(Duration::from_millis(2));
        watch.saw_reply();
        assert_eq!(watch.consumers(Instant::now()), None);
        assert!(watch.probed_after(at));
        assert!(!watch.probed_after(at + Duration::from_millis(1)));
    }

    #[test]
    fn a_call_kicks_its_probe_before_its_deadline() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(kick_at(t, t + ms(5000)), t + ms(4750));
        assert_eq!(kick_at(t, t + ms(500)), t + ms(250));
        assert_eq!(kick_at(t, t + ms(300)), t + ms(150));
        assert_eq!(kick_at(t, t + ms(100)), t + ms(50));
        assert_eq!(kick_at(t, t), t);
    }
}
