//! A sliding one-second byte meter in fixed buckets: adding is a division and an add,
//! reading sums ten numbers, and nothing allocates.

use sluice_dataplane::engine::Micros;

const WINDOW: Micros = 1_000_000;
const BUCKETS: usize = 10;
const BUCKET: Micros = WINDOW / BUCKETS as Micros;

#[derive(Debug, Clone, Default)]
pub struct RateMeter {
    bytes: [u64; BUCKETS],
    /// Bucket number (time / BUCKET) of the newest bucket written.
    newest: u64,
    first_at: Option<Micros>,
}

impl RateMeter {
    pub fn add(&mut self, now: Micros, bytes: usize) {
        let b = now / BUCKET;
        if self.first_at.is_none() {
            self.first_at = Some(now);
            self.newest = b;
        }
        if b > self.newest {
            let stale = (b - self.newest).min(BUCKETS as u64);
            for k in 1..=stale {
                self.bytes[((self.newest + k) % BUCKETS as u64) as usize] = 0;
            }
            self.newest = b;
        }
        // A clock that stepped back counts in the newest bucket.
        self.bytes[(self.newest % BUCKETS as u64) as usize] += bytes as u64;
    }

    /// Bits per second over the last second, or over the time since the first byte
    /// while that is shorter (but at least one bucket, so a first packet does not read
    /// as a huge rate).
    pub fn rate(&self, now: Micros) -> u64 {
        let Some(first) = self.first_at else {
            return 0;
        };
        let b = now / BUCKET;
        let oldest = b.saturating_sub(BUCKETS as u64 - 1);
        let sum: u64 = (oldest.max(self.newest.saturating_sub(BUCKETS as u64 - 1))
            ..=self.newest.min(b))
            .map(|id| self.bytes[(id % BUCKETS as u64) as usize])
            .sum();
        let window = (BUCKETS as u64 - 1) * BUCKET + now % BUCKET;
        let span = window.min(now.saturating_sub(first)).max(BUCKET);
        sum * 8 * 1_000_000 / span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate_young_rate_and_silence() {
        let mut m = RateMeter::default();
        assert_eq!(m.rate(0), 0);
        // 1250 bytes every 10 ms = 1 Mbit/s.
        for i in 0..300u64 {
            m.add(5_000_000 + i * 10_000, 1250);
        }
        let r = m.rate(5_000_000 + 2_995_000);
        assert!((990_000..=1_010_000).contains(&r), "{r}");
        // Young: the rate over the time since the first byte, not over a full second.
        let mut y = RateMeter::default();
        for i in 0..20u64 {
            y.add(i * 10_000, 1250);
        }
        let r = y.rate(200_000);
        assert!((900_000..=1_100_000).contains(&r), "{r}");
        // Two seconds of silence: nothing left in the window.
        assert_eq!(m.rate(5_000_000 + 5_100_000), 0);
    }
}
