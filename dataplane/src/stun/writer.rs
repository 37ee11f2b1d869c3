//! Writes STUN messages into a caller-provided buffer, without allocating.

use super::{
    ATTR_ERROR_CODE, ATTR_FINGERPRINT, ATTR_ICE_CONTROLLED, ATTR_ICE_CONTROLLING,
    ATTR_MESSAGE_INTEGRITY, ATTR_PRIORITY, ATTR_USE_CANDIDATE, ATTR_USERNAME,
    ATTR_XOR_MAPPED_ADDRESS, BINDING_ERROR, BINDING_SUCCESS, HEADER_LEN, MAGIC_COOKIE, StunError,
    StunMessage, fingerprint, integrity,
};
use std::net::{IpAddr, SocketAddr};

/// Builds one STUN message. MESSAGE-INTEGRITY and FINGERPRINT, when wanted, must be the
/// last attributes added, in that order.
#[derive(Debug)]
pub struct StunWriter<'o> {
    out: &'o mut [u8],
    pos: usize,
}

impl<'o> StunWriter<'o> {
    pub fn new(
        out: &'o mut [u8],
        message_type: u16,
        transaction_id: &[u8; 12],
    ) -> Result<Self, StunError> {
        let header = out.get_mut(..HEADER_LEN).ok_or(StunError::BufferTooSmall)?;
        header[0..2].copy_from_slice(&message_type.to_be_bytes());
        header[2..4].copy_from_slice(&[0, 0]);
        header[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        header[8..20].copy_from_slice(transaction_id);
        Ok(Self {
            out,
            pos: HEADER_LEN,
        })
    }

    fn set_length(&mut self) {
        let len = (self.pos - HEADER_LEN) as u16;
        self.out[2..4].copy_from_slice(&len.to_be_bytes());
    }

    /// Appends an attribute with its padding.
    pub fn attribute(&mut self, attr: u16, value: &[u8]) -> Result<&mut Self, StunError> {
        let len =
            u16::try_from(value.len()).map_err(|_| StunError::OutOfRange("attribute length"))?;
        let padded = (value.len() + 3) & !3;
        let dst = self
            .out
            .get_mut(self.pos..self.pos + 4 + padded)
            .ok_or(StunError::BufferTooSmall)?;
        dst[0..2].copy_from_slice(&attr.to_be_bytes());
        dst[2..4].copy_from_slice(&len.to_be_bytes());
        dst[4..4 + value.len()].copy_from_slice(value);
        dst[4 + value.len()..].fill(0);
        self.pos += 4 + padded;
        if self.pos - HEADER_LEN > usize::from(u16::MAX) {
            return Err(StunError::OutOfRange("message length"));
        }
        self.set_length();
        Ok(self)
    }

    pub fn username(&mut self, username: &[u8]) -> Result<&mut Self, StunError> {
        self.attribute(ATTR_USERNAME, username)
    }
    pub fn priority(&mut self, priority: u32) -> Result<&mut Self, StunError> {
        self.attribute(ATTR_PRIORITY, &priority.to_be_bytes())
    }
    pub fn use_candidate(&mut self) -> Result<&mut Self, StunError> {
        self.attribute(ATTR_USE_CANDIDATE, &[])
    }
    pub fn ice_controlling(&mut self, tie_breaker: u64) -> Result<&mut Self, StunError> {
        self.attribute(ATTR_ICE_CONTROLLING, &tie_breaker.to_be_bytes())
    }
    pub fn ice_controlled(&mut self, tie_breaker: u64) -> Result<&mut Self, StunError> {
        self.attribute(ATTR_ICE_CONTROLLED, &tie_breaker.to_be_bytes())
    }

    pub fn xor_mapped_address(&mut self, addr: SocketAddr) -> Result<&mut Self, StunError> {
        let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
        let mut v = [0u8; 20];
        v[2..4].copy_from_slice(&port.to_be_bytes());
        let len = match addr.ip() {
            IpAddr::V4(ip) => {
                v[1] = 1;
                v[4..8].copy_from_slice(&(u32::from(ip) ^ MAGIC_COOKIE).to_be_bytes());
                8
            }
            IpAddr::V6(ip) => {
                v[1] = 2;
                let mut mask = [0u8; 16];
                mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                mask[4..].copy_from_slice(&self.out[8..20]);
                for ((d, a), m) in v[4..20].iter_mut().zip(ip.octets()).zip(mask) {
                    *d = a ^ m;
                }
                20
            }
        };
        self.attribute(ATTR_XOR_MAPPED_ADDRESS, &v[..len])
    }

    pub fn error_code(&mut self, code: u16, reason: &[u8]) -> Result<&mut Self, StunError> {
        if !(300..700).contains(&code) || reason.len() > 763 {
            return Err(StunError::OutOfRange("error code"));
        }
        let mut v = [0u8; 767];
        v[2] = (code / 100) as u8;
        v[3] = (code % 100) as u8;
        v[4..4 + reason.len()].copy_from_slice(reason);
        self.attribute(ATTR_ERROR_CODE, &v[..4 + reason.len()])
    }

    /// Appends MESSAGE-INTEGRITY keyed with the short-term credential `key`.
    pub fn message_integrity(&mut self, key: &[u8]) -> Result<&mut Self, StunError> {
        let at = self.pos;
        self.attribute(ATTR_MESSAGE_INTEGRITY, &[0; 20])?;
        let mac = integrity(self.out, at, key);
        self.out[at + 4..at + 24].copy_from_slice(&mac);
        Ok(self)
    }

    pub fn fingerprint(&mut self) -> Result<&mut Self, StunError> {
        let at = self.pos;
        self.attribute(ATTR_FINGERPRINT, &[0; 4])?;
        let crc = fingerprint(self.out, at);
        self.out[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
        Ok(self)
    }

    /// The message length in bytes.
    pub fn finish(self) -> usize {
        self.pos
    }
}

/// The ICE-lite answer to a verified binding request: a success response carrying the
/// source address the request came from, MESSAGE-INTEGRITY and FINGERPRINT.
pub fn binding_success(
    out: &mut [u8],
    request: &StunMessage<'_>,
    from: SocketAddr,
    local_password: &[u8],
) -> Result<usize, StunError> {
    let mut w = StunWriter::new(out, BINDING_SUCCESS, request.transaction_id())?;
    w.xor_mapped_address(from)?
        .message_integrity(local_password)?
        .fingerprint()?;
    Ok(w.finish())
}

/// An error response (e.g. 400 Bad Request, 401 Unauthorized, 487 Role Conflict). Signed
/// only when `password` is given: a 401 cannot be, since the credential was wrong.
pub fn binding_error(
    out: &mut [u8],
    request: &StunMessage<'_>,
    code: u16,
    reason: &[u8],
    password: Option<&[u8]>,
) -> Result<usize, StunError> {
    let mut w = StunWriter::new(out, BINDING_ERROR, request.transaction_id())?;
    w.error_code(code, reason)?;
    if let Some(key) = password {
        w.message_integrity(key)?;
    }
    w.fingerprint()?;
    Ok(w.finish())
}
