//! VP8 payload descriptor (RFC 7741 4.2): the fields an SFU must rewrite so that a
//! subscriber sees one continuous picture-ID and TL0PICIDX sequence across layer switches.

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Vp8Error {
    #[error("VP8 payload descriptor truncated")]
    Truncated,
}

/// Positions and values of the rewritable descriptor fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Descriptor {
    /// Offset (within the payload) and width in bits (7 or 15) of the picture ID.
    pub picture_id: Option<(usize, u8, u16)>,
    /// Offset and value of TL0PICIDX.
    pub tl0_pic_idx: Option<(usize, u8)>,
    pub temporal_id: Option<u8>,
    /// S bit with partition index 0: this packet starts a frame.
    pub frame_start: bool,
    /// Length of the descriptor; the VP8 payload header follows.
    pub len: usize,
}

impl Vp8Descriptor {
    pub fn parse(payload: &[u8]) -> Result<Self, Vp8Error> {
        let &b0 = payload.first().ok_or(Vp8Error::Truncated)?;
        let mut d = Self {
            picture_id: None,
            tl0_pic_idx: None,
            temporal_id: None,
            frame_start: b0 & 0x10 != 0 && b0 & 0x07 == 0,
            len: 1,
        };
        if b0 & 0x80 == 0 {
            return Ok(d);
        }
        let &x = payload.get(1).ok_or(Vp8Error::Truncated)?;
        let mut pos = 2;
        if x & 0x80 != 0 {
            let &p0 = payload.get(pos).ok_or(Vp8Error::Truncated)?;
            if p0 & 0x80 != 0 {
                let &p1 = payload.get(pos + 1).ok_or(Vp8Error::Truncated)?;
                d.picture_id = Some((pos, 15, (u16::from(p0 & 0x7f) << 8) | u16::from(p1)));
                pos += 2;
            } else {
                d.picture_id = Some((pos, 7, u16::from(p0)));
                pos += 1;
            }
        }
        if x & 0x40 != 0 {
            let &t = payload.get(pos).ok_or(Vp8Error::Truncated)?;
            d.tl0_pic_idx = Some((pos, t));
            pos += 1;
        }
        if x & 0x30 != 0 {
            let &t = payload.get(pos).ok_or(Vp8Error::Truncated)?;
            if x & 0x20 != 0 {
                d.temporal_id = Some(t >> 6);
            }
            pos += 1;
        }
        if pos > payload.len() {
            return Err(Vp8Error::Truncated);
        }
        d.len = pos;
        Ok(d)
    }
}

/// True when `payload` (an RTP payload carrying VP8) starts a key frame: the first
/// partition's first packet with the inverse key-frame bit clear (RFC 7741 4.3).
pub fn is_keyframe(payload: &[u8]) -> bool {
    match Vp8Descriptor::parse(payload) {
        Ok(d) if d.frame_start => payload.get(d.len).is_some_and(|h| h & 0x01 == 0),
        _ => false,
    }
}

/// Keeps picture IDs and TL0PICIDX continuous for one subscriber across source switches.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Vp8Rewriter {
    pid_offset: u16,
    tl0_offset: u8,
    last_pid: Option<u16>,
    last_tl0: Option<u8>,
    rebase: bool,
}

impl Vp8Rewriter {
    /// The next packet comes from a new source: continue from what was last sent.
    pub(crate) fn switch_source(&mut self) {
        self.rebase = true;
    }

    pub(crate) fn rewrite(&mut self, payload: &mut [u8]) -> Result<(), Vp8Error> {
        let d = Vp8Descriptor::parse(payload)?;
        if self.rebase {
            if let (Some((_, bits, pid)), Some(last)) = (d.picture_id, self.last_pid) {
                let m = 1u16 << bits;
                self.pid_offset = last.wrapping_add(1).wrapping_sub(pid) % m;
            }
            if let (Some((_, tl0)), Some(last)) = (d.tl0_pic_idx, self.last_tl0) {
                self.tl0_offset = last.wrapping_add(1).wrapping_sub(tl0);
            }
            self.rebase = false;
        }
        if let Some((at, bits, pid)) = d.picture_id {
            // Picture IDs wrap at 2^bits (7 or 15); all arithmetic stays in that ring.
            let m = 1u16 << bits;
            let out = pid.wrapping_add(self.pid_offset) % m;
            if bits == 15 {
                payload[at] = 0x80 | (out >> 8) as u8;
                payload[at + 1] = out as u8;
            } else {
                payload[at] = out as u8;
            }
            let newer = self
                .last_pid
                .is_none_or(|last| out.wrapping_sub(last) % m < m / 2);
            if newer {
                self.last_pid = Some(out);
            }
        }
        if let Some((at, tl0)) = d.tl0_pic_idx {
            let out = tl0.wrapping_add(self.tl0_offset);
            payload[at] = out;
            if self
                .last_tl0
                .is_none_or(|last| out.wrapping_sub(last) < 128)
            {
                self.last_tl0 = Some(out);
            }
        }
        Ok(())
    }
}
