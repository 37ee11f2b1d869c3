//! Builds compound RTCP packets into a caller-provided buffer, without allocating.

use super::feedback::remb_encode;
use super::report::ReportBlock;
use super::twcc::{self, Cursor};
use super::{
    FMT_AFB, FMT_FIR, FMT_NACK, FMT_PLI, PT_BYE, PT_PSFB, PT_RR, PT_RTPFB, PT_SDES, PT_SR,
    RtcpError,
};

/// Appends RTCP packets to a buffer; `finish` returns the compound length. On error the
/// packet being written is abandoned and what was written before it stays valid.
#[derive(Debug)]
pub struct RtcpWriter<'o> {
    out: &'o mut [u8],
    len: usize,
}

impl<'o> RtcpWriter<'o> {
    pub fn new(out: &'o mut [u8]) -> Self {
        Self { out, len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn finish(self) -> usize {
        self.len
    }

    /// Writes one packet through `body`, then fixes its header (count, type, length).
    fn packet(
        &mut self,
        count: u8,
        packet_type: u8,
        body: impl FnOnce(&mut Cursor<'_>) -> Result<(), RtcpError>,
    ) -> Result<(), RtcpError> {
        if count > 31 {
            return Err(RtcpError::OutOfRange("RTCP count field"));
        }
        let mut c = Cursor {
            out: &mut self.out[self.len..],
            pos: 0,
        };
        c.put(&[0x80 | count, packet_type, 0, 0])?;
        body(&mut c)?;
        while !c.pos.is_multiple_of(4) {
            c.put(&[0])?;
        }
        let words =
            u16::try_from(c.pos / 4 - 1).map_err(|_| RtcpError::OutOfRange("RTCP length"))?;
        c.out[2..4].copy_from_slice(&words.to_be_bytes());
        self.len += c.pos;
        Ok(())
    }

    fn blocks(c: &mut Cursor<'_>, blocks: &[ReportBlock]) -> Result<(), RtcpError> {
        for b in blocks {
            let mut tmp = [0u8; 24];
            b.write(&mut tmp);
            c.put(&tmp)?;
        }
        Ok(())
    }

    pub fn sender_report(
        &mut self,
        ssrc: u32,
        ntp_time: u64,
        rtp_time: u32,
        packet_count: u32,
        octet_count: u32,
        blocks: &[ReportBlock],
    ) -> Result<(), RtcpError> {
        let count =
            u8::try_from(blocks.len()).map_err(|_| RtcpError::OutOfRange("report blocks"))?;
        self.packet(count, PT_SR, |c| {
            c.put(&ssrc.to_be_bytes())?;
            c.put(&ntp_time.to_be_bytes())?;
            c.put(&rtp_time.to_be_bytes())?;
            c.put(&packet_count.to_be_bytes())?;
            c.put(&octet_count.to_be_bytes())?;
            Self::blocks(c, blocks)
        })
    }

    pub fn receiver_report(&mut self, ssrc: u32, blocks: &[ReportBlock]) -> Result<(), RtcpError> {
        let count =
            u8::try_from(blocks.len()).map_err(|_| RtcpError::OutOfRange("report blocks"))?;
        self.packet(count, PT_RR, |c| {
            c.put(&ssrc.to_be_bytes())?;
            Self::blocks(c, blocks)
        })
    }

    /// SDES with one chunk carrying a CNAME.
    pub fn sdes_cname(&mut self, ssrc: u32, cname: &[u8]) -> Result<(), RtcpError> {
        let len = u8::try_from(cname.len()).map_err(|_| RtcpError::OutOfRange("CNAME length"))?;
        self.packet(1, PT_SDES, |c| {
            c.put(&ssrc.to_be_bytes())?;
            c.put(&[super::sdes::SDES_CNAME, len])?;
            c.put(cname)?;
            // The item list ends with a zero octet; the padding to a word adds the rest.
            c.put(&[0])
        })
    }

    pub fn bye(&mut self, ssrcs: &[u32]) -> Result<(), RtcpError> {
        let count =
            u8::try_from(ssrcs.len()).map_err(|_| RtcpError::OutOfRange("BYE SSRC count"))?;
        self.packet(count, PT_BYE, |c| {
            ssrcs.iter().try_for_each(|s| c.put(&s.to_be_bytes()))
        })
    }

    /// Generic NACK for `lost`, which must be in ascending (wrapping) order; consecutive
    /// losses within 16 packets share one entry.
    pub fn nack(
        &mut self,
        sender_ssrc: u32,
        media_ssrc: u32,
        lost: impl IntoIterator<Item = u16>,
    ) -> Result<(), RtcpError> {
        self.packet(FMT_NACK, PT_RTPFB, |c| {
            c.put(&sender_ssrc.to_be_bytes())?;
            c.put(&media_ssrc.to_be_bytes())?;
            let mut current: Option<(u16, u16)> = None;
            let mut entries = 0;
            for seq in lost {
                match &mut current {
                    Some((pid, mask)) if (1..=16).contains(&seq.wrapping_sub(*pid)) => {
                        *mask |= 1 << (seq.wrapping_sub(*pid) - 1);
                    }
                    Some((pid, _)) if seq == *pid => {}
                    _ => {
                        if let Some((pid, mask)) = current.take() {
                            c.put(&pid.to_be_bytes())?;
                            c.put(&mask.to_be_bytes())?;
                            entries += 1;
                        }
                        current = Some((seq, 0));
                    }
                }
            }
            if let Some((pid, mask)) = current {
                c.put(&pid.to_be_bytes())?;
                c.put(&mask.to_be_bytes())?;
                entries += 1;
            }
            if entries == 0 {
                return Err(RtcpError::OutOfRange("NACK without lost packets"));
            }
            Ok(())
        })
    }

    pub fn pli(&mut self, sender_ssrc: u32, media_ssrc: u32) -> Result<(), RtcpError> {
        self.packet(FMT_PLI, PT_PSFB, |c| {
            c.put(&sender_ssrc.to_be_bytes())?;
            c.put(&media_ssrc.to_be_bytes())
        })
    }

    pub fn fir(&mut self, sender_ssrc: u32, entries: &[(u32, u8)]) -> Result<(), RtcpError> {
        if entries.is_empty() {
            return Err(RtcpError::OutOfRange("FIR without entries"));
        }
        self.packet(FMT_FIR, PT_PSFB, |c| {
            c.put(&sender_ssrc.to_be_bytes())?;
            c.put(&0u32.to_be_bytes())?;
            for (ssrc, seq) in entries {
                c.put(&ssrc.to_be_bytes())?;
                c.put(&[*seq, 0, 0, 0])?;
            }
            Ok(())
        })
    }

    pub fn remb(&mut self, sender_ssrc: u32, bitrate: u64, ssrcs: &[u32]) -> Result<(), RtcpError> {
        let n = u8::try_from(ssrcs.len()).map_err(|_| RtcpError::OutOfRange("REMB SSRC count"))?;
        let (exp, mantissa) = remb_encode(bitrate);
        self.packet(FMT_AFB, PT_PSFB, |c| {
            c.put(&sender_ssrc.to_be_bytes())?;
            c.put(&0u32.to_be_bytes())?;
            c.put(b"REMB")?;
            c.put(&[n, (exp << 2) | (mantissa >> 16) as u8])?;
            c.put(&(mantissa as u16).to_be_bytes())?;
            ssrcs.iter().try_for_each(|s| c.put(&s.to_be_bytes()))
        })
    }

    /// Transport-wide CC feedback; see [`super::TransportCc`] for the delta convention.
    pub fn transport_cc(
        &mut self,
        sender_ssrc: u32,
        media_ssrc: u32,
        base_seq: u16,
        reference_time: i32,
        feedback_count: u8,
        deltas: &[Option<i32>],
    ) -> Result<(), RtcpError> {
        let n = twcc::write(
            &mut self.out[self.len..],
            sender_ssrc,
            media_ssrc,
            base_seq,
            reference_time,
            feedback_count,
            deltas,
        )?;
        self.len += n;
        Ok(())
    }
}
