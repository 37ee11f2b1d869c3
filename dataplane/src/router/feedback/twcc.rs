//! Transport-wide congestion control, both ends.
//!
//! [`TwccReceiver`] records when a publisher's transport-wide numbered packets arrive
//! and writes the feedback its browser's send-side estimator runs on. [`TwccSender`]
//! remembers what we numbered toward a subscriber and turns its feedback into delivered
//! rate and loss samples for the [`super::Estimator`].

use crate::engine::Micros;
use crate::rtcp::{RtcpError, RtcpWriter, TransportCc};

/// Arrivals remembered per publisher session: far more than arrive between two
/// feedback packets at any sane rate (50 ms of 100 Mbit/s in 1200-byte packets is ~520).
pub const TWCC_RING: usize = 2048;
/// Statuses per feedback packet: keeps the worst case (two-byte deltas) under 1 KB.
pub const TWCC_MAX_STATUSES: usize = 400;
/// Sent packets remembered per subscriber session, for matching its feedback.
pub const TWCC_SEND_RING: usize = 2048;

/// Receive deltas are in 250 µs ticks, the reference time in 64 ms units (twcc.rs).
const TICK_US: Micros = 250;
const REFERENCE_US: Micros = 64_000;
const TICKS_PER_REFERENCE: i64 = 256;
/// Extended numbers start here, so that unwrapping below the first never underflows.
const EXT_START: u32 = 1 << 20;
const EMPTY: u32 = u32::MAX;

#[derive(Debug)]
pub struct TwccReceiver {
    /// Per slot: (extended sequence number, arrival).
    slots: Box<[(u32, Micros)]>,
    deltas: Box<[Option<i32>]>,
    highest: Option<u32>,
    /// First extended number not yet reported.
    next: u32,
    feedback_count: u8,
    /// SSRC of the newest numbered packet, for the feedback's media SSRC field.
    media_ssrc: u32,
}

impl Default for TwccReceiver {
    fn default() -> Self {
        Self {
            slots: vec![(EMPTY, 0); TWCC_RING].into_boxed_slice(),
            deltas: vec![None; TWCC_MAX_STATUSES].into_boxed_slice(),
            highest: None,
            next: 0,
            feedback_count: 0,
            media_ssrc: 0,
        }
    }
}

impl TwccReceiver {
    /// A packet numbered `seq` arrived at `now`.
    pub fn on_packet(&mut self, seq: u16, now: Micros, media_ssrc: u32) {
        let ext = match self.highest {
            None => EXT_START + u32::from(seq),
            Some(h) => h.wrapping_add_signed(i32::from(seq.wrapping_sub(h as u16) as i16)),
        };
        match self.highest {
            // A jump past the whole ring is a restart: what lay between is forgotten.
            Some(h) if ext > h && ext - h >= TWCC_RING as u32 => self.next = ext,
            None => self.next = ext,
            _ => {}
        }
        if ext < self.next {
            // Reported (as lost) already.
            return;
        }
        self.slots[ext as usize % TWCC_RING] = (ext, now);
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        self.media_ssrc = media_ssrc;
    }

    /// Whether packets arrived since the last feedback.
    pub fn pending(&self) -> bool {
        self.highest.is_some_and(|h| h >= self.next)
    }

    /// Appends one feedback packet for the oldest unreported packets, numbers missing
    /// from the range reported lost. Returns whether more are waiting.
    pub fn write(&mut self, w: &mut RtcpWriter<'_>, sender_ssrc: u32) -> Result<bool, RtcpError> {
        let Some(h) = self.highest else {
            return Ok(false);
        };
        if h < self.next {
            return Ok(false);
        }
        if h - self.next >= TWCC_RING as u32 {
            self.next = h + 1 - TWCC_RING as u32;
        }
        let last = h.min(self.next + TWCC_MAX_STATUSES as u32 - 1);
        let mut reference = None;
        let mut prev_ticks = 0i64;
        let mut n = 0;
        for ext in self.next..=last {
            let (e, at) = self.slots[ext as usize % TWCC_RING];
            let delta = if e == ext {
                let ticks = (at / TICK_US) as i64;
                if reference.is_none() {
                    let r = (at / REFERENCE_US) as i64;
                    reference = Some(r);
                    prev_ticks = r * TICKS_PER_REFERENCE;
                }
                let d = ticks - prev_ticks;
                if i16::try_from(d).is_err() {
                    // Over 8 s apart: the rest goes in the next packet, with its own
                    // reference time.
                    break;
                }
                prev_ticks = ticks;
                Some(d as i32)
            } else {
                None
            };
            self.deltas[n] = delta;
            n += 1;
        }
        let Some(r) = reference else {
            // Nothing in the range arrived (it was cut by the ring): skip it.
            self.next = last + 1;
            return Ok(self.pending());
        };
        // Signed 24 bits, as the format carries it.
        let r = (r & 0xff_ffff) as i32;
        let r = if r >= 1 << 23 { r - (1 << 24) } else { r };
        w.transport_cc(
            sender_ssrc,
            self.media_ssrc,
            self.next as u16,
            r,
            self.feedback_count,
            &self.deltas[..n],
        )?;
        self.next += n as u32;
        self.feedback_count = self.feedback_count.wrapping_add(1);
        Ok(self.pending())
    }
}

const FREE: u8 = 0;
const SENT: u8 = 1;
const LOST: u8 = 2;
const ACKED: u8 = 3;

#[derive(Debug, Clone, Copy, Default)]
struct Sent {
    seq: u16,
    state: u8,
    size: u16,
    at: Micros,
}

/// Delivered rate and loss over one window of a subscriber's feedback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TwccSample {
    /// Share of the window's packets reported lost, 0 to 1.
    pub loss: f64,
    /// Bits per second that arrived, over the window's receive-time span; `None` when
    /// the span was too short to say.
    pub delivered: Option<u64>,
    pub packets: u32,
    /// Send-time span of the window's acknowledged packets (diagnostics).
    pub send_span: Micros,
}

/// A sample covers at least this much of the subscriber's receive clock...
const SAMPLE_SPAN_US: i64 = 500_000;
/// ...or whatever came in this long, when little arrived.
const SAMPLE_MAX_AGE: Micros = 1_000_000;
/// Below this receive span a rate is noise.
const MIN_RATE_SPAN_US: i64 = 50_000;

#[derive(Debug, Default, Clone, Copy)]
struct Window {
    started: Option<Micros>,
    total: u32,
    lost: u32,
    bytes: u64,
    /// Earliest receive time with that packet's size, and the latest receive time.
    first: Option<(i64, u16)>,
    last: i64,
    sent_first: Option<Micros>,
    sent_last: Micros,
}

#[derive(Debug)]
pub struct TwccSender {
    slots: Box<[Sent]>,
    next_seq: u16,
    /// Unwrapped reference time (64 ms units) of the last feedback.
    last_reference: Option<i64>,
    window: Window,
}

impl Default for TwccSender {
    fn default() -> Self {
        Self {
            slots: vec![Sent::default(); TWCC_SEND_RING].into_boxed_slice(),
            next_seq: 0,
            last_reference: None,
            window: Window::default(),
        }
    }
}

impl TwccSender {
    /// The number the next stamped packet gets.
    pub fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// Packet `seq` (from [`Self::next_seq`]) of `size` bytes left at `now`.
    pub fn on_sent(&mut self, seq: u16, now: Micros, size: usize) {
        self.slots[usize::from(seq) % TWCC_SEND_RING] = Sent {
            seq,
            state: SENT,
            size: size.min(usize::from(u16::MAX)) as u16,
            at: now,
        };
        self.next_seq = seq.wrapping_add(1);
    }

    /// Takes one feedback packet; returns a sample when it completes a window.
    pub fn on_feedback(&mut self, now: Micros, fb: &TransportCc<'_>) -> Option<TwccSample> {
        let rt = i64::from(fb.reference_time);
        let reference = match self.last_reference {
            None => rt,
            Some(prev) => {
                let d = (rt - prev) & 0xff_ffff;
                prev + if d >= 1 << 23 { d - (1 << 24) } else { d }
            }
        };
        self.last_reference = Some(reference);
        let mut recv = reference * REFERENCE_US as i64;
        let win = &mut self.window;
        for status in fb.statuses() {
            if let Some(d) = status.delta {
                recv += i64::from(d) * TICK_US as i64;
            }
            let slot = &mut self.slots[usize::from(status.seq) % TWCC_SEND_RING];
            if slot.seq != status.seq || slot.state == FREE {
                continue;
            }
            match (status.delta, slot.state) {
                (Some(_), SENT | LOST) => {
                    if slot.state == LOST {
                        win.lost = win.lost.saturating_sub(1);
                    } else {
                        win.total += 1;
                    }
                    slot.state = ACKED;
                    win.bytes += u64::from(slot.size);
                    if win.first.is_none_or(|(t, _)| recv < t) {
                        win.first = Some((recv, slot.size));
                    }
                    win.last = win.last.max(recv);
                    if win.sent_first.is_none_or(|t| slot.at < t) {
                        win.sent_first = Some(slot.at);
                    }
                    win.sent_last = win.sent_last.max(slot.at);
                }
                (None, SENT) => {
                    slot.state = LOST;
                    win.lost += 1;
                    win.total += 1;
                }
                _ => {}
            }
        }
        if win.total == 0 {
            return None;
        }
        let started = *win.started.get_or_insert(now);
        let span = win.first.map_or(0, |(t, _)| win.last - t);
        if span < SAMPLE_SPAN_US && now.saturating_sub(started) < SAMPLE_MAX_AGE {
            return None;
        }
        let delivered = win
            .first
            .filter(|_| span >= MIN_RATE_SPAN_US)
            .map(|(_, size)| {
                // Bytes after the first arrival, over the time they took to arrive.
                (win.bytes - u64::from(size)) * 8 * 1_000_000 / span as u64
            });
        let sample = TwccSample {
            loss: f64::from(win.lost) / f64::from(win.total),
            delivered,
            packets: win.total,
            send_span: win
                .sent_first
                .map_or(0, |t| win.sent_last.saturating_sub(t)),
        };
        *win = Window::default();
        Some(sample)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtcp::{RtcpPacket, TwccStatus};

    fn parse(buf: &[u8]) -> TransportCc<'_> {
        match RtcpPacket::parse(buf).unwrap() {
            RtcpPacket::TransportCc(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn feedback_covers_the_range_with_losses_and_counts_up() {
        let mut r = TwccReceiver::default();
        let t0 = 10 * REFERENCE_US + 1_000;
        // 65534, 65535, 0, (1 lost), 2, 4 then 3 late, 5 arrives 1 ms apart each.
        for (i, seq) in [65534u16, 65535, 0, 2, 4, 3, 5].into_iter().enumerate() {
            r.on_packet(seq, t0 + i as u64 * 1_000, 0xfeed);
        }
        assert!(r.pending());
        let mut buf = [0u8; 1500];
        let mut w = RtcpWriter::new(&mut buf);
        assert!(!r.write(&mut w, 0x51).unwrap());
        let n = w.finish();
        let fb = parse(&buf[..n]);
        assert_eq!((fb.sender_ssrc, fb.media_ssrc), (0x51, 0xfeed));
        assert_eq!(
            (fb.base_seq, fb.status_count, fb.feedback_count),
            (65534, 8, 0)
        );
        assert_eq!(fb.reference_time, 10);
        // 1 ms = 4 ticks; the first arrived 1 ms after the reference time. 3 arrived
        // 2 ms after 2, and 4 (reported next) 1 ms before 3: a negative delta.
        let want = [
            (65534, Some(4)),
            (65535, Some(4)),
            (0, Some(4)),
            (1, None),
            (2, Some(4)),
            (3, Some(8)),
            (4, Some(-4)),
            (5, Some(8)),
        ]
        .map(|(seq, delta)| TwccStatus { seq, delta });
        assert_eq!(fb.statuses().collect::<Vec<_>>(), want);
        assert!(!r.pending());
        // The next packet gets the next feedback, counted up; a straggler from the
        // reported range stays reported lost.
        r.on_packet(6, t0 + 10_000, 0xfeed);
        r.on_packet(1, t0 + 10_000, 0xfeed); // too late, already reported lost
        let mut w = RtcpWriter::new(&mut buf);
        r.write(&mut w, 0x51).unwrap();
        let n = w.finish();
        let fb = parse(&buf[..n]);
        assert_eq!((fb.base_seq, fb.status_count, fb.feedback_count), (6, 1, 1));
    }

    #[test]
    fn long_ranges_split_and_far_gaps_restart() {
        let mut r = TwccReceiver::default();
        for seq in 0..1000u16 {
            r.on_packet(seq, 1_000_000 + u64::from(seq) * 100, 1);
        }
        let mut buf = [0u8; 1500];
        let mut total = 0;
        let mut packets = 0;
        loop {
            let mut w = RtcpWriter::new(&mut buf);
            let more = r.write(&mut w, 9).unwrap();
            let n = w.finish();
            assert!(n < 1100);
            let fb = parse(&buf[..n]);
            assert_eq!(fb.base_seq as usize, total);
            total += usize::from(fb.status_count);
            packets += 1;
            if !more {
                break;
            }
        }
        assert_eq!((total, packets), (1000, 3));
        // An arrival 9 s after the previous one goes in a packet of its own.
        r.on_packet(1000, 1_100_000, 1);
        r.on_packet(1001, 10_100_000, 1);
        let mut w = RtcpWriter::new(&mut buf);
        assert!(r.write(&mut w, 9).unwrap());
        let mut w2 = RtcpWriter::new(&mut buf);
        assert!(!r.write(&mut w2, 9).unwrap());
        let n = w2.finish();
        assert_eq!(parse(&buf[..n]).base_seq, 1001);
        // A jump of 30000: no flood of lost statuses.
        r.on_packet(31_001, 10_200_000, 1);
        let mut w = RtcpWriter::new(&mut buf);
        assert!(!r.write(&mut w, 9).unwrap());
        let n = w.finish();
        assert_eq!(parse(&buf[..n]).status_count, 1);
    }

    /// Feedback as a subscriber would write it: `arrivals[i]` is packet `base + i`'s
    /// receive time in µs, or `None`.
    fn feedback(base: u16, arrivals: &[Option<u64>], buf: &mut [u8]) -> usize {
        let first = arrivals.iter().flatten().next().copied().unwrap();
        let reference = first / REFERENCE_US;
        let mut prev = reference * REFERENCE_US / TICK_US;
        let deltas: Vec<Option<i32>> = arrivals
            .iter()
            .map(|a| {
                a.map(|t| {
                    let d = (t / TICK_US) as i32 - prev as i32;
                    prev = t / TICK_US;
                    d
                })
            })
            .collect();
        let mut w = RtcpWriter::new(buf);
        w.transport_cc(1, 2, base, reference as i32, 0, &deltas)
            .unwrap();
        w.finish()
    }

    #[test]
    fn sender_samples_delivered_rate_and_loss() {
        let mut s = TwccSender::default();
        // 100 packets of 1000 bytes, one per 10 ms (800 kbit/s); every 10th lost.
        let mut arrivals = Vec::new();
        for i in 0..100u16 {
            let seq = s.next_seq();
            assert_eq!(seq, i);
            s.on_sent(seq, u64::from(i) * 10_000, 1000);
            arrivals.push((i % 10 != 9).then_some(20_000 + u64::from(i) * 10_000));
        }
        let mut buf = [0u8; 1500];
        // Two feedback packets of 50: the first spans 480 ms, too short for a sample.
        let n = feedback(0, &arrivals[..50], &mut buf);
        assert_eq!(s.on_feedback(500_000, &parse(&buf[..n])), None);
        let n = feedback(50, &arrivals[50..], &mut buf);
        let sample = s.on_feedback(1_000_000, &parse(&buf[..n])).unwrap();
        assert_eq!(sample.packets, 100);
        assert!((sample.loss - 0.1).abs() < 1e-9);
        // 89 packets after the first arrived over 980 ms.
        assert_eq!(sample.delivered, Some(89 * 8000 * 1_000_000 / 980_000));
        // Reports on unknown or already-acked packets change nothing.
        let n = feedback(0, &arrivals[..20], &mut buf);
        assert_eq!(s.on_feedback(3_000_000, &parse(&buf[..n])), None);
    }
}
