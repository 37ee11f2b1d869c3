//! Sender and receiver reports (RFC 3550 6.4).

use super::{Header, PT_RR, PT_SR, RtcpError, be32, need};

const BLOCK_LEN: usize = 24;

/// One reception report block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    /// Signed 24-bit cumulative loss (duplicates can make it negative).
    pub cumulative_lost: i32,
    pub extended_highest_seq: u32,
    pub jitter: u32,
    pub last_sr: u32,
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    fn read(b: &[u8]) -> Self {
        let lost = be32(b, 4);
        // Sign-extend the low 24 bits.
        let cumulative_lost = ((lost << 8) as i32) >> 8;
        Self {
            ssrc: be32(b, 0),
            fraction_lost: b[4],
            cumulative_lost,
            extended_highest_seq: be32(b, 8),
            jitter: be32(b, 12),
            last_sr: be32(b, 16),
            delay_since_last_sr: be32(b, 20),
        }
    }

    pub(crate) fn write(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.ssrc.to_be_bytes());
        let lost = (self.cumulative_lost as u32) & 0x00ff_ffff;
        out[4..8].copy_from_slice(&((u32::from(self.fraction_lost) << 24) | lost).to_be_bytes());
        out[8..12].copy_from_slice(&self.extended_highest_seq.to_be_bytes());
        out[12..16].copy_from_slice(&self.jitter.to_be_bytes());
        out[16..20].copy_from_slice(&self.last_sr.to_be_bytes());
        out[20..24].copy_from_slice(&self.delay_since_last_sr.to_be_bytes());
    }
}

/// The report blocks of an SR or RR.
#[derive(Debug, Clone, Copy)]
pub struct ReportBlocks<'a>(&'a [u8]);

impl<'a> ReportBlocks<'a> {
    pub fn len(&self) -> usize {
        self.0.len() / BLOCK_LEN
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl ExactSizeIterator<Item = ReportBlock> + 'a {
        self.0.chunks_exact(BLOCK_LEN).map(ReportBlock::read)
    }
}

fn blocks(pt: u8, count: u8, body: &[u8], at: usize) -> Result<ReportBlocks<'_>, RtcpError> {
    let end = at + BLOCK_LEN * usize::from(count);
    need(pt, body, end, "report blocks")?;
    Ok(ReportBlocks(&body[at..end]))
}

#[derive(Debug, Clone, Copy)]
pub struct SenderReport<'a> {
    pub ssrc: u32,
    pub ntp_time: u64,
    pub rtp_time: u32,
    pub packet_count: u32,
    pub octet_count: u32,
    pub blocks: ReportBlocks<'a>,
}

impl<'a> SenderReport<'a> {
    pub(crate) fn parse(hdr: Header, body: &'a [u8]) -> Result<Self, RtcpError> {
        need(PT_SR, body, 24, "sender info")?;
        Ok(Self {
            ssrc: be32(body, 0),
            ntp_time: (u64::from(be32(body, 4)) << 32) | u64::from(be32(body, 8)),
            rtp_time: be32(body, 12),
            packet_count: be32(body, 16),
            octet_count: be32(body, 20),
            blocks: blocks(PT_SR, hdr.count, body, 24)?,
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ReceiverReport<'a> {
    pub ssrc: u32,
    pub blocks: ReportBlocks<'a>,
}

impl<'a> ReceiverReport<'a> {
    pub(crate) fn parse(hdr: Header, body: &'a [u8]) -> Result<Self, RtcpError> {
        need(PT_RR, body, 4, "reporter SSRC")?;
        Ok(Self {
            ssrc: be32(body, 0),
            blocks: blocks(PT_RR, hdr.count, body, 4)?,
        })
    }
}
