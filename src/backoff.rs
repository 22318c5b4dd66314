//! Pacing for reconnect loops (the Streamable HTTP GET stream, the legacy SSE stream):
//! exponential, capped, with jitter, and reset only by a stream that proved healthy, so a
//! server that accepts and closes at once costs a few requests a minute, not a busy loop.
//! Also the bounded reading of `Retry-After`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// The longest `Retry-After` honoured (5 minutes): a server cannot park a reconnect for days,
/// and a value of any length parses without overflow.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Exponential backoff: `base`, `2·base`, `4·base`, … up to `max`, each with jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub const fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            failures: 0,
        }
    }

    /// The pause before the next attempt, and one more failure counted. "Equal jitter": a
    /// random point in the upper half of the exponential step, so bridges restarted together
    /// do not reconnect in lockstep, yet every pause grows.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32 << self.failures.min(20);
        let step = self.base.saturating_mul(factor).min(self.max);
        self.failures = self.failures.saturating_add(1);
        let half = step / 2;
        half + half.mul_f64(random_unit())
    }

    /// Back to the first step (after a stream that delivered something or stayed up).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// A `Retry-After` header in delta-seconds, capped at [`MAX_RETRY_AFTER`]. The HTTP-date form
/// and anything malformed are ignored (`None`): the caller's own backoff applies.
pub fn retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = v.bytes().fold(0u64, |acc, d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// 64 unpredictable bits from std's randomly keyed hasher (fresh keys per call): enough for
/// jitter and unique file names without a random-number crate.
pub fn random_u64() -> u64 {
    RandomState::new().build_hasher().finish()
}

/// A number in `[0, 1)`.
fn random_unit() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_with_jitter_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut steps = Vec::new();
        for _ in 0..40 {
            steps.push(b.next_delay());
        }
        for (n, d) in steps.iter().enumerate() {
            let step = Duration::from_millis(500)
                .saturating_mul(1 << n.min(20))
                .min(Duration::from_secs(30));
            assert!(
                *d >= step / 2 && *d <= step,
                "step {n}: {d:?} not in [{:?}, {step:?}]",
                step / 2
            );
        }
        assert!(steps[39] >= Duration::from_secs(15), "capped, still long");
        assert_eq!(b.failures(), 40);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(500));
    }

    #[test]
    fn retry_after_is_bounded_and_ignores_what_it_cannot_read() {
        assert_eq!(retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            retry_after("99999999999999999999999999"),
            Some(MAX_RETRY_AFTER)
        );
        for ignored in [
            "",
            "-1",
            "1.5",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "1e9",
            "NaN",
        ] {
            assert_eq!(retry_after(ignored), None, "{ignored:?}");
        }
    }

    #[test]
    fn random_values_differ() {
        assert_ne!(random_u64(), random_u64());
    }
}
