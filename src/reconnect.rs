//! Getting a connection back: the list of brokers to try in turn (failover) and the capped,
//! jittered exponential backoff between rounds. Shared by the client and the server.

use std::time::Duration;

use amiquip::Connection;

use crate::connect::{BrokerUrl, ConnectSettings, StoodDown};
use crate::error::{Error, Result};

/// How long to wait between reconnection rounds; part of the client's and server's options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BackoffSettings {
    /// The first wait after a failure.
    pub initial: Duration,
    /// The longest wait; the doubling stops here.
    pub max: Duration,
}

impl Default for BackoffSettings {
    /// 100 ms, doubling up to 5 s: a broker restart is noticed within a few seconds of the
    /// broker being back, and a dead broker costs one attempt per ~5 s per process.
    fn default() -> Self {
        BackoffSettings {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

impl BackoffSettings {
    pub(crate) fn check(&self) -> Result<()> {
        const LONGEST: Duration = Duration::from_secs(3600);
        if self.initial.is_zero() || self.max < self.initial || self.max > LONGEST {
            return Err(Error::InvalidArgument(format!(
                "reconnect backoff must satisfy 0 < initial <= max <= 1 h (got {:?} and {:?})",
                self.initial, self.max
            )));
        }
        Ok(())
    }
}

/// Capped exponential backoff with "equal jitter": each wait is half the current step plus a
/// random part of the other half, so a fleet of clients that lost the same broker does not
/// come back in lockstep, yet none waits less than half its step.
///
/// The client and server use it between reconnection rounds; it is public so a program that
/// retries on its own (say, after [`Error::NotConnected`]) can space its attempts the same way.
///
/// ```
/// use std::time::Duration;
///
/// let mut backoff = fib_rpc::Backoff::new(Duration::from_millis(100), Duration::from_secs(5))?;
/// let first = backoff.next_delay();
/// assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
/// # Ok::<(), fib_rpc::Error>(())
/// ```
#[derive(Debug)]
pub struct Backoff {
    settings: BackoffSettings,
    step: Duration,
}

impl Default for Backoff {
    /// 100 ms doubling up to 5 s, the reconnection default.
    fn default() -> Self {
        Self::from_settings(BackoffSettings::default())
    }
}

impl Backoff {
    /// Waits from `initial`, doubling up to `max`. Fails with [`Error::InvalidArgument`]
    /// unless 0 < `initial` <= `max` <= 1 hour.
    pub fn new(initial: Duration, max: Duration) -> Result<Self> {
        let settings = BackoffSettings { initial, max };
        settings.check()?;
        Ok(Self::from_settings(settings))
    }

    pub(crate) fn from_settings(settings: BackoffSettings) -> Self {
        Backoff {
            settings,
            step: settings.initial,
        }
    }

    /// The next wait; the one after will be twice as long, up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(self.settings.max);
        let half = step / 2;
        // UUID v4 is 122 random bits from the OS generator: a dependency we already have.
        let random = uuid::Uuid::new_v4().as_u128() as u64;
        let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(random % jitter_nanos.max(1))
    }

    /// The longest wait.
    pub(crate) fn max(&self) -> Duration {
        self.settings.max
    }

    /// Back to the initial step, after an attempt worked.
    pub fn reset(&mut self) {
        self.step = self.settings.initial;
    }
}

/// The brokers to connect to, tried in turn. The one that worked last is tried first next
/// time, so a healthy broker keeps its clients and a failover sticks.
#[derive(Debug)]
pub(crate) struct Brokers {
    urls: Vec<BrokerUrl>,
    next: usize,
    /// The watchdog of the last connection opened, ending; joined on the next round or when
    /// this goes.
    stood_down: Option<StoodDown>,
}

impl Brokers {
    /// Parses every URL; at least one is needed.
    pub(crate) fn parse<S: AsRef<str>>(urls: &[S]) -> Result<Brokers> {
        if urls.is_empty() {
            return Err(Error::InvalidArgument("no broker URL given".into()));
        }
        let urls = urls
            .iter()
            .map(|url| BrokerUrl::parse(url.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Brokers {
            urls,
            next: 0,
            stood_down: None,
        })
    }

    /// The broker tried first on the next round (for messages), password masked.
    pub(crate) fn current(&self) -> &BrokerUrl {
        &self.urls[self.next]
    }

    /// Makes the next round start with the next broker: the current one accepted us but
    /// could not be used (setting up failed).
    pub(crate) fn skip_current(&mut self) {
        self.next = (self.next + 1) % self.urls.len();
    }

    /// One round: tries each broker once, starting with the last one that worked, until one
    /// connects. `give_up` is asked between attempts, so a client being closed does not try
    /// every remaining broker first.
    ///
    /// When all fail, returns the most hopeful of the errors: one that may pass by waiting (a
    /// broker down) before any other, and a refusal (credentials, vhost) only if every broker
    /// refused us. So one broker refusing our credentials while another is merely down, or
    /// fails its TLS handshake, does not make a caller give up, whatever the order of the URLs.
    pub(crate) fn connect_round(
        &mut self,
        settings: &ConnectSettings,
        give_up: impl Fn() -> bool,
    ) -> Result<Connection> {
        let mut most_hopeful: Option<Error> = None;
        for _ in 0..self.urls.len() {
            if give_up() {
                break;
            }
            let url = &self.urls[self.next];
            match url.connect(settings) {
                Ok((connection, stood_down)) => {
                    self.stood_down = Some(stood_down);
                    return Ok(connection);
                }
                Err(err) => {
                    if self.urls.len() > 1 {
                        log::warn!("{}; trying the next broker", err.full_message());
                    }
                    if most_hopeful
                        .as_ref()
                        .is_none_or(|so_far| hope(&err) >= hope(so_far))
                    {
                        most_hopeful = Some(err);
                    }
                    self.next = (self.next + 1) % self.urls.len();
                }
            }
        }
        Err(most_hopeful.unwrap_or(Error::Closed))
    }
}

/// How likely a failed attempt is to work later: 2 if it may pass by waiting, 0 if the broker
/// refused us, 1 for anything else (a TLS failure, a protocol error).
fn hope(err: &Error) -> u8 {
    match err {
        _ if err.is_transient() => 2,
        _ if err.is_refused_connection() => 0,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let settings = BackoffSettings {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        let mut backoff = Backoff::from_settings(settings);
        let mut step = Duration::from_millis(100);
        for _ in 0..10 {
            let delay = backoff.next_delay();
            assert!(
                delay >= step / 2 && delay <= step,
                "{delay:?} for step {step:?}"
            );
            step = (step * 2).min(settings.max);
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let mut delays: Vec<Duration> = (0..20).map(|_| Backoff::default().next_delay()).collect();
        delays.sort();
        delays.dedup();
        assert!(delays.len() > 10, "{delays:?}");
    }

    #[test]
    fn refuses_nonsense_settings() {
        for (initial, max) in [(0, 10), (10, 5), (10, 3_600_001)] {
            let settings = BackoffSettings {
                initial: Duration::from_millis(initial),
                max: Duration::from_millis(max),
            };
            assert!(matches!(settings.check(), Err(Error::InvalidArgument(_))));
        }
        assert!(matches!(
            Brokers::parse::<&str>(&[]),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn a_round_tries_every_broker_and_remembers_the_last_that_failed_over() {
        // Port 1 refuses at once on loopback.
        let mut brokers = Brokers::parse(&["amqp://127.0.0.1:1", "amqp://127.0.0.1:2"]).unwrap();
        let settings = ConnectSettings::named("test");
        let err = brokers.connect_round(&settings, || false).unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err}");
        assert_eq!(brokers.next, 0, "a full round comes back to the first");
        assert!(matches!(
            brokers.connect_round(&settings, || true),
            Err(Error::Closed)
        ));
    }
}
