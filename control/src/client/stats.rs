//! Counters the client keeps, and per-SSRC receive tracking (sequence continuity, loss,
//! reordering, duplicates) for a subscriber, sans-IO.

use std::collections::BTreeSet;

/// RTCP packets received, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtcpCounts {
    pub sender_reports: u64,
    pub receiver_reports: u64,
    pub sdes: u64,
    pub bye: u64,
    pub nack: u64,
    pub pli: u64,
    pub fir: u64,
    pub remb: u64,
    pub transport_cc: u64,
    pub other: u64,
    /// Compound packets that failed to parse part-way.
    pub malformed: u64,
}

impl RtcpCounts {
    /// Counts every packet of a decrypted compound RTCP datagram; returns the parsed
    /// packets' NACKed sequence numbers per media SSRC (for a sender to resend).
    pub fn count(&mut self, compound: &[u8]) -> Vec<(u32, Vec<u16>)> {
        use sluice_dataplane::rtcp::{RtcpPacket, parse_compound};
        let mut nacks = Vec::new();
        for p in parse_compound(compound) {
            match p {
                Ok(RtcpPacket::SenderReport(_)) => self.sender_reports += 1,
                Ok(RtcpPacket::ReceiverReport(_)) => self.receiver_reports += 1,
                Ok(RtcpPacket::Sdes(_)) => self.sdes += 1,
                Ok(RtcpPacket::Bye(_)) => self.bye += 1,
                Ok(RtcpPacket::Nack(n)) => {
                    self.nack += 1;
                    nacks.push((n.media_ssrc, n.lost().take(256).collect()));
                }
                Ok(RtcpPacket::Pli(_)) => self.pli += 1,
                Ok(RtcpPacket::Fir(_)) => self.fir += 1,
                Ok(RtcpPacket::Remb(_)) => self.remb += 1,
                Ok(RtcpPacket::TransportCc(_)) => self.transport_cc += 1,
                Ok(RtcpPacket::Other { .. }) => self.other += 1,
                Err(_) => self.malformed += 1,
            }
        }
        nacks
    }
}

/// Most sequence numbers remembered as missing per stream; older ones are given up.
const MAX_MISSING: usize = 4096;

/// One received RTP stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub ssrc: u32,
    pub payload_type: u8,
    /// The MID / RID header extension values last seen, if negotiated and present.
    pub mid: Option<String>,
    pub rid: Option<String>,
    /// Distinct packets received (retransmissions that filled a gap included).
    pub packets: u64,
    pub payload_bytes: u64,
    /// Extended (with wrap count) sequence numbers of the first and highest packet.
    pub first_seq: u64,
    pub highest_seq: u64,
    /// Packets that arrived after a later one (each filled a gap).
    pub out_of_order: u64,
    /// Packets received twice.
    pub duplicates: u64,
    /// Sequence numbers skipped at some point (gaps opened), and still missing now.
    pub gaps: u64,
    pub missing_now: u64,
    /// Packets that arrived as RTX (RFC 4588) and were unwrapped.
    pub rtx: u64,
    pub keyframes: u64,
    /// A packet that jumped more than half the sequence space: counted, not tracked.
    pub wild: u64,
}

/// Receive tracking of one stream.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    pub stats: StreamStats,
    started: bool,
    missing: BTreeSet<u64>,
    /// Missing numbers already NACKed, and how often.
    nacked: BTreeSet<(u64, u8)>,
}

/// Whether a packet was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    InOrder,
    /// Later than its successors; it filled a gap.
    Late,
    Duplicate,
    /// Too far from anything seen to place.
    Wild,
}

impl SeqTracker {
    pub fn new(ssrc: u32) -> Self {
        Self {
            stats: StreamStats {
                ssrc,
                ..StreamStats::default()
            },
            ..Self::default()
        }
    }

    /// Places `seq` in the stream's extended sequence space and updates the counters.
    pub fn receive(&mut self, seq: u16) -> Arrival {
        let s = &mut self.stats;
        if !self.started {
            self.started = true;
            // Start one wrap up so that a packet just before the first stays positive.
            let ext = (1 << 16) | u64::from(seq);
            s.first_seq = ext;
            s.highest_seq = ext;
            s.packets = 1;
            return Arrival::InOrder;
        }
        let highest = s.highest_seq;
        let delta = seq.wrapping_sub(highest as u16);
        let arrival = if delta == 0 {
            s.duplicates += 1;
            Arrival::Duplicate
        } else if delta < 0x8000 {
            let ext = highest + u64::from(delta);
            for m in highest + 1..ext {
                if self.missing.len() >= MAX_MISSING {
                    self.missing.pop_first();
                }
                self.missing.insert(m);
            }
            s.gaps += u64::from(delta) - 1;
            s.highest_seq = ext;
            s.packets += 1;
            Arrival::InOrder
        } else {
            let back = u64::from(0u16.wrapping_sub(delta));
            match highest.checked_sub(back) {
                Some(ext) if self.missing.remove(&ext) => {
                    s.out_of_order += 1;
                    s.packets += 1;
                    Arrival::Late
                }
                Some(ext) if ext >= s.first_seq => {
                    s.duplicates += 1;
                    Arrival::Duplicate
                }
                _ => {
                    s.wild += 1;
                    Arrival::Wild
                }
            }
        };
        s.missing_now = self.missing.len() as u64;
        arrival
    }

    /// Missing sequence numbers to NACK now: each at most `max_tries` times, oldest
    /// first, at most `limit`.
    pub fn nack_list(&mut self, max_tries: u8, limit: usize) -> Vec<u16> {
        let mut out = Vec::new();
        for &m in &self.missing {
            if out.len() >= limit {
                break;
            }
            let tries = self
                .nacked
                .range((m, 0)..=(m, u8::MAX))
                .next()
                .map_or(0, |&(_, t)| t);
            if tries >= max_tries {
                continue;
            }
            self.nacked.remove(&(m, tries));
            self.nacked.insert((m, tries + 1));
            out.push(m as u16);
        }
        // Forget NACK history of numbers no longer missing.
        let missing = &self.missing;
        self.nacked.retain(|(m, _)| missing.contains(m));
        out
    }

    /// RFC 3550 cumulative loss: expected minus received (negative with duplicates is
    /// not possible here, duplicates are not counted as received).
    pub fn cumulative_lost(&self) -> i64 {
        let expected = self.stats.highest_seq - self.stats.first_seq + 1;
        expected as i64 - self.stats.packets as i64
    }

    /// The highest sequence number with its wrap count, as a report block carries it.
    pub fn extended_highest(&self) -> u32 {
        // Our extended numbers start one wrap up (see `receive`).
        (self.stats.highest_seq - (1 << 16)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_across_the_wrap() {
        let mut t = SeqTracker::new(1);
        for i in 0..100u16 {
            assert_eq!(t.receive(65500u16.wrapping_add(i)), Arrival::InOrder);
        }
        let s = &t.stats;
        assert_eq!(s.packets, 100);
        assert_eq!(
            (s.gaps, s.out_of_order, s.duplicates, s.missing_now),
            (0, 0, 0, 0)
        );
        assert_eq!(t.cumulative_lost(), 0);
        assert_eq!(t.extended_highest(), (1 << 16) + 63);
    }

    #[test]
    fn gaps_late_arrivals_and_duplicates() {
        let mut t = SeqTracker::new(1);
        t.receive(10);
        t.receive(13); // 11, 12 missing
        assert_eq!(t.stats.gaps, 2);
        assert_eq!(t.stats.missing_now, 2);
        assert_eq!(t.nack_list(2, 10), vec![11, 12]);
        assert_eq!(t.receive(12), Arrival::Late);
        assert_eq!(t.receive(12), Arrival::Duplicate);
        assert_eq!(t.receive(13), Arrival::Duplicate);
        assert_eq!(t.stats.missing_now, 1);
        assert_eq!(t.cumulative_lost(), 1);
        assert_eq!(t.nack_list(2, 10), vec![11]);
        assert!(t.nack_list(2, 10).is_empty(), "two tries each");
        assert_eq!(t.receive(40000), Arrival::Wild);
        assert_eq!(t.stats.packets, 3);
    }

    #[test]
    fn rtcp_counts_by_kind() {
        use sluice_dataplane::rtcp::RtcpWriter;
        let mut buf = [0u8; 256];
        let mut w = RtcpWriter::new(&mut buf);
        w.receiver_report(1, &[]).unwrap();
        w.pli(1, 2).unwrap();
        w.nack(1, 2, [5u16, 7]).unwrap();
        let n = w.finish();
        let mut c = RtcpCounts::default();
        let nacks = c.count(&buf[..n]);
        assert_eq!((c.receiver_reports, c.pli, c.nack), (1, 1, 1));
        assert_eq!(nacks, vec![(2, vec![5, 7])]);
    }
}
