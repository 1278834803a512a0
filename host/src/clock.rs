//! Time as the host and its plugins see it. Everything that waits or
//! stamps takes time from a [`Clock`], so tests and simulations can run
//! hours of campaign in seconds.

use std::sync::atomic::{AtomicU64, Ordering};

/// GPS epoch (1980-01-06T00:00:00Z) in Unix seconds.
pub const GPS_EPOCH_UNIX_S: u64 = 315_964_800;
/// GPS − UTC offset in seconds (leap seconds since 1980; 18 since 2017).
pub const GPS_LEAP_SECONDS: u64 = 18;

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_unix_ms(&self) -> u64;

    /// Whole GPS seconds, as sent on the air.
    fn now_gps_seconds(&self) -> u64 {
        unix_ms_to_gps_seconds(self.now_unix_ms())
    }

    /// Real time to wait until this clock reads `unix_ms`.
    fn real_wait_until(&self, unix_ms: u64) -> std::time::Duration {
        std::time::Duration::from_millis(unix_ms.saturating_sub(self.now_unix_ms()))
    }
}

pub fn unix_ms_to_gps_seconds(unix_ms: u64) -> u64 {
    (unix_ms / 1000).saturating_sub(GPS_EPOCH_UNIX_S) + GPS_LEAP_SECONDS
}

pub fn gps_seconds_to_unix_ms(gps: u64) -> u64 {
    (gps + GPS_EPOCH_UNIX_S).saturating_sub(GPS_LEAP_SECONDS) * 1000
}

/// The machine's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_ms(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }
}

/// A clock that moves only when told to (tests, simulations).
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(unix_ms: u64) -> Self {
        Self(AtomicU64::new(unix_ms))
    }
    pub fn advance_ms(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Move to `unix_ms` if that is later; time never goes back.
    pub fn advance_to(&self, unix_ms: u64) {
        self.0.fetch_max(unix_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Wall-clock time sped up `speed` times from `origin_unix_ms`: at that
/// real instant it reads the real time, then runs faster. Two processes
/// given the same origin and speed agree on the time, so a server and a
/// simulated fleet in another process can run hours of campaign in minutes,
/// and a restarted server continues the same timeline.
pub struct ScaledClock {
    origin_unix_ms: u64,
    speed: f64,
}

impl ScaledClock {
    pub fn new(origin_unix_ms: u64, speed: f64) -> Self {
        Self { origin_unix_ms, speed: speed.max(f64::MIN_POSITIVE) }
    }
}

impl Clock for ScaledClock {
    fn now_unix_ms(&self) -> u64 {
        let real = SystemClock.now_unix_ms() as f64 - self.origin_unix_ms as f64;
        (self.origin_unix_ms as f64 + real * self.speed).max(0.0) as u64
    }

    fn real_wait_until(&self, unix_ms: u64) -> std::time::Duration {
        let ahead = unix_ms.saturating_sub(self.now_unix_ms()) as f64;
        std::time::Duration::from_micros((ahead * 1000.0 / self.speed).ceil() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gps_time_counts_from_1980_with_leap_seconds() {
        // 2024-01-01T00:00:00Z is GPS second 1388102418.
        assert_eq!(unix_ms_to_gps_seconds(1_704_067_200_000), 1_388_102_418);
        let c = ManualClock::new(1_000);
        c.advance_ms(500);
        assert_eq!(c.now_unix_ms(), 1_500);
    }

    #[test]
    fn a_scaled_clock_runs_faster_and_waits_less() {
        let origin = SystemClock.now_unix_ms() - 1_000;
        let c = ScaledClock::new(origin, 100.0);
        // A second of real time since the origin reads as 100 s.
        let ahead = c.now_unix_ms() - origin;
        assert!((100_000..110_000).contains(&ahead), "{ahead}");
        let wait = c.real_wait_until(c.now_unix_ms() + 50_000);
        assert!(wait <= std::time::Duration::from_millis(500) && wait >= std::time::Duration::from_millis(490), "{wait:?}");
    }
}
