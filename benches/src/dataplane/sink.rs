//! Synthetic subscribers: one UDP socket each, all drained by one thread with
//! non-blocking `recvmmsg` on the sockets an `epoll_wait(0)` reports (busy-polling, so
//! no sender ever pays for waking a sleeping receiver, whichever node is under test).
//!
//! Every packet's RTP sequence number (in clear) is checked for continuity. One packet
//! in `verify_every` is also decrypted and its bench block checked (magic, checksum,
//! publisher, and its 64-bit sequence number against the RTP one), and gives a latency
//! sample.

use super::hist::Histogram;
use super::net::Batch;
use super::payload::{HEADER_LEN, verify};
use serde::Serialize;
use sluice_dataplane::router::SrtpKeys;
use sluice_dataplane::rtcp::parse_compound;
use sluice_dataplane::rtp::RtpPacket;
use sluice_dataplane::srtp::SrtpContext;
use std::io;
use std::net::UdpSocket;

#[derive(Debug)]
pub struct Sink {
    sock: UdpSocket,
    srtp: SrtpContext,
    publisher: u32,
    ssrc: u32,
    last_seq: Option<u16>,
    /// RTP sequence number minus the 64-bit bench sequence number (mod 2^16): constant
    /// for a contiguous stream.
    offset: Option<u16>,
    sample: u32,
    counts: SinkCounts,
}

/// Counters of one sink or, summed, of all.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SinkCounts {
    pub received: u64,
    /// Packets missing from the RTP sequence (holes seen so far).
    pub seq_gaps: u64,
    /// Duplicated or reordered packets, and packets of the wrong SSRC.
    pub seq_errors: u64,
    pub verified: u64,
    /// Failed decryption, a damaged bench block, the wrong publisher, or an RTP
    /// sequence number that does not follow the publisher's numbering.
    pub verify_errors: u64,
    /// Of those: SRTP authentication failed, or the numbering did not follow.
    pub decrypt_errors: u64,
    pub numbering_errors: u64,
    pub bytes: u64,
    /// SRTCP from the node (the router's sender reports), and those that failed
    /// authentication or parsing. Not counted in `received`.
    pub rtcp: u64,
    pub rtcp_errors: u64,
}

impl SinkCounts {
    fn add(&mut self, o: &Self) {
        self.received += o.received;
        self.seq_gaps += o.seq_gaps;
        self.seq_errors += o.seq_errors;
        self.verified += o.verified;
        self.verify_errors += o.verify_errors;
        self.decrypt_errors += o.decrypt_errors;
        self.numbering_errors += o.numbering_errors;
        self.bytes += o.bytes;
        self.rtcp += o.rtcp;
        self.rtcp_errors += o.rtcp_errors;
    }

    /// `self - earlier`, counter by counter.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            received: self.received - earlier.received,
            seq_gaps: self.seq_gaps - earlier.seq_gaps,
            seq_errors: self.seq_errors - earlier.seq_errors,
            verified: self.verified - earlier.verified,
            verify_errors: self.verify_errors - earlier.verify_errors,
            decrypt_errors: self.decrypt_errors - earlier.decrypt_errors,
            numbering_errors: self.numbering_errors - earlier.numbering_errors,
            bytes: self.bytes - earlier.bytes,
            rtcp: self.rtcp - earlier.rtcp,
            rtcp_errors: self.rtcp_errors - earlier.rtcp_errors,
        }
    }
}

impl Sink {
    /// A sink of `publisher`'s stream, arriving as SSRC `ssrc` under `keys`.
    pub fn new(sock: UdpSocket, publisher: u32, ssrc: u32, keys: &SrtpKeys) -> io::Result<Self> {
        sock.set_nonblocking(true)?;
        let srtp = SrtpContext::new(keys.profile, &keys.key, &keys.salt)
            .map_err(|e| io::Error::other(format!("sink keys: {e}")))?;
        Ok(Self {
            sock,
            srtp,
            publisher,
            ssrc,
            last_seq: None,
            offset: None,
            sample: 0,
            counts: SinkCounts::default(),
        })
    }

    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    pub fn counts(&self) -> SinkCounts {
        self.counts
    }

    fn on_packet(
        &mut self,
        pkt: &mut [u8],
        now: u64,
        verify_every: u32,
        latency: Option<&mut Histogram>,
    ) {
        let c = &mut self.counts;
        // RFC 5761: RTCP packet types 192..=223 sit where RTP has marker + payload type.
        if pkt.len() >= 8 && (192..=223).contains(&pkt[1]) {
            match self.srtp.unprotect_rtcp(pkt) {
                Ok(n) if parse_compound(&pkt[..n]).all(|p| p.is_ok()) => c.rtcp += 1,
                _ => c.rtcp_errors += 1,
            }
            return;
        }
        c.received += 1;
        c.bytes += pkt.len() as u64;
        if pkt.len() < HEADER_LEN {
            c.seq_errors += 1;
            return;
        }
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
        let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
        if ssrc != self.ssrc {
            c.seq_errors += 1;
            return;
        }
        if let Some(last) = self.last_seq {
            let ahead = seq.wrapping_sub(last);
            if ahead == 0 || ahead >= 0x8000 {
                c.seq_errors += 1;
                return;
            }
            c.seq_gaps += u64::from(ahead - 1);
        }
        // The first packet is always decrypted: the SRTP context learns the stream (and
        // its rollover counter) from it, as a receiver that sees every packet would. A
        // context that first met the stream after a sequence wrap would assume the
        // wrong rollover counter for good.
        let first = self.last_seq.is_none();
        self.last_seq = Some(seq);
        self.sample += 1;
        if self.sample < verify_every && !first {
            return;
        }
        self.sample = 0;
        let Ok(n) = self.srtp.unprotect_rtp(pkt) else {
            c.verify_errors += 1;
            c.decrypt_errors += 1;
            return;
        };
        let Ok(rtp) = RtpPacket::parse(&pkt[..n]) else {
            c.verify_errors += 1;
            return;
        };
        match verify(rtp.payload()) {
            Ok(s) if s.publisher == self.publisher => {
                let offset = seq.wrapping_sub(s.seq as u16);
                if *self.offset.get_or_insert(offset) != offset {
                    c.verify_errors += 1;
                    c.numbering_errors += 1;
                    return;
                }
                c.verified += 1;
                if let Some(h) = latency {
                    h.record(now.saturating_sub(s.send_ns));
                }
            }
            _ => c.verify_errors += 1,
        }
    }
}

#[derive(Debug)]
pub struct Sinks {
    sinks: Vec<Sink>,
    batch: Batch,
    verify_every: u32,
    latency: Histogram,
    record_latency: bool,
}

impl Sinks {
    /// Sinks verifying one packet in `verify_every` (1: all).
    pub fn new(sinks: Vec<Sink>, verify_every: u32) -> Self {
        Self {
            sinks,
            batch: Batch::new(64),
            verify_every: verify_every.max(1),
            latency: Histogram::new(),
            record_latency: false,
        }
    }

    pub fn sinks(&self) -> &[Sink] {
        &self.sinks
    }

    pub fn verify_every(&self) -> u32 {
        self.verify_every
    }

    /// Starts (clearing) or stops recording latency samples.
    pub fn record_latency(&mut self, on: bool) {
        if on {
            self.latency.clear();
        }
        self.record_latency = on;
    }

    pub fn latency(&self) -> &Histogram {
        &self.latency
    }

    /// Drains sink `i`; returns the RTP packets received.
    pub fn on_readable(&mut self, i: usize, now_ns: impl Fn() -> u64) -> usize {
        let Some(sink) = self.sinks.get_mut(i) else {
            return 0;
        };
        let before = sink.counts.received;
        loop {
            let n = self.batch.recv(&sink.sock).unwrap_or_default();
            if n == 0 {
                break;
            }
            let now = now_ns();
            for k in 0..n {
                let latency = self.record_latency.then_some(&mut self.latency);
                sink.on_packet(self.batch.packet_mut(k), now, self.verify_every, latency);
            }
            if n < self.batch.capacity() {
                break;
            }
        }
        (sink.counts.received - before) as usize
    }

    pub fn totals(&self) -> SinkCounts {
        let mut t = SinkCounts::default();
        for s in &self.sinks {
            t.add(&s.counts);
        }
        t
    }

    /// Sinks that have received nothing yet.
    pub fn silent(&self) -> usize {
        self.sinks.iter().filter(|s| s.counts.received == 0).count()
    }

    /// Datagrams the kernel dropped at the sinks' sockets (the receiving side too slow).
    pub fn socket_drops(&self) -> u64 {
        self.sinks
            .iter()
            .map(|s| super::net::socket_drops(&s.sock))
            .sum()
    }
}
