//! Synthetic SRTP publishers: each has its own socket (so its own 5-tuple and session
//! on the node) and keys, and sends VP8-shaped video on a fixed schedule.
//!
//! The schedule is a sequence of events spaced evenly in time, publishers in turn. Under
//! [`Shape::Batch`] an event is a whole frame sent back to back with one `sendmmsg` (what
//! a browser's pacer-less burst or a keyframe looks like to the SFU); under
//! [`Shape::Paced`] an event is one packet, so arrivals are evenly spread. Both shapes
//! offer the same packet rate.

use super::cpu::monotonic_ns;
use super::net::{Batch, SLOT};
use super::payload::PacketWriter;
use serde::Serialize;
use sluice_dataplane::router::SrtpKeys;
use sluice_dataplane::rtcp::{RtcpPacket, parse_compound};
use sluice_dataplane::srtp::SrtpContext;
use std::io;
use std::net::UdpSocket;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// A frame's worth of packets back to back (one sendmmsg), frames spread evenly.
    Batch,
    /// Packets evenly spread in time.
    Paced,
}

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Self::Batch => "batch",
            Self::Paced => "paced",
        }
    }
}

/// An event this far behind its time counts as late: the generator could not keep up.
const LATE_NS: u64 = 2_000_000;
/// Most events sent per poll, so sinks are drained between catch-up bursts.
const MAX_EVENTS_PER_POLL: usize = 16;

#[derive(Debug)]
pub struct Publisher {
    sock: UdpSocket,
    srtp: SrtpContext,
    /// For the RTCP the node sends back (reports, congestion feedback, PLI).
    srtcp_in: SrtpContext,
    writer: PacketWriter,
    keyframe_pending: bool,
    frame_pos: u32,
    feedback: Feedback,
}

/// RTCP a publisher received from the node.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Feedback {
    pub rtcp_packets: u64,
    pub keyframe_requests: u64,
    /// Datagrams that failed SRTCP authentication or parsing.
    pub rtcp_errors: u64,
}

fn srtp(keys: &SrtpKeys) -> io::Result<SrtpContext> {
    SrtpContext::new(keys.profile, &keys.key, &keys.salt)
        .map_err(|e| io::Error::other(format!("publisher keys: {e}")))
}

impl Publisher {
    /// `sock` must be connected to the node; `to_node` protects what the publisher
    /// sends, `from_node` what the node sends it.
    pub fn new(
        sock: UdpSocket,
        to_node: &SrtpKeys,
        from_node: &SrtpKeys,
        writer: PacketWriter,
    ) -> io::Result<Self> {
        Ok(Self {
            sock,
            srtp: srtp(to_node)?,
            srtcp_in: srtp(from_node)?,
            writer,
            keyframe_pending: true,
            frame_pos: 0,
            feedback: Feedback::default(),
        })
    }

    fn on_rtcp(&mut self, buf: &mut [u8]) {
        let f = &mut self.feedback;
        let Ok(n) = self.srtcp_in.unprotect_rtcp(buf) else {
            f.rtcp_errors += 1;
            return;
        };
        f.rtcp_packets += 1;
        for p in parse_compound(&buf[..n]) {
            match p {
                Ok(RtcpPacket::Pli(_) | RtcpPacket::Fir(_)) => {
                    self.keyframe_pending = true;
                    f.keyframe_requests += 1;
                }
                Ok(_) => {}
                Err(_) => {
                    f.rtcp_errors += 1;
                    break;
                }
            }
        }
    }

    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    /// Packets sent so far.
    pub fn sent(&self) -> u64 {
        self.writer.written()
    }

    /// Writes and encrypts the next packet into `slot`; returns its SRTP length.
    fn next_packet(&mut self, slot: &mut [u8], frame_packets: u32, now: u64) -> usize {
        let start = self.frame_pos == 0;
        let keyframe = start && self.keyframe_pending;
        if keyframe {
            self.keyframe_pending = false;
        }
        self.frame_pos += 1;
        let end = self.frame_pos >= frame_packets;
        if end {
            self.frame_pos = 0;
        }
        let n = self.writer.write(slot, start, keyframe, end, now);
        self.srtp
            .protect_rtp(slot, n)
            .expect("slot has room for the tag")
    }
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct GeneratorStats {
    pub sent: u64,
    /// Events sent more than 2 ms after their time.
    pub late_events: u64,
    pub max_lag_us: u64,
    pub send_errors: u64,
    /// RTCP the node sent the publishers (receiver reports, REMB, transport-wide CC
    /// feedback, keyframe requests).
    pub feedback: Feedback,
}

#[derive(Debug)]
pub struct Generator {
    pubs: Vec<Publisher>,
    shape: Shape,
    frame_packets: u32,
    batch: Batch,
    gap_ns: f64,
    start_ns: u64,
    event: u64,
    stats: GeneratorStats,
    scratch: Vec<u8>,
}

impl Generator {
    /// `ingress_pps` packets per second in all, from `pubs` in turn; frames of
    /// `frame_packets` packets.
    pub fn new(pubs: Vec<Publisher>, shape: Shape, frame_packets: u32, ingress_pps: f64) -> Self {
        let frame_packets = frame_packets.max(1);
        let per_event = match shape {
            Shape::Batch => frame_packets,
            Shape::Paced => 1,
        };
        Self {
            pubs,
            shape,
            frame_packets,
            batch: Batch::new(frame_packets as usize),
            gap_ns: f64::from(per_event) * 1e9 / ingress_pps.max(1.0),
            start_ns: 0,
            event: 0,
            stats: GeneratorStats::default(),
            scratch: vec![0; SLOT],
        }
    }

    pub fn publishers(&self) -> &[Publisher] {
        &self.pubs
    }

    pub fn stats(&self) -> GeneratorStats {
        let mut feedback = Feedback::default();
        for p in &self.pubs {
            feedback.rtcp_packets += p.feedback.rtcp_packets;
            feedback.keyframe_requests += p.feedback.keyframe_requests;
            feedback.rtcp_errors += p.feedback.rtcp_errors;
        }
        GeneratorStats {
            sent: self.pubs.iter().map(Publisher::sent).sum(),
            feedback,
            ..self.stats
        }
    }

    /// Starts the schedule at `now`.
    pub fn start(&mut self, now: u64) {
        self.start_ns = now;
        self.event = 0;
    }

    /// One single-packet keyframe from every publisher (to open subscriptions).
    pub fn send_keyframes(&mut self) -> io::Result<()> {
        let now = monotonic_ns();
        for p in &mut self.pubs {
            p.keyframe_pending = true;
            p.frame_pos = 0;
            let n = p.next_packet(self.batch.slot_mut(0), 1, now);
            self.batch.set_len(0, n);
            self.batch.send(&p.sock, 1)?;
        }
        Ok(())
    }

    /// Drains publisher `i`'s socket: what the node sends a publisher is SRTCP; a PLI or
    /// FIR makes its next frame a keyframe.
    pub fn on_readable(&mut self, i: usize) {
        let Some(p) = self.pubs.get_mut(i) else {
            return;
        };
        loop {
            // SAFETY: `scratch` is writable for its length; MSG_DONTWAIT never blocks.
            let n = unsafe {
                libc::recv(
                    std::os::fd::AsRawFd::as_raw_fd(&p.sock),
                    self.scratch.as_mut_ptr().cast(),
                    self.scratch.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                break;
            }
            p.on_rtcp(&mut self.scratch[..n as usize]);
        }
    }

    /// Sends every event due by `now`; returns the packets sent.
    pub fn poll(&mut self, now: u64) -> usize {
        let mut sent = 0;
        for _ in 0..MAX_EVENTS_PER_POLL {
            let due = self.start_ns + (self.event as f64 * self.gap_ns) as u64;
            if due > now {
                break;
            }
            let lag = now - due;
            if lag > LATE_NS {
                self.stats.late_events += 1;
            }
            self.stats.max_lag_us = self.stats.max_lag_us.max(lag / 1000);
            let idx = (self.event % self.pubs.len() as u64) as usize;
            self.event += 1;
            let n = match self.shape {
                Shape::Batch => self.frame_packets as usize,
                Shape::Paced => 1,
            };
            let p = &mut self.pubs[idx];
            for k in 0..n {
                let len = p.next_packet(self.batch.slot_mut(k), self.frame_packets, now);
                self.batch.set_len(k, len);
            }
            match self.batch.send(&p.sock, n) {
                Ok(k) => {
                    sent += k;
                    self.stats.send_errors += (n - k) as u64;
                }
                Err(_) => self.stats.send_errors += n as u64,
            }
        }
        sent
    }
}
