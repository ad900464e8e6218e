//! Logs on stderr, set by `-v` and `RUST_LOG`, in a few lines instead of a logging crate.
//!
//! `RUST_LOG` takes the usual simple form: a default level and/or `target=level` pairs,
//! comma-separated (`RUST_LOG=debug`, `RUST_LOG=warn,fib_rpc=debug`). A target matches its
//! module and everything below it; the longest match wins. Under systemd (`JOURNAL_STREAM`
//! set) lines carry a `<N>` priority prefix instead of a timestamp, so the journal records
//! each line's level and time itself.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

struct StderrLogger {
    default: LevelFilter,
    /// `(target prefix, level)`, longest prefix first.
    targets: Vec<(String, LevelFilter)>,
    journald: bool,
}

/// amiquip logs the AMQP handshake at debug level, password included, so nothing below info
/// from it is ever shown, whatever `-v` or `RUST_LOG` ask.
const AMIQUIP_MAX: LevelFilter = LevelFilter::Info;

impl StderrLogger {
    fn level_for(&self, target: &str) -> LevelFilter {
        let level = self.configured_level(target);
        if is_below(target, "amiquip") {
            level.min(AMIQUIP_MAX)
        } else {
            level
        }
    }

    fn configured_level(&self, target: &str) -> LevelFilter {
        self.targets
            .iter()
            .find(|(prefix, _)| is_below(target, prefix))
            .map_or(self.default, |(_, level)| *level)
    }
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level_for(metadata.target())
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = if self.journald {
            let priority = match record.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            format!("<{priority}>{}: {}\n", record.target(), record.args())
        } else {
            format!(
                "{} {:<5} {}: {}\n",
                utc_timestamp(SystemTime::now()),
                record.level(),
                record.target(),
                record.args()
            )
        };
        // One write per line so lines from different threads do not interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// True if `target` is the module `prefix` or inside it.
fn is_below(target: &str, prefix: &str) -> bool {
    target
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

/// Installs the logger. `verbosity` is the number of `-v` flags: none shows `quiet` and up
/// (info for `serve`, warnings for `bench`, nothing for `call`, whose one-line reason says
/// it all), `-v` info,
/// `-vv` debug (and amiquip's own messages, up to info), `-vvv` trace. `RUST_LOG` refines it.
pub fn init(verbosity: u8, rust_log: Option<&str>, quiet: LevelFilter) {
    let mut default = match verbosity {
        0 => quiet,
        1 => LevelFilter::Info,
        2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    };
    let mut targets = Vec::new();
    // amiquip warns about things we expect and handle (the broker closing the channel of our
    // passive queue probe); our own messages report real failures with their cause. So its
    // messages appear only with -v (errors) or -vv (up to info, see `AMIQUIP_MAX`).
    match verbosity {
        0 => targets.push(("amiquip".to_owned(), LevelFilter::Off)),
        1 => targets.push(("amiquip".to_owned(), LevelFilter::Error)),
        _ => {}
    }
    for directive in rust_log.unwrap_or("").split(',').map(str::trim) {
        if directive.is_empty() {
            continue;
        }
        let (target, level) = match directive.split_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, directive),
        };
        let Ok(level) = level.parse::<LevelFilter>() else {
            eprintln!("fib-rpc: ignoring RUST_LOG entry {directive:?}: unknown level");
            continue;
        };
        match target {
            Some(target) => {
                targets.retain(|(prefix, _)| prefix != target);
                targets.push((target.to_owned(), level));
            }
            // `-v` asks for more than a bare RUST_LOG level only when it says more.
            None if verbosity == 0 => default = level,
            None => default = default.max(level),
        }
    }
    targets.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
    let max = targets
        .iter()
        .map(|(_, level)| *level)
        .fold(default, Ord::max);
    let logger = StderrLogger {
        default,
        targets,
        journald: std::env::var_os("JOURNAL_STREAM").is_some(),
    };
    // Leaked once: the logger lives as long as the process, as `log` requires.
    if log::set_logger(Box::leak(Box::new(logger))).is_ok() {
        log::set_max_level(max);
    }
}

/// `2026-11-25T09:30:01.123Z`, from the civil-from-days algorithm (no time crate needed).
fn utc_timestamp(now: SystemTime) -> String {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's published algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        let at = |secs| utc_timestamp(UNIX_EPOCH + Duration::from_millis(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_795_605_001_123), "2026-11-25T11:10:01.123Z");
    }

    #[test]
    fn longest_target_prefix_wins() {
        let logger = StderrLogger {
            default: LevelFilter::Warn,
            targets: vec![
                ("fib_rpc::server".into(), LevelFilter::Trace),
                ("fib_rpc".into(), LevelFilter::Debug),
            ],
            journald: false,
        };
        assert_eq!(logger.level_for("fib_rpc::server"), LevelFilter::Trace);
        assert_eq!(logger.level_for("fib_rpc::client"), LevelFilter::Debug);
        assert_eq!(logger.level_for("fib_rpc_other"), LevelFilter::Warn);
        assert_eq!(logger.level_for("amiquip::io_loop"), LevelFilter::Warn);
    }

    #[test]
    fn amiquip_debug_is_never_shown_because_it_logs_the_password() {
        let logger = StderrLogger {
            default: LevelFilter::Trace,
            targets: vec![("amiquip".into(), LevelFilter::Trace)],
            journald: false,
        };
        let handshake = "amiquip::io_loop::handshake_state";
        assert_eq!(logger.level_for(handshake), LevelFilter::Info);
        assert_eq!(logger.level_for("amiquipx"), LevelFilter::Trace);
        assert_eq!(logger.level_for("fib_rpc::client"), LevelFilter::Trace);
    }
}
