//! Clocks: the real one, a sped-up one for `waymark dev --speed`, and a manual one for tests and
//! simulation. The engine never reads a clock; the runtime passes it the time.

use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

impl<T: Clock + ?Sized> Clock for Arc<T> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Time that runs `speed` times faster than real time from the moment it was made.
#[derive(Debug, Clone)]
pub struct ScaledClock {
    origin: Timestamp,
    started: std::time::Instant,
    speed: f64,
}

impl ScaledClock {
    pub fn new(origin: Timestamp, speed: f64) -> Self {
        ScaledClock {
            origin,
            started: std::time::Instant::now(),
            speed: speed.max(0.0),
        }
    }

    /// Real time to sleep for `d` of this clock's time.
    pub fn real(&self, d: SignedDuration) -> std::time::Duration {
        let secs = d.as_secs_f64().max(0.0) / self.speed.max(f64::MIN_POSITIVE);
        std::time::Duration::from_secs_f64(secs.min(86_400.0))
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> Timestamp {
        let real = self.started.elapsed().as_secs_f64() * self.speed;
        let d = SignedDuration::from_secs_f64(real.min(1e12));
        self.origin.checked_add(d).unwrap_or(self.origin)
    }
}

/// A clock that moves only when told: for tests and `waymark simulate`.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<Timestamp>>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            now: Arc::new(Mutex::new(start)),
        }
    }

    pub fn set(&self, t: Timestamp) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }

    pub fn advance(&self, d: SignedDuration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now = now.checked_add(d).unwrap_or(*now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}
