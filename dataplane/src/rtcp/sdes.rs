//! Source description (RFC 3550 6.5). The SFU reads CNAMEs to group a publisher's
//! streams; everything else is carried opaquely.

use super::{Header, RtcpError, be32};

pub const SDES_CNAME: u8 = 1;

#[derive(Debug, Clone, Copy)]
pub struct Sdes<'a> {
    count: u8,
    body: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesItem<'a> {
    pub kind: u8,
    pub text: &'a [u8],
}

#[derive(Debug, Clone, Copy)]
pub struct SdesChunk<'a> {
    pub ssrc: u32,
    items: &'a [u8],
}

impl<'a> SdesChunk<'a> {
    pub fn items(&self) -> impl Iterator<Item = SdesItem<'a>> + 'a {
        let mut rest = self.items;
        std::iter::from_fn(move || {
            // Validated at parse: every item is complete and the list ends with a 0 type.
            let (&kind, tail) = rest.split_first()?;
            if kind == 0 {
                return None;
            }
            let len = usize::from(tail[0]);
            let text = &tail[1..1 + len];
            rest = &tail[1 + len..];
            Some(SdesItem { kind, text })
        })
    }
    pub fn cname(&self) -> Option<&'a [u8]> {
        self.items().find(|i| i.kind == SDES_CNAME).map(|i| i.text)
    }
}

/// Walks one chunk; returns the item bytes and the chunk's total padded length.
fn chunk_len(buf: &[u8]) -> Result<(usize, usize), RtcpError> {
    if buf.len() < 4 {
        return Err(RtcpError::Malformed("SDES chunk without SSRC"));
    }
    let mut pos = 4;
    loop {
        match buf.get(pos) {
            None => return Err(RtcpError::Malformed("SDES chunk without end item")),
            Some(0) => {
                let items_end = pos + 1;
                let padded = items_end.div_ceil(4) * 4;
                if padded > buf.len() {
                    return Err(RtcpError::Malformed("SDES chunk padding"));
                }
                return Ok((items_end, padded));
            }
            Some(_) => {
                let len = *buf
                    .get(pos + 1)
                    .ok_or(RtcpError::Malformed("SDES item length"))?;
                pos += 2 + usize::from(len);
                if pos > buf.len() {
                    return Err(RtcpError::Malformed("SDES item overruns packet"));
                }
            }
        }
    }
}

impl<'a> Sdes<'a> {
    pub(crate) fn parse(hdr: Header, body: &'a [u8]) -> Result<Self, RtcpError> {
        let mut rest = body;
        for _ in 0..hdr.count {
            let (_, padded) = chunk_len(rest)?;
            rest = &rest[padded..];
        }
        Ok(Self {
            count: hdr.count,
            body,
        })
    }

    pub fn chunks(&self) -> impl Iterator<Item = SdesChunk<'a>> + 'a {
        let mut rest = self.body;
        (0..self.count).map(move |_| {
            let (items_end, padded) = chunk_len(rest).unwrap_or((rest.len(), rest.len()));
            let chunk = SdesChunk {
                ssrc: be32(rest, 0),
                items: &rest[4..items_end],
            };
            rest = &rest[padded..];
            chunk
        })
    }
}
