//! Receiver statistics of a publisher's stream (RFC 3550 A.1, A.3, A.8) and sender
//! counters of a subscription (RFC 3550 6.4.1).

use super::ntp_mid32;
use crate::engine::Micros;
use crate::rtcp::ReportBlock;

/// A.1: a jump of this many packets or more is not loss but a restart (or garbage)...
const MAX_DROPOUT: u16 = 3000;
/// ...and one this far behind is a late or duplicate packet.
const MAX_MISORDER: u16 = 100;
const SEQ_MOD: u32 = 1 << 16;

/// What one layer's receiver knows: sequence accounting, jitter, the last SR.
///
/// The A.1 probation is left out: a stream reaches here only after SRTP
/// authentication and an SSRC match, so its first packet already counts.
#[derive(Debug, Clone, Default)]
pub struct ReceiveStats {
    started: bool,
    max_seq: u16,
    /// Sequence number cycles, shifted left 16.
    cycles: u32,
    base_seq: u32,
    /// After a large jump: the number that would confirm the restart.
    bad_seq: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// Relative transit time of the previous packet, in RTP units.
    transit: Option<u32>,
    /// Interarrival jitter, scaled by 16 (A.8).
    jitter: u32,
    /// Middle 32 bits of the last SR's NTP time, and when it arrived.
    last_sr: Option<(u32, Micros)>,
}

impl ReceiveStats {
    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// One packet (not a retransmission) arrived at `now`.
    pub fn on_packet(&mut self, now: Micros, seq: u16, rtp_ts: u32, clock_rate: u32) {
        if !self.started {
            self.init_seq(seq);
            self.started = true;
        } else {
            let udelta = seq.wrapping_sub(self.max_seq);
            if udelta < MAX_DROPOUT {
                if seq < self.max_seq {
                    self.cycles = self.cycles.wrapping_add(SEQ_MOD);
                }
                self.max_seq = seq;
            } else if u32::from(udelta) <= SEQ_MOD - u32::from(MAX_MISORDER) {
                if u32::from(seq) == self.bad_seq {
                    // Two sequential packets after the jump: the sender restarted.
                    self.init_seq(seq);
                    self.transit = None;
                } else {
                    self.bad_seq = (u32::from(seq) + 1) & (SEQ_MOD - 1);
                    return;
                }
            }
            // Otherwise a duplicate or reordered packet: counted, no state change.
        }
        self.received = self.received.wrapping_add(1);
        // A.8, with arrival time in RTP units.
        let arrival = (u128::from(now) * u128::from(clock_rate) / 1_000_000) as u32;
        let transit = arrival.wrapping_sub(rtp_ts);
        if let Some(prev) = self.transit {
            let d = (transit.wrapping_sub(prev) as i32).unsigned_abs();
            self.jitter = self
                .jitter
                .wrapping_add(d)
                .wrapping_sub((self.jitter + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// A sender report for this stream arrived at `now`.
    pub fn on_sender_report(&mut self, now: Micros, ntp_time: u64) {
        self.last_sr = Some((ntp_mid32(ntp_time), now));
    }

    pub fn has_packets(&self) -> bool {
        self.started
    }

    pub fn extended_highest(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    /// Packets expected and lost so far (A.3); lost is negative with duplicates.
    pub fn cumulative(&self) -> (u32, i64) {
        let expected = self
            .extended_highest()
            .wrapping_sub(self.base_seq)
            .wrapping_add(1);
        (expected, i64::from(expected) - i64::from(self.received))
    }

    /// Interarrival jitter in RTP timestamp units.
    pub fn jitter(&self) -> u32 {
        self.jitter >> 4
    }

    /// The report block for `ssrc` at `now`; starts a new fraction-lost interval.
    pub fn report_block(&mut self, ssrc: u32, now: Micros) -> ReportBlock {
        let (expected, lost) = self.cumulative();
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            // DLSR in 1/65536 s.
            Some((lsr, at)) => (lsr, ((now.saturating_sub(at) << 16) / 1_000_000) as u32),
            None => (0, 0),
        };
        ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: lost.clamp(-0x80_0000, 0x7f_ffff) as i32,
            extended_highest_seq: self.extended_highest(),
            jitter: self.jitter(),
            last_sr,
            delay_since_last_sr,
        }
    }
}

/// What a subscription has sent, for its sender reports.
#[derive(Debug, Clone, Default)]
pub struct SendStats {
    pub packets: u32,
    /// Payload octets (RFC 3550: headers and padding not counted).
    pub octets: u32,
    /// Output timestamp of the newest frame and when its first packet went out.
    last_ts: Option<(u32, Micros)>,
}

impl SendStats {
    /// A packet went out on the subscription's SSRC; `ts` is its output timestamp, or
    /// `None` for a retransmission (whose timestamp is old).
    pub fn on_sent(&mut self, now: Micros, ts: Option<u32>, payload_len: usize) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
        if let Some(ts) = ts
            && self
                .last_ts
                .is_none_or(|(last, _)| (ts.wrapping_sub(last) as i32) > 0)
        {
            self.last_ts = Some((ts, now));
        }
    }

    /// The output RTP timestamp corresponding to `now`: the newest frame's, advanced by
    /// the time since its first packet left. `None` before anything was sent.
    pub fn rtp_time_at(&self, now: Micros, clock_rate: u32) -> Option<u32> {
        let (ts, at) = self.last_ts?;
        let ticks = u128::from(now.saturating_sub(at)) * u128::from(clock_rate) / 1_000_000;
        Some(ts.wrapping_add(ticks as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_accounting_across_a_wrap_with_loss_and_reorder() {
        let mut s = ReceiveStats::default();
        let mut now = 0;
        // 65530..=65535, 0..=9 with 2 and 3 lost, 5 arriving after 6.
        let seqs: Vec<u16> = (65530..=65535).chain([0, 1, 4, 6, 5, 7, 8, 9]).collect();
        for &seq in &seqs {
            now += 20_000;
            s.on_packet(now, seq, 0, 90_000);
        }
        assert_eq!(s.extended_highest(), (1 << 16) + 9);
        assert_eq!(s.cumulative(), (16, 2));
        let b = s.report_block(7, now);
        assert_eq!(b.fraction_lost, (2 * 256 / 16) as u8);
        assert_eq!(b.cumulative_lost, 2);
        // Next interval: no loss.
        for seq in 10..20 {
            now += 20_000;
            s.on_packet(now, seq, 0, 90_000);
        }
        let b = s.report_block(7, now);
        assert_eq!((b.fraction_lost, b.cumulative_lost), (0, 2));
        // A duplicate makes the interval's loss negative: fraction 0, cumulative down.
        s.on_packet(now, 19, 0, 90_000);
        let b = s.report_block(7, now);
        assert_eq!((b.fraction_lost, b.cumulative_lost), (0, 1));
    }

    #[test]
    fn restart_is_confirmed_by_two_sequential_packets() {
        let mut s = ReceiveStats::default();
        for seq in 100..110 {
            s.on_packet(0, seq, 0, 8000);
        }
        s.on_packet(0, 30_000, 0, 8000);
        assert_eq!(s.extended_highest(), 109, "one far packet is ignored");
        s.on_packet(0, 30_001, 0, 8000);
        assert_eq!(s.extended_highest(), 30_001);
        assert_eq!(s.cumulative(), (1, 0));
    }

    #[test]
    fn jitter_follows_a8() {
        let mut s = ReceiveStats::default();
        // 8 kHz clock, packets every 20 ms (160 ticks), arrival alternately 0 and +5 ms
        // late: |D| = 40 ticks each time after the first.
        let mut expect = 0f64;
        for i in 0..200u32 {
            let late = if i % 2 == 1 { 5_000 } else { 0 };
            s.on_packet(
                u64::from(i) * 20_000 + late,
                i as u16,
                i * 160 + 12345,
                8000,
            );
            if i > 0 {
                expect += (40.0 - expect) / 16.0;
            }
        }
        assert!(
            (f64::from(s.jitter()) - expect).abs() <= 1.0,
            "{}",
            s.jitter()
        );
        assert!(s.jitter() >= 38);
    }

    #[test]
    fn last_sr_and_delay() {
        let mut s = ReceiveStats::default();
        s.on_packet(0, 1, 0, 90_000);
        let ntp = 0x1234_5678_9abc_def0;
        s.on_sender_report(1_000_000, ntp);
        let b = s.report_block(1, 1_500_000);
        assert_eq!(b.last_sr, 0x5678_9abc);
        assert_eq!(b.delay_since_last_sr, 32_768);
    }

    #[test]
    fn send_stats_extrapolate_from_the_newest_frame() {
        let mut s = SendStats::default();
        assert_eq!(s.rtp_time_at(5, 90_000), None);
        s.on_sent(1_000_000, Some(9000), 100);
        s.on_sent(1_010_000, Some(9000), 100);
        // An old frame's retransmission does not move the reference.
        s.on_sent(1_020_000, None, 50);
        s.on_sent(1_030_000, Some(6000), 100);
        assert_eq!((s.packets, s.octets), (4, 350));
        assert_eq!(s.rtp_time_at(1_500_000, 90_000), Some(9000 + 45_000));
    }
}
