//! RTP (RFC 3550) as a borrowed view, plus in-place header mutation for rewriting.

mod extensions;

pub use extensions::{
    AudioLevel, ExtensionElement, ExtensionForm, ExtensionIds, Extensions, KnownExtensions,
};

/// Length of the fixed RTP header.
pub const FIXED_HEADER_LEN: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("packet of {0} bytes is shorter than the 12-byte RTP header")]
    TooShort(usize),
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    #[error("{csrc_count} CSRCs need {needed} header bytes, packet has {len}")]
    CsrcOverrun {
        csrc_count: u8,
        needed: usize,
        len: usize,
    },
    #[error("header extension needs {needed} bytes, packet has {len}")]
    ExtensionOverrun { needed: usize, len: usize },
    #[error("padding count {padding} exceeds the {available} bytes after the header")]
    BadPadding { padding: u8, available: usize },
    #[error(
        "extension element at offset {offset} runs past the extension block or is too short for its type"
    )]
    ElementOverrun { offset: usize },
}

/// A parsed, validated RTP packet borrowing its bytes.
///
/// Parsing validates the header chain (CSRCs, extension block, padding) once, so the
/// accessors below are infallible and branch-light on the hot path.
#[derive(Debug, Clone, Copy)]
pub struct RtpPacket<'a> {
    buf: &'a [u8],
    header_len: usize,
    payload_end: usize,
    /// Offset and length of the extension *body* (after the 4-byte profile/length word).
    ext: Option<(u16, usize, usize)>,
}

impl<'a> RtpPacket<'a> {
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        let layout = Layout::parse(buf)?;
        Ok(Self {
            buf,
            header_len: layout.header_len,
            payload_end: layout.payload_end,
            ext: layout.ext,
        })
    }

    /// Parses the header chain only, leaving padding unchecked: for SRTP packets, whose
    /// padding count lies in the still-encrypted payload.
    pub fn parse_header(buf: &'a [u8]) -> Result<Self, RtpError> {
        let layout = Layout::parse_header(buf)?;
        Ok(Self {
            buf,
            header_len: layout.header_len,
            payload_end: layout.payload_end,
            ext: layout.ext,
        })
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
    pub fn version(&self) -> u8 {
        self.buf[0] >> 6
    }
    pub fn has_padding(&self) -> bool {
        self.buf[0] & 0x20 != 0
    }
    pub fn has_extension(&self) -> bool {
        self.buf[0] & 0x10 != 0
    }
    pub fn csrc_count(&self) -> u8 {
        self.buf[0] & 0x0f
    }
    pub fn marker(&self) -> bool {
        self.buf[1] & 0x80 != 0
    }
    pub fn payload_type(&self) -> u8 {
        self.buf[1] & 0x7f
    }
    pub fn sequence_number(&self) -> u16 {
        u16::from_be_bytes([self.buf[2], self.buf[3]])
    }
    pub fn timestamp(&self) -> u32 {
        be32(self.buf, 4)
    }
    pub fn ssrc(&self) -> u32 {
        be32(self.buf, 8)
    }
    pub fn csrcs(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        let buf = self.buf;
        (0..usize::from(self.csrc_count())).map(move |i| be32(buf, FIXED_HEADER_LEN + 4 * i))
    }
    /// Header length including CSRCs and the extension block: where the payload begins
    /// (and where SRTP encryption begins).
    pub fn header_len(&self) -> usize {
        self.header_len
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len..self.payload_end]
    }
    pub fn padding_len(&self) -> usize {
        self.buf.len() - self.payload_end
    }
    /// The extension profile word (0xBEDE one-byte, 0x100X two-byte, or other).
    pub fn extension_profile(&self) -> Option<u16> {
        self.ext.map(|(profile, _, _)| profile)
    }
    /// The raw extension body, after the profile/length word.
    pub fn extension_body(&self) -> Option<&'a [u8]> {
        self.ext
            .map(|(_, start, len)| &self.buf[start..start + len])
    }
    /// Iterates RFC 8285 extension elements. Empty for no extension or an unknown profile.
    pub fn extensions(&self) -> Extensions<'a> {
        match self.ext {
            Some((profile, start, len)) => {
                Extensions::new(profile, &self.buf[start..start + len], start)
            }
            None => Extensions::empty(),
        }
    }
    /// Reads the extensions the session negotiated, in one pass.
    pub fn known_extensions(&self, ids: &ExtensionIds) -> Result<KnownExtensions<'a>, RtpError> {
        KnownExtensions::read(self.extensions(), ids)
    }
}

/// Where the parts of an RTP packet lie; shared by the view and by SRTP, which must
/// find the payload of a packet it is about to decrypt without a full view.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub header_len: usize,
    pub payload_end: usize,
    pub ext: Option<(u16, usize, usize)>,
}

impl Layout {
    /// Validates the header chain. Padding is not checked here when `check_padding` is
    /// false: in SRTP the padding count lies in the still-encrypted payload.
    #[inline]
    pub(crate) fn parse_header(buf: &[u8]) -> Result<Self, RtpError> {
        if buf.len() < FIXED_HEADER_LEN {
            return Err(RtpError::TooShort(buf.len()));
        }
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let csrc_count = buf[0] & 0x0f;
        let mut header_len = FIXED_HEADER_LEN + 4 * usize::from(csrc_count);
        if buf.len() < header_len {
            return Err(RtpError::CsrcOverrun {
                csrc_count,
                needed: header_len,
                len: buf.len(),
            });
        }
        let mut ext = None;
        if buf[0] & 0x10 != 0 {
            if buf.len() < header_len + 4 {
                return Err(RtpError::ExtensionOverrun {
                    needed: header_len + 4,
                    len: buf.len(),
                });
            }
            let profile = u16::from_be_bytes([buf[header_len], buf[header_len + 1]]);
            let words = u16::from_be_bytes([buf[header_len + 2], buf[header_len + 3]]);
            let body_len = 4 * usize::from(words);
            let body_start = header_len + 4;
            if buf.len() < body_start + body_len {
                return Err(RtpError::ExtensionOverrun {
                    needed: body_start + body_len,
                    len: buf.len(),
                });
            }
            ext = Some((profile, body_start, body_len));
            header_len = body_start + body_len;
        }
        Ok(Self {
            header_len,
            payload_end: buf.len(),
            ext,
        })
    }

    #[inline]
    pub(crate) fn parse(buf: &[u8]) -> Result<Self, RtpError> {
        let mut layout = Self::parse_header(buf)?;
        if buf[0] & 0x20 != 0 {
            let available = buf.len() - layout.header_len;
            let padding = buf[buf.len() - 1];
            if padding == 0 || usize::from(padding) > available {
                return Err(RtpError::BadPadding { padding, available });
            }
            layout.payload_end = buf.len() - usize::from(padding);
        }
        Ok(layout)
    }
}

#[inline]
pub(crate) fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// In-place header edits for the egress copy of a packet. Each checks the fixed header
/// is present; callers have normally parsed the packet already.
pub mod write {
    use super::{FIXED_HEADER_LEN, RtpError};

    #[inline]
    fn fixed(buf: &mut [u8]) -> Result<&mut [u8], RtpError> {
        let len = buf.len();
        buf.get_mut(..FIXED_HEADER_LEN)
            .ok_or(RtpError::TooShort(len))
    }

    #[inline]
    pub fn set_sequence_number(buf: &mut [u8], seq: u16) -> Result<(), RtpError> {
        fixed(buf)?[2..4].copy_from_slice(&seq.to_be_bytes());
        Ok(())
    }
    #[inline]
    pub fn set_timestamp(buf: &mut [u8], ts: u32) -> Result<(), RtpError> {
        fixed(buf)?[4..8].copy_from_slice(&ts.to_be_bytes());
        Ok(())
    }
    #[inline]
    pub fn set_ssrc(buf: &mut [u8], ssrc: u32) -> Result<(), RtpError> {
        fixed(buf)?[8..12].copy_from_slice(&ssrc.to_be_bytes());
        Ok(())
    }
    #[inline]
    pub fn set_payload_type(buf: &mut [u8], pt: u8) -> Result<(), RtpError> {
        let b = &mut fixed(buf)?[1];
        *b = (*b & 0x80) | (pt & 0x7f);
        Ok(())
    }
    #[inline]
    pub fn set_marker(buf: &mut [u8], marker: bool) -> Result<(), RtpError> {
        let b = &mut fixed(buf)?[1];
        *b = (*b & 0x7f) | if marker { 0x80 } else { 0 };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(ext: &[u8], payload: &[u8], padding: u8) -> Vec<u8> {
        let mut p = vec![0x80 | if padding > 0 { 0x20 } else { 0 }, 96, 0x12, 0x34];
        p.extend_from_slice(&0xdead_beefu32.to_be_bytes());
        p.extend_from_slice(&0x0102_0304u32.to_be_bytes());
        if !ext.is_empty() {
            p[0] |= 0x10;
            p.extend_from_slice(ext);
        }
        p.extend_from_slice(payload);
        if padding > 0 {
            p.extend(std::iter::repeat_n(0, usize::from(padding) - 1));
            p.push(padding);
        }
        p
    }

    #[test]
    fn fixed_header_fields() {
        let p = packet(&[], b"hello", 0);
        let r = RtpPacket::parse(&p).unwrap();
        assert_eq!(r.version(), 2);
        assert_eq!(r.payload_type(), 96);
        assert_eq!(r.sequence_number(), 0x1234);
        assert_eq!(r.timestamp(), 0xdead_beef);
        assert_eq!(r.ssrc(), 0x0102_0304);
        assert_eq!(r.payload(), b"hello");
        assert_eq!(r.header_len(), 12);
        assert!(!r.marker());
    }

    #[test]
    fn padding_is_stripped_and_checked() {
        let p = packet(&[], b"abc", 4);
        let r = RtpPacket::parse(&p).unwrap();
        assert_eq!(r.payload(), b"abc");
        assert_eq!(r.padding_len(), 4);
        let mut bad = packet(&[], b"abc", 4);
        *bad.last_mut().unwrap() = 9;
        assert_eq!(
            RtpPacket::parse(&bad).unwrap_err(),
            RtpError::BadPadding {
                padding: 9,
                available: 7
            }
        );
        *bad.last_mut().unwrap() = 0;
        assert!(matches!(
            RtpPacket::parse(&bad),
            Err(RtpError::BadPadding { padding: 0, .. })
        ));
    }

    #[test]
    fn truncations_are_precise_errors() {
        let p = packet(&[0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0], b"", 0);
        assert!(RtpPacket::parse(&p).is_ok());
        assert_eq!(
            RtpPacket::parse(&p[..5]).unwrap_err(),
            RtpError::TooShort(5)
        );
        assert_eq!(
            RtpPacket::parse(&p[..14]).unwrap_err(),
            RtpError::ExtensionOverrun {
                needed: 16,
                len: 14
            }
        );
        assert_eq!(
            RtpPacket::parse(&p[..18]).unwrap_err(),
            RtpError::ExtensionOverrun {
                needed: 20,
                len: 18
            }
        );
        let mut csrc = packet(&[], b"", 0);
        csrc[0] |= 2;
        assert!(matches!(
            RtpPacket::parse(&csrc),
            Err(RtpError::CsrcOverrun { csrc_count: 2, .. })
        ));
        let mut v1 = packet(&[], b"", 0);
        v1[0] = 0x40;
        assert_eq!(RtpPacket::parse(&v1).unwrap_err(), RtpError::BadVersion(1));
    }

    #[test]
    fn writers_edit_in_place() {
        let mut p = packet(&[], b"x", 0);
        write::set_ssrc(&mut p, 7).unwrap();
        write::set_sequence_number(&mut p, 65535).unwrap();
        write::set_timestamp(&mut p, 90_000).unwrap();
        write::set_payload_type(&mut p, 111).unwrap();
        write::set_marker(&mut p, true).unwrap();
        let r = RtpPacket::parse(&p).unwrap();
        assert_eq!(
            (
                r.ssrc(),
                r.sequence_number(),
                r.timestamp(),
                r.payload_type()
            ),
            (7, 65535, 90_000, 111)
        );
        assert!(r.marker());
        assert!(write::set_ssrc(&mut [0u8; 4], 1).is_err());
    }
}
