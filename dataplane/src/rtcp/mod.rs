//! RTCP (RFC 3550, 4585, 5104) compound packets as borrowed views, and a writer for every
//! packet the SFU emits.
//!
//! Parsing validates each packet's structure up front, so the item iterators the views
//! hand out are infallible.

mod bye;
mod feedback;
mod report;
mod sdes;
mod twcc;
mod writer;

pub use bye::Bye;
pub use feedback::{Fir, FirEntry, Nack, NackPair, Pli, Remb};
pub use report::{ReceiverReport, ReportBlock, ReportBlocks, SenderReport};
pub use sdes::{Sdes, SdesChunk, SdesItem};
pub use twcc::{TransportCc, TwccStatus, TwccSymbol};
pub use writer::RtcpWriter;

pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;
pub const PT_APP: u8 = 204;
pub const PT_RTPFB: u8 = 205;
pub const PT_PSFB: u8 = 206;

pub const FMT_NACK: u8 = 1;
pub const FMT_TWCC: u8 = 15;
pub const FMT_PLI: u8 = 1;
pub const FMT_FIR: u8 = 4;
pub const FMT_AFB: u8 = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("{0} bytes left, an RTCP header needs 4")]
    TooShort(usize),
    #[error("RTCP version {0}, expected 2")]
    BadVersion(u8),
    #[error("packet declares {declared} bytes, only {available} remain")]
    LengthOverrun { declared: usize, available: usize },
    #[error("padding count {0} is zero or exceeds the packet")]
    BadPadding(u8),
    #[error("packet type {pt} body of {len} bytes too short for {what}")]
    Truncated {
        pt: u8,
        len: usize,
        what: &'static str,
    },
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("output buffer too small")]
    BufferTooSmall,
    #[error("value out of range for {0}")]
    OutOfRange(&'static str),
}

/// One packet of a compound RTCP datagram.
#[derive(Debug, Clone, Copy)]
pub enum RtcpPacket<'a> {
    SenderReport(SenderReport<'a>),
    ReceiverReport(ReceiverReport<'a>),
    Sdes(Sdes<'a>),
    Bye(Bye<'a>),
    Nack(Nack<'a>),
    TransportCc(TransportCc<'a>),
    Pli(Pli),
    Fir(Fir<'a>),
    Remb(Remb<'a>),
    /// APP, XR, and feedback formats the SFU does not act on: kept whole so a caller can
    /// forward or count them.
    Other {
        packet_type: u8,
        count: u8,
        body: &'a [u8],
    },
}

/// Iterator over the packets of a compound RTCP datagram. After the first error it
/// stops: the rest of a compound packet cannot be framed reliably.
#[derive(Debug, Clone)]
pub struct Compound<'a> {
    rest: &'a [u8],
}

/// Walks a compound RTCP datagram.
pub fn parse_compound(buf: &[u8]) -> Compound<'_> {
    Compound { rest: buf }
}

impl<'a> Iterator for Compound<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let result = split_packet(self.rest).and_then(|(hdr, body, rest)| {
            self.rest = rest;
            RtcpPacket::parse_body(hdr, body)
        });
        if result.is_err() {
            self.rest = &[];
        }
        Some(result)
    }
}

/// The common header of one RTCP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub count: u8,
    pub packet_type: u8,
}

/// Splits off one packet: its header, its body without padding, and what follows.
fn split_packet(buf: &[u8]) -> Result<(Header, &[u8], &[u8]), RtcpError> {
    if buf.len() < 4 {
        return Err(RtcpError::TooShort(buf.len()));
    }
    let version = buf[0] >> 6;
    if version != 2 {
        return Err(RtcpError::BadVersion(version));
    }
    let declared = 4 * (usize::from(u16::from_be_bytes([buf[2], buf[3]])) + 1);
    if declared > buf.len() {
        return Err(RtcpError::LengthOverrun {
            declared,
            available: buf.len(),
        });
    }
    let (packet, rest) = buf.split_at(declared);
    let mut body = &packet[4..];
    if buf[0] & 0x20 != 0 {
        let pad = packet[declared - 1];
        if pad == 0 || usize::from(pad) > body.len() {
            return Err(RtcpError::BadPadding(pad));
        }
        body = &body[..body.len() - usize::from(pad)];
    }
    let header = Header {
        count: buf[0] & 0x1f,
        packet_type: buf[1],
    };
    Ok((header, body, rest))
}

impl<'a> RtcpPacket<'a> {
    /// Parses a datagram holding exactly one RTCP packet.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtcpError> {
        let (hdr, body, _) = split_packet(buf)?;
        Self::parse_body(hdr, body)
    }

    fn parse_body(hdr: Header, body: &'a [u8]) -> Result<Self, RtcpError> {
        Ok(match (hdr.packet_type, hdr.count) {
            (PT_SR, _) => Self::SenderReport(SenderReport::parse(hdr, body)?),
            (PT_RR, _) => Self::ReceiverReport(ReceiverReport::parse(hdr, body)?),
            (PT_SDES, _) => Self::Sdes(Sdes::parse(hdr, body)?),
            (PT_BYE, _) => Self::Bye(Bye::parse(hdr, body)?),
            (PT_RTPFB, FMT_NACK) => Self::Nack(Nack::parse(body)?),
            (PT_RTPFB, FMT_TWCC) => Self::TransportCc(TransportCc::parse(body)?),
            (PT_PSFB, FMT_PLI) => Self::Pli(Pli::parse(body)?),
            (PT_PSFB, FMT_FIR) => Self::Fir(Fir::parse(body)?),
            (PT_PSFB, FMT_AFB) if Remb::matches(body) => Self::Remb(Remb::parse(body)?),
            (packet_type, count) => Self::Other {
                packet_type,
                count,
                body,
            },
        })
    }
}

#[inline]
pub(crate) fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

#[inline]
pub(crate) fn need(pt: u8, body: &[u8], len: usize, what: &'static str) -> Result<(), RtcpError> {
    if body.len() < len {
        Err(RtcpError::Truncated {
            pt,
            len: body.len(),
            what,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
