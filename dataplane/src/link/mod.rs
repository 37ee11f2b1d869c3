//! Media between the nodes of a cascade: one decrypted RTP packet per QUIC DATAGRAM
//! frame, behind a small versioned header.
//!
//! ```text
//!  byte 0    1       2       3 .. 10                    11 ..
//!  version | flags | layer | global track id (u64, BE) | RTP packet, to the end
//! ```
//!
//! The RTP packet is the publisher's, as it arrived (original SSRC, sequence number and
//! timestamp), so the receiving node's cache and its upstream NACKs speak the
//! publisher's numbering.
//!
//! Flags are hints about the packet (bit 0: it starts a keyframe). Unknown flag bits are
//! ignored on decode, never written on encode: a newer node may add a hint (say, a
//! discardable temporal layer) without breaking older nodes during a rolling upgrade,
//! and anything that changes how a frame must be read bumps the version instead, which
//! an older node rejects.
//!
//! An RTP packet over [`MAX_RTP`] is refused on encode and on decode: the link path is
//! sized for it, and cutting a packet short would hand subscribers a corrupt frame, so
//! the caller counts and drops it.

use crate::engine::LinkPacket;
use bytes::{BufMut, BytesMut};

/// The only frame version this node reads and writes.
pub const VERSION: u8 = 1;
/// Version, flags, layer, track id.
pub const HEADER_LEN: usize = 11;
/// Largest RTP packet a frame carries; the link's QUIC path MTU is sized for it.
pub const MAX_RTP: usize = 1200;
/// Largest frame: what one QUIC datagram must carry.
pub const MAX_FRAME: usize = HEADER_LEN + MAX_RTP;
/// Flag bit: the packet starts a keyframe.
pub const FLAG_KEYFRAME: u8 = 0x01;

const RTP_MIN: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkFrameError {
    #[error("frame of {0} bytes is shorter than the {HEADER_LEN}-byte header")]
    Truncated(usize),
    #[error("link frame version {0}, this node speaks {VERSION}")]
    UnknownVersion(u8),
    #[error("carried packet of {0} bytes is shorter than an RTP header")]
    RtpTooShort(usize),
    #[error("carried packet has RTP version {0}, expected 2")]
    RtpVersion(u8),
    #[error("RTP packet of {0} bytes exceeds the {MAX_RTP}-byte link limit")]
    Oversize(usize),
    #[error("frame needs {need} bytes, buffer has {have}")]
    BufferTooSmall { need: usize, have: usize },
}

/// One media frame, borrowing its RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkFrame<'a> {
    pub track: u64,
    pub layer: u8,
    pub keyframe: bool,
    pub rtp: &'a [u8],
}

impl<'a> From<&'a LinkPacket> for LinkFrame<'a> {
    fn from(p: &'a LinkPacket) -> Self {
        Self {
            track: p.track,
            layer: p.layer,
            keyframe: p.keyframe,
            rtp: &p.packet,
        }
    }
}

impl LinkFrame<'_> {
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.rtp.len()
    }

    fn header(&self) -> Result<[u8; HEADER_LEN], LinkFrameError> {
        check_rtp(self.rtp)?;
        let mut h = [0; HEADER_LEN];
        h[0] = VERSION;
        h[1] = if self.keyframe { FLAG_KEYFRAME } else { 0 };
        h[2] = self.layer;
        h[3..].copy_from_slice(&self.track.to_be_bytes());
        Ok(h)
    }
}

/// The checks decode applies, so that whatever encodes also decodes.
fn check_rtp(rtp: &[u8]) -> Result<(), LinkFrameError> {
    if rtp.len() > MAX_RTP {
        return Err(LinkFrameError::Oversize(rtp.len()));
    }
    let Some(&first) = rtp.first().filter(|_| rtp.len() >= RTP_MIN) else {
        return Err(LinkFrameError::RtpTooShort(rtp.len()));
    };
    match first >> 6 {
        2 => Ok(()),
        v => Err(LinkFrameError::RtpVersion(v)),
    }
}

/// Writes `frame` to the front of `out`; returns the frame's length.
pub fn encode_into(frame: &LinkFrame<'_>, out: &mut [u8]) -> Result<usize, LinkFrameError> {
    let header = frame.header()?;
    let need = frame.encoded_len();
    let Some(dst) = out.get_mut(..need) else {
        return Err(LinkFrameError::BufferTooSmall {
            need,
            have: out.len(),
        });
    };
    let (head, body) = dst.split_at_mut(HEADER_LEN);
    head.copy_from_slice(&header);
    body.copy_from_slice(frame.rtp);
    Ok(need)
}

/// Appends `frame` to `out` (which grows as needed); nothing is appended on error. With
/// `out.split().freeze()` after each frame, one buffer's capacity serves many datagrams.
pub fn encode_to(frame: &LinkFrame<'_>, out: &mut BytesMut) -> Result<(), LinkFrameError> {
    let header = frame.header()?;
    out.reserve(frame.encoded_len());
    out.put_slice(&header);
    out.put_slice(frame.rtp);
    Ok(())
}

/// Reads one frame, borrowing its RTP packet from `buf`.
pub fn decode(buf: &[u8]) -> Result<LinkFrame<'_>, LinkFrameError> {
    let Some((head, rtp)) = buf.split_first_chunk::<HEADER_LEN>() else {
        return Err(LinkFrameError::Truncated(buf.len()));
    };
    let [version, flags, layer, track @ ..] = *head;
    if version != VERSION {
        return Err(LinkFrameError::UnknownVersion(version));
    }
    check_rtp(rtp)?;
    Ok(LinkFrame {
        track: u64::from_be_bytes(track),
        layer,
        keyframe: flags & FLAG_KEYFRAME != 0,
        rtp,
    })
}

#[cfg(test)]
mod tests;
