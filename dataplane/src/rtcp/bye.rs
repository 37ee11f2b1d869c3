//! BYE (RFC 3550 6.6).

use super::{Header, PT_BYE, RtcpError, be32, need};

#[derive(Debug, Clone, Copy)]
pub struct Bye<'a> {
    ssrcs: &'a [u8],
    pub reason: Option<&'a [u8]>,
}

impl<'a> Bye<'a> {
    pub(crate) fn parse(hdr: Header, body: &'a [u8]) -> Result<Self, RtcpError> {
        let n = 4 * usize::from(hdr.count);
        need(PT_BYE, body, n, "BYE SSRC list")?;
        let reason = match body.get(n) {
            None => None,
            Some(&len) => Some(
                body.get(n + 1..n + 1 + usize::from(len))
                    .ok_or(RtcpError::Malformed("BYE reason length"))?,
            ),
        };
        Ok(Self {
            ssrcs: &body[..n],
            reason,
        })
    }

    pub fn ssrcs(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        self.ssrcs.chunks_exact(4).map(|c| be32(c, 0))
    }
}
