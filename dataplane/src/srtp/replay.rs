//! Packet index estimation (RFC 3711 3.3.1, appendix A) and the replay window (3.3.2).

/// How far behind the highest authenticated index a packet may arrive and still be
/// accepted. RFC 3711 asks for at least 64; video bursts reorder more than that.
pub const REPLAY_WINDOW: u64 = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    Fresh,
    Replayed,
    TooOld,
}

/// Sliding window over 48-bit SRTP (or 31-bit SRTCP) indices.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReplayWindow {
    /// Highest index accepted, if any.
    top: Option<u64>,
    /// Bit i set: index `top - i` was accepted.
    seen: u128,
}

impl ReplayWindow {
    #[inline]
    pub(crate) fn check(&self, index: u64) -> Replay {
        let Some(top) = self.top else {
            return Replay::Fresh;
        };
        if index > top {
            return Replay::Fresh;
        }
        let age = top - index;
        if age >= REPLAY_WINDOW {
            Replay::TooOld
        } else if self.seen & (1u128 << age) != 0 {
            Replay::Replayed
        } else {
            Replay::Fresh
        }
    }

    /// Records an index that passed `check` and authentication.
    #[inline]
    pub(crate) fn accept(&mut self, index: u64) {
        match self.top {
            Some(top) if index <= top => self.seen |= 1u128 << (top - index),
            Some(top) => {
                let shift = index - top;
                self.seen = if shift >= REPLAY_WINDOW {
                    0
                } else {
                    self.seen << shift
                };
                self.seen |= 1;
                self.top = Some(index);
            }
            None => {
                self.seen = 1;
                self.top = Some(index);
            }
        }
    }
}

/// Rollover-counter bookkeeping for one SSRC: the highest sequence number seen (s_l)
/// and the ROC that goes with it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rollover {
    pub roc: u32,
    pub s_l: u16,
    pub started: bool,
}

impl Rollover {
    /// The ROC the sender most likely used for `seq` (RFC 3711 appendix A). `None` when
    /// the guess would be before the very first index (ROC -1).
    #[inline]
    pub(crate) fn estimate(&self, seq: u16) -> Option<u32> {
        if !self.started {
            return Some(self.roc);
        }
        let (s_l, seq32) = (i32::from(self.s_l), i32::from(seq));
        if s_l < 32768 {
            if seq32 - s_l > 32768 {
                self.roc.checked_sub(1)
            } else {
                Some(self.roc)
            }
        } else if s_l - 32768 > seq32 {
            self.roc.checked_add(1)
        } else {
            Some(self.roc)
        }
    }

    /// Advances (s_l, ROC) after a packet with (`roc`, `seq`) was authenticated.
    #[inline]
    pub(crate) fn update(&mut self, roc: u32, seq: u16) {
        if !self.started || roc > self.roc || (roc == self.roc && seq > self.s_l) {
            self.roc = roc;
            self.s_l = seq;
            self.started = true;
        }
    }
}

#[inline]
pub(crate) fn index(roc: u32, seq: u16) -> u64 {
    (u64::from(roc) << 16) | u64::from(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_rejects_replays_and_ancient_packets() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.check(1000), Replay::Fresh);
        w.accept(1000);
        assert_eq!(w.check(1000), Replay::Replayed);
        assert_eq!(w.check(999), Replay::Fresh);
        w.accept(999);
        assert_eq!(w.check(999), Replay::Replayed);
        assert_eq!(w.check(1000 - REPLAY_WINDOW), Replay::TooOld);
        assert_eq!(w.check(1000 - REPLAY_WINDOW + 1), Replay::Fresh);
        w.accept(1000 + 500);
        assert_eq!(w.check(1000), Replay::TooOld);
        assert_eq!(w.check(1500), Replay::Replayed);
        assert_eq!(w.check(1499), Replay::Fresh);
    }

    #[test]
    fn rollover_follows_wrap_and_reordering() {
        let mut r = Rollover::default();
        r.update(0, 65_530);
        assert_eq!(r.estimate(65_535), Some(0));
        assert_eq!(r.estimate(2), Some(1));
        r.update(1, 2);
        // A late packet from before the wrap belongs to the previous ROC.
        assert_eq!(r.estimate(65_534), Some(0));
        assert_eq!(r.estimate(100), Some(1));
        let mut fresh = Rollover::default();
        fresh.update(0, 10);
        assert_eq!(fresh.estimate(60_000), None, "ROC -1 does not exist");
    }
}
