//! The wall clock, behind a seam where a test needs to move time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// Milliseconds since the Unix epoch, by the wall clock.
pub fn now_ms() -> i64 {
    SystemClock.now_ms()
}

/// A duration setting (`"15m"`, `"30s"`): `default` when absent; a malformed one is reported
/// in `errors` under `key` (configuration reports every problem at once).
pub fn duration_setting(
    key: &str,
    value: Option<&str>,
    default: Duration,
    errors: &mut Vec<String>,
) -> Duration {
    match value.map(humantime::parse_duration) {
        None => default,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            errors.push(format!("{key}: {e}"));
            default
        }
    }
}
