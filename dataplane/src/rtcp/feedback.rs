//! Feedback messages (RFC 4585, RFC 5104, draft-alvestrand-rmcat-remb).

use super::{PT_PSFB, PT_RTPFB, RtcpError, be32, need};

/// Generic NACK: lost packets as (packet id, bitmask of the 16 following) pairs.
#[derive(Debug, Clone, Copy)]
pub struct Nack<'a> {
    pub sender_ssrc: u32,
    pub media_ssrc: u32,
    pairs: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NackPair {
    pub packet_id: u16,
    pub lost_bitmask: u16,
}

impl NackPair {
    /// Every sequence number this pair reports lost, in order.
    pub fn lost(self) -> impl Iterator<Item = u16> {
        std::iter::once(self.packet_id).chain(
            (0..16u16)
                .filter(move |bit| self.lost_bitmask & (1 << bit) != 0)
                .map(move |bit| self.packet_id.wrapping_add(bit + 1)),
        )
    }
}

impl<'a> Nack<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        need(PT_RTPFB, body, 12, "NACK with at least one entry")?;
        Ok(Self {
            sender_ssrc: be32(body, 0),
            media_ssrc: be32(body, 4),
            // A trailing partial word cannot occur: lengths are whole words.
            pairs: &body[8..],
        })
    }
    pub fn pairs(&self) -> impl ExactSizeIterator<Item = NackPair> + 'a {
        self.pairs.chunks_exact(4).map(|c| NackPair {
            packet_id: u16::from_be_bytes([c[0], c[1]]),
            lost_bitmask: u16::from_be_bytes([c[2], c[3]]),
        })
    }
    /// All sequence numbers reported lost.
    pub fn lost(&self) -> impl Iterator<Item = u16> + 'a {
        self.pairs().flat_map(NackPair::lost)
    }
}

/// Picture loss indication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pli {
    pub sender_ssrc: u32,
    pub media_ssrc: u32,
}

impl Pli {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, RtcpError> {
        need(PT_PSFB, body, 8, "PLI")?;
        Ok(Self {
            sender_ssrc: be32(body, 0),
            media_ssrc: be32(body, 4),
        })
    }
}

/// Full intra request (RFC 5104 4.3.1).
#[derive(Debug, Clone, Copy)]
pub struct Fir<'a> {
    pub sender_ssrc: u32,
    entries: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirEntry {
    pub ssrc: u32,
    pub seq_nr: u8,
}

impl<'a> Fir<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        need(PT_PSFB, body, 16, "FIR with at least one entry")?;
        Ok(Self {
            sender_ssrc: be32(body, 0),
            entries: &body[8..],
        })
    }
    pub fn entries(&self) -> impl ExactSizeIterator<Item = FirEntry> + 'a {
        self.entries.chunks_exact(8).map(|c| FirEntry {
            ssrc: be32(c, 0),
            seq_nr: c[4],
        })
    }
}

/// Receiver estimated maximum bitrate.
#[derive(Debug, Clone, Copy)]
pub struct Remb<'a> {
    pub sender_ssrc: u32,
    /// Bits per second. Saturates at u64::MAX for absurd exponents.
    pub bitrate: u64,
    ssrcs: &'a [u8],
}

impl<'a> Remb<'a> {
    pub(crate) fn matches(body: &[u8]) -> bool {
        body.get(8..12) == Some(b"REMB")
    }
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        need(PT_PSFB, body, 16, "REMB")?;
        let n = usize::from(body[12]);
        let exp = u32::from(body[13] >> 2);
        let mantissa =
            (u64::from(body[13] & 3) << 16) | u64::from(u16::from_be_bytes([body[14], body[15]]));
        let bitrate = mantissa
            .checked_shl(exp)
            .filter(|v| v >> exp == mantissa)
            .unwrap_or(u64::MAX);
        need(PT_PSFB, body, 16 + 4 * n, "REMB SSRC list")?;
        Ok(Self {
            sender_ssrc: be32(body, 0),
            bitrate,
            ssrcs: &body[16..16 + 4 * n],
        })
    }
    pub fn ssrcs(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        self.ssrcs.chunks_exact(4).map(|c| be32(c, 0))
    }
}

/// Encodes a bitrate as REMB's 6-bit exponent and 18-bit mantissa, rounding down.
pub(crate) fn remb_encode(bitrate: u64) -> (u8, u32) {
    let mut exp = 0u8;
    let mut mantissa = bitrate;
    while mantissa >= 1 << 18 {
        mantissa >>= 1;
        exp += 1;
    }
    (exp, mantissa as u32)
}
