//! RFC 4588 retransmission payloads: the original sequence number (OSN) in front of the
//! original payload, sent on a separate SSRC and payload type.

use crate::rtp::{Layout, RtpError, write};

/// Turns a plaintext RTX packet into the original packet in place and returns its new
/// length: OSN becomes the sequence number, the payload moves back two bytes.
pub fn unwrap(pkt: &mut [u8], ssrc: u32, payload_type: u8) -> Result<usize, RtpError> {
    let layout = Layout::parse(pkt)?;
    let (h, end) = (layout.header_len, layout.payload_end);
    if end < h + 2 {
        return Err(RtpError::TooShort(pkt.len()));
    }
    let osn = u16::from_be_bytes([pkt[h], pkt[h + 1]]);
    // Padding (if any) is dropped: it was only there to pad the RTX packet.
    pkt.copy_within(h + 2..end, h);
    let len = end - 2;
    pkt[0] &= !0x20;
    write::set_sequence_number(pkt, osn)?;
    write::set_ssrc(pkt, ssrc)?;
    write::set_payload_type(pkt, payload_type)?;
    Ok(len)
}

/// Turns the rewritten plaintext packet `pkt[..len]` into an RTX packet in place; needs
/// two spare bytes after it. Returns the new length.
pub fn wrap(
    pkt: &mut [u8],
    len: usize,
    ssrc: u32,
    payload_type: u8,
    seq: u16,
) -> Result<usize, RtpError> {
    let layout = Layout::parse(&pkt[..len])?;
    if pkt.len() < len + 2 {
        return Err(RtpError::TooShort(pkt.len()));
    }
    let (h, end) = (layout.header_len, layout.payload_end);
    let osn = [pkt[2], pkt[3]];
    pkt.copy_within(h..end, h + 2);
    pkt[h..h + 2].copy_from_slice(&osn);
    pkt[0] &= !0x20;
    write::set_sequence_number(pkt, seq)?;
    write::set_ssrc(pkt, ssrc)?;
    write::set_payload_type(pkt, payload_type)?;
    Ok(end + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_then_unwrap_round_trips() {
        let orig = [
            0x80, 96, 0x12, 0x34, 0, 0, 0, 9, 0, 0, 0, 1, 0xaa, 0xbb, 0xcc,
        ];
        let mut buf = [0u8; 32];
        buf[..orig.len()].copy_from_slice(&orig);
        let n = wrap(&mut buf, orig.len(), 77, 97, 500).unwrap();
        assert_eq!(n, orig.len() + 2);
        assert_eq!(&buf[12..14], &[0x12, 0x34]);
        assert_eq!(buf[1] & 0x7f, 97);
        let n = unwrap(&mut buf[..n], 1, 96).unwrap();
        assert_eq!(&buf[..n], &orig);
    }

    #[test]
    fn short_rtx_is_an_error() {
        let mut p = [0x80, 97, 0, 1, 0, 0, 0, 9, 0, 0, 0, 1, 0xaa];
        assert!(unwrap(&mut p, 1, 96).is_err());
    }
}
