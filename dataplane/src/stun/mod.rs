//! STUN (RFC 5389/8489) for ICE-lite (RFC 8445): a validated view over a datagram and a
//! writer for the responses the SFU sends.

mod writer;

pub use writer::{StunWriter, binding_error, binding_success};

use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use subtle::ConstantTimeEq;

pub const HEADER_LEN: usize = 20;
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
const FINGERPRINT_XOR: u32 = 0x5354_554e;

pub const BINDING_REQUEST: u16 = 0x0001;
pub const BINDING_SUCCESS: u16 = 0x0101;
pub const BINDING_ERROR: u16 = 0x0111;
pub const BINDING_INDICATION: u16 = 0x0011;

pub const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
pub const ATTR_USERNAME: u16 = 0x0006;
pub const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
pub const ATTR_ERROR_CODE: u16 = 0x0009;
pub const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
pub const ATTR_PRIORITY: u16 = 0x0024;
pub const ATTR_USE_CANDIDATE: u16 = 0x0025;
pub const ATTR_SOFTWARE: u16 = 0x8022;
pub const ATTR_FINGERPRINT: u16 = 0x8028;
pub const ATTR_ICE_CONTROLLED: u16 = 0x8029;
pub const ATTR_ICE_CONTROLLING: u16 = 0x802A;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    #[error("{0} bytes, a STUN header needs 20")]
    TooShort(usize),
    #[error("first two bits set: not STUN")]
    NotStun,
    #[error("magic cookie {0:#010x}, expected 0x2112a442")]
    BadCookie(u32),
    #[error("length field {declared} does not match the {actual} bytes after the header")]
    BadLength { declared: usize, actual: usize },
    #[error("attribute at offset {0} overruns the message")]
    AttributeOverrun(usize),
    #[error("attribute {attr:#06x} has invalid length {len}")]
    BadAttributeLength { attr: u16, len: usize },
    #[error("FINGERPRINT is not the last attribute")]
    FingerprintNotLast,
    #[error("FINGERPRINT mismatch")]
    BadFingerprint,
    #[error("MESSAGE-INTEGRITY missing")]
    NoIntegrity,
    #[error("MESSAGE-INTEGRITY mismatch")]
    BadIntegrity,
    #[error("address family {0} unknown")]
    BadFamily(u8),
    #[error("output buffer too small")]
    BufferTooSmall,
    #[error("value out of range for {0}")]
    OutOfRange(&'static str),
}

/// A validated STUN message. Attribute values are borrowed; well-known attributes are
/// located in the single validating pass so the getters below cost nothing.
#[derive(Debug, Clone, Copy)]
pub struct StunMessage<'a> {
    buf: &'a [u8],
    username: Option<(usize, usize)>,
    integrity_at: Option<usize>,
    fingerprint_at: Option<usize>,
    priority: Option<u32>,
    use_candidate: bool,
    ice_controlling: Option<u64>,
    ice_controlled: Option<u64>,
    xor_mapped: Option<(usize, usize)>,
    error_code: Option<(usize, usize)>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be64(b: &[u8], at: usize) -> u64 {
    (u64::from(be32(b, at)) << 32) | u64::from(be32(b, at + 4))
}

impl<'a> StunMessage<'a> {
    pub fn parse(buf: &'a [u8]) -> Result<Self, StunError> {
        if buf.len() < HEADER_LEN {
            return Err(StunError::TooShort(buf.len()));
        }
        if buf[0] & 0xc0 != 0 {
            return Err(StunError::NotStun);
        }
        let cookie = be32(buf, 4);
        if cookie != MAGIC_COOKIE {
            return Err(StunError::BadCookie(cookie));
        }
        let declared = usize::from(be16(buf, 2));
        if declared % 4 != 0 || declared != buf.len() - HEADER_LEN {
            return Err(StunError::BadLength {
                declared,
                actual: buf.len() - HEADER_LEN,
            });
        }
        let mut msg = Self {
            buf,
            username: None,
            integrity_at: None,
            fingerprint_at: None,
            priority: None,
            use_candidate: false,
            ice_controlling: None,
            ice_controlled: None,
            xor_mapped: None,
            error_code: None,
        };
        let mut pos = HEADER_LEN;
        while pos < buf.len() {
            if msg.fingerprint_at.is_some() {
                return Err(StunError::FingerprintNotLast);
            }
            if pos + 4 > buf.len() {
                return Err(StunError::AttributeOverrun(pos));
            }
            let attr = be16(buf, pos);
            let len = usize::from(be16(buf, pos + 2));
            let start = pos + 4;
            let padded = (len + 3) & !3;
            if start + padded > buf.len() {
                return Err(StunError::AttributeOverrun(pos));
            }
            let exact = |want: usize| {
                if len == want {
                    Ok(())
                } else {
                    Err(StunError::BadAttributeLength { attr, len })
                }
            };
            // RFC 5389 15.4: after MESSAGE-INTEGRITY only FINGERPRINT counts.
            let after_integrity = msg.integrity_at.is_some();
            match attr {
                ATTR_FINGERPRINT => {
                    exact(4)?;
                    msg.fingerprint_at = Some(pos);
                }
                _ if after_integrity => {}
                ATTR_MESSAGE_INTEGRITY => {
                    exact(20)?;
                    msg.integrity_at = Some(pos);
                }
                ATTR_USERNAME => {
                    if len > 513 {
                        return Err(StunError::BadAttributeLength { attr, len });
                    }
                    msg.username = Some((start, len));
                }
                ATTR_PRIORITY => {
                    exact(4)?;
                    msg.priority = Some(be32(buf, start));
                }
                ATTR_USE_CANDIDATE => {
                    exact(0)?;
                    msg.use_candidate = true;
                }
                ATTR_ICE_CONTROLLING => {
                    exact(8)?;
                    msg.ice_controlling = Some(be64(buf, start));
                }
                ATTR_ICE_CONTROLLED => {
                    exact(8)?;
                    msg.ice_controlled = Some(be64(buf, start));
                }
                ATTR_XOR_MAPPED_ADDRESS => {
                    if len != 8 && len != 20 {
                        return Err(StunError::BadAttributeLength { attr, len });
                    }
                    msg.xor_mapped = Some((start, len));
                }
                ATTR_ERROR_CODE => {
                    if !(4..=767).contains(&len) {
                        return Err(StunError::BadAttributeLength { attr, len });
                    }
                    msg.error_code = Some((start, len));
                }
                _ => {}
            }
            pos = start + padded;
        }
        Ok(msg)
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
    pub fn message_type(&self) -> u16 {
        be16(self.buf, 0)
    }
    pub fn is_binding_request(&self) -> bool {
        self.message_type() == BINDING_REQUEST
    }
    pub fn transaction_id(&self) -> &'a [u8; 12] {
        self.buf[8..20]
            .try_into()
            .expect("header length checked at parse")
    }
    pub fn username(&self) -> Option<&'a [u8]> {
        self.username.map(|(s, l)| &self.buf[s..s + l])
    }
    pub fn priority(&self) -> Option<u32> {
        self.priority
    }
    pub fn use_candidate(&self) -> bool {
        self.use_candidate
    }
    pub fn ice_controlling(&self) -> Option<u64> {
        self.ice_controlling
    }
    pub fn ice_controlled(&self) -> Option<u64> {
        self.ice_controlled
    }
    pub fn has_integrity(&self) -> bool {
        self.integrity_at.is_some()
    }
    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint_at.is_some()
    }

    /// The error code (class * 100 + number) and reason phrase of an error response.
    pub fn error_code(&self) -> Option<(u16, &'a [u8])> {
        self.error_code.map(|(s, l)| {
            let code = u16::from(self.buf[s + 2] & 7) * 100 + u16::from(self.buf[s + 3]);
            (code, &self.buf[s + 4..s + l])
        })
    }

    pub fn xor_mapped_address(&self) -> Option<Result<SocketAddr, StunError>> {
        let (s, l) = self.xor_mapped?;
        let b = &self.buf[s..s + l];
        let port = be16(b, 2) ^ (MAGIC_COOKIE >> 16) as u16;
        Some(match (b[1], l) {
            (1, 8) => {
                let ip = be32(b, 4) ^ MAGIC_COOKIE;
                Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
            }
            (2, 20) => {
                let mut ip = [0u8; 16];
                ip[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                ip[4..].copy_from_slice(self.transaction_id());
                for (x, y) in ip.iter_mut().zip(&b[4..20]) {
                    *x ^= y;
                }
                Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
            }
            (family, _) => Err(StunError::BadFamily(family)),
        })
    }

    /// Checks MESSAGE-INTEGRITY (HMAC-SHA1) with the short-term credential `key` (the ICE
    /// password).
    pub fn verify_integrity(&self, key: &[u8]) -> Result<(), StunError> {
        let at = self.integrity_at.ok_or(StunError::NoIntegrity)?;
        let expected = integrity(self.buf, at, key);
        let got = &self.buf[at + 4..at + 24];
        if bool::from(expected.ct_eq(got)) {
            Ok(())
        } else {
            Err(StunError::BadIntegrity)
        }
    }

    /// Checks FINGERPRINT if present; a message without one passes (it is optional).
    pub fn verify_fingerprint(&self) -> Result<(), StunError> {
        let Some(at) = self.fingerprint_at else {
            return Ok(());
        };
        if fingerprint(self.buf, at) == be32(self.buf, at + 4) {
            Ok(())
        } else {
            Err(StunError::BadFingerprint)
        }
    }
}

/// HMAC-SHA1 over the message up to the MESSAGE-INTEGRITY attribute at `at`, with the
/// header length covering that attribute (RFC 5389 15.4).
pub(crate) fn integrity(buf: &[u8], at: usize, key: &[u8]) -> [u8; 20] {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    let len = (at - HEADER_LEN + 24) as u16;
    mac.update(&buf[..2]);
    mac.update(&len.to_be_bytes());
    mac.update(&buf[4..at]);
    mac.finalize().into_bytes().into()
}

/// CRC-32 of the message up to the FINGERPRINT attribute at `at`, length patched to
/// cover it, XORed with "STUN".
pub(crate) fn fingerprint(buf: &[u8], at: usize) -> u32 {
    let len = (at - HEADER_LEN + 8) as u16;
    let mut h = crc32fast::Hasher::new();
    h.update(&buf[..2]);
    h.update(&len.to_be_bytes());
    h.update(&buf[4..at]);
    h.finalize() ^ FINGERPRINT_XOR
}

#[cfg(test)]
mod tests;
