//! Per-subscriber RTP rewriting: one outgoing SSRC whose sequence numbers stay
//! contiguous and whose timestamps stay monotonic whatever happens upstream (simulcast
//! layer switches, publisher restarts, jumps), so the subscriber's jitter buffer and its
//! SRTP rollover estimate never see a discontinuity.

pub mod vp8;

use crate::rtp::{Layout, RtpError, write};
use vp8::{Vp8Error, Vp8Rewriter};

/// An input sequence jump larger than this (either way) is a restart, not loss: beyond
/// it the receiver would NACK a storm of packets that never existed, and at 2^15 its
/// rollover estimate breaks. libwebrtc's NACK list is bounded at a similar size.
pub const MAX_SEQ_JUMP: u16 = 1000;

/// A timestamp jump larger than this many seconds of media clock (either way) within one
/// SSRC is a restart even when the sequence number looks plausible: a restarted sender
/// picks a new random timestamp, and only a restart moves it this far. A long pause is
/// caught too, which is harmless: the rebase advances by the wall time that passed.
pub const MAX_TS_JUMP_SECS: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("bad RTP packet: {0}")]
    Rtp(#[from] RtpError),
    #[error("bad VP8 payload: {0}")]
    Vp8(#[from] Vp8Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// The packet was rewritten in place and goes out with this sequence number.
    Forward { seq: u16, timestamp: u32 },
    /// A late packet from before the current mapping began (before a layer switch or an
    /// intentional skip): its number would collide with one already sent.
    DropStale,
}

#[derive(Debug, Clone, Copy)]
struct Mapping {
    ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
    /// First input sequence number the mapping covers.
    floor: u16,
    highest: u16,
    /// Input timestamp of the `highest` packet.
    highest_ts: u32,
}

impl Mapping {
    fn covers(&self, seq: u16) -> bool {
        (seq.wrapping_sub(self.floor) as i16) >= 0
    }
}

#[derive(Debug, Clone)]
pub struct RtpRewriter {
    out_ssrc: u32,
    clock_rate: u32,
    vp8: Option<Vp8Rewriter>,
    mapping: Option<Mapping>,
    /// Newest output (seq, timestamp, when sent in µs); `None` before the first packet,
    /// then holds the subscriber's initial values.
    last_out: (u16, u32, u64),
    started: bool,
}

impl RtpRewriter {
    /// `initial_seq`/`initial_ts` are the first values the subscriber sees (random, per
    /// RFC 3550). `vp8` enables picture-ID/TL0PICIDX continuity for VP8 payloads.
    pub fn new(
        out_ssrc: u32,
        clock_rate: u32,
        initial_seq: u16,
        initial_ts: u32,
        vp8: bool,
    ) -> Self {
        Self {
            out_ssrc,
            clock_rate: clock_rate.max(1),
            vp8: vp8.then(Vp8Rewriter::default),
            mapping: None,
            last_out: (initial_seq.wrapping_sub(1), initial_ts, 0),
            started: false,
        }
    }

    pub fn out_ssrc(&self) -> u32 {
        self.out_ssrc
    }

    /// Starts a new mapping so that input (`seq`, `ts`) follows the last output packet.
    fn rebase(&mut self, now_us: u64, ssrc: u32, seq: u16, ts: u32) {
        let (last_seq, last_ts, last_at) = self.last_out;
        let next_ts = if self.started {
            // Advance by the wall time since the last packet (at least one tick), so the
            // receiver's playout clock keeps running across the switch.
            let elapsed = now_us.saturating_sub(last_at);
            let ticks = (u128::from(elapsed) * u128::from(self.clock_rate) / 1_000_000).max(1);
            last_ts.wrapping_add(ticks as u32)
        } else {
            last_ts
        };
        self.mapping = Some(Mapping {
            ssrc,
            seq_offset: last_seq.wrapping_add(1).wrapping_sub(seq),
            ts_offset: next_ts.wrapping_sub(ts),
            floor: seq,
            highest: seq,
            highest_ts: ts,
        });
        if let Some(v) = &mut self.vp8 {
            v.switch_source();
        }
    }

    /// Rewrites the plaintext RTP packet `pkt` (an egress copy) in place.
    pub fn rewrite(&mut self, now_us: u64, pkt: &mut [u8]) -> Result<Rewrite, RewriteError> {
        let layout = Layout::parse(pkt)?;
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
        let ts = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
        let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
        match self.mapping {
            Some(m) if m.ssrc == ssrc => {
                let ahead = seq.wrapping_sub(m.highest);
                let seq_jump = ahead > MAX_SEQ_JUMP && ahead < 0u16.wrapping_sub(MAX_SEQ_JUMP);
                let max_ts = u64::from(MAX_TS_JUMP_SECS) * u64::from(self.clock_rate);
                let ts_jump =
                    u64::from((ts.wrapping_sub(m.highest_ts) as i32).unsigned_abs()) > max_ts;
                if seq_jump || ts_jump {
                    self.rebase(now_us, ssrc, seq, ts);
                } else if !m.covers(seq) {
                    return Ok(Rewrite::DropStale);
                }
            }
            _ => self.rebase(now_us, ssrc, seq, ts),
        }
        let m = self.mapping.as_mut().expect("mapping set above");
        if (seq.wrapping_sub(m.highest) as i16) > 0 {
            m.highest = seq;
            m.highest_ts = ts;
        }
        let out_seq = seq.wrapping_add(m.seq_offset);
        let out_ts = ts.wrapping_add(m.ts_offset);
        if let Some(v) = &mut self.vp8 {
            v.rewrite(&mut pkt[layout.header_len..layout.payload_end])?;
        }
        write::set_ssrc(pkt, self.out_ssrc)?;
        write::set_sequence_number(pkt, out_seq)?;
        write::set_timestamp(pkt, out_ts)?;
        if !self.started || (out_seq.wrapping_sub(self.last_out.0) as i16) > 0 {
            self.last_out = (out_seq, out_ts, now_us);
            self.started = true;
        }
        Ok(Rewrite::Forward {
            seq: out_seq,
            timestamp: out_ts,
        })
    }

    /// The caller chose not to forward the newest input packet (e.g. a temporal layer
    /// above the subscriber's target): close the gap it would leave. Packets older than
    /// it arriving later are dropped as stale rather than numbered twice.
    pub fn skip(&mut self, ssrc: u32, seq: u16) {
        if let Some(m) = &mut self.mapping
            && m.ssrc == ssrc
            && seq == m.highest.wrapping_add(1)
        {
            m.highest = seq;
            m.floor = seq.wrapping_add(1);
            m.seq_offset = m.seq_offset.wrapping_sub(1);
        }
    }

    /// Maps an outgoing sequence number (from a subscriber's NACK) back to the input
    /// (SSRC, sequence number) it was made from, if it belongs to the current mapping.
    pub fn original(&self, out_seq: u16) -> Option<(u32, u16)> {
        let m = self.mapping?;
        let seq = out_seq.wrapping_sub(m.seq_offset);
        let behind = m.highest.wrapping_sub(seq) as i16;
        (m.covers(seq) && behind >= 0).then_some((m.ssrc, seq))
    }
}

#[cfg(test)]
mod tests;
