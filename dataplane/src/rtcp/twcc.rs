//! Transport-wide congestion control feedback
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01 section 3.1).

use super::{FMT_TWCC, PT_RTPFB, RtcpError, be32, need};

/// Receive status of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwccSymbol {
    NotReceived = 0,
    /// Received, delta fits one unsigned byte.
    SmallDelta = 1,
    /// Received, delta needs a signed 16-bit field (large or negative).
    LargeDelta = 2,
}

impl TwccSymbol {
    fn from_bits(b: u16) -> Option<Self> {
        match b {
            0 => Some(Self::NotReceived),
            1 => Some(Self::SmallDelta),
            2 => Some(Self::LargeDelta),
            _ => None,
        }
    }
    fn delta_len(self) -> usize {
        self as usize
    }
    /// The symbol a receive delta (in 250 µs ticks) needs.
    pub fn for_delta(delta: Option<i32>) -> Result<Self, RtcpError> {
        match delta {
            None => Ok(Self::NotReceived),
            Some(0..=255) => Ok(Self::SmallDelta),
            Some(d) if i16::try_from(d).is_ok() => Ok(Self::LargeDelta),
            Some(_) => Err(RtcpError::OutOfRange("TWCC receive delta")),
        }
    }
}

/// One packet's entry: its transport-wide sequence number and, if received, the arrival
/// delta from the previous received packet (the first: from the reference time), in
/// 250 µs ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwccStatus {
    pub seq: u16,
    pub delta: Option<i32>,
}

#[derive(Debug, Clone, Copy)]
pub struct TransportCc<'a> {
    pub sender_ssrc: u32,
    pub media_ssrc: u32,
    pub base_seq: u16,
    pub status_count: u16,
    /// Signed, in 64 ms units.
    pub reference_time: i32,
    pub feedback_count: u8,
    body: &'a [u8],
    deltas_at: usize,
}

const CHUNKS_AT: usize = 16;

/// Capacity of a chunk in symbols, and the symbol at `idx`.
fn chunk_symbol(chunk: u16, idx: usize) -> (usize, u16) {
    if chunk & 0x8000 == 0 {
        (usize::from(chunk & 0x1fff), (chunk >> 13) & 3)
    } else if chunk & 0x4000 == 0 {
        (14, (chunk >> (13 - idx.min(13))) & 1)
    } else {
        (7, (chunk >> (12 - 2 * idx.min(6))) & 3)
    }
}

impl<'a> TransportCc<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        need(PT_RTPFB, body, CHUNKS_AT, "TWCC header")?;
        let status_count = u16::from_be_bytes([body[10], body[11]]);
        let mut pos = CHUNKS_AT;
        let mut seen = 0usize;
        let mut delta_bytes = 0usize;
        while seen < usize::from(status_count) {
            let chunk = body
                .get(pos..pos + 2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .ok_or(RtcpError::Malformed("TWCC status chunks overrun packet"))?;
            pos += 2;
            let (cap, _) = chunk_symbol(chunk, 0);
            let take = cap.min(usize::from(status_count) - seen);
            for idx in 0..take {
                let sym = TwccSymbol::from_bits(chunk_symbol(chunk, idx).1)
                    .ok_or(RtcpError::Malformed("TWCC reserved status symbol"))?;
                delta_bytes += sym.delta_len();
                // A run-length chunk repeats one symbol: no need to look at every index.
                if chunk & 0x8000 == 0 {
                    delta_bytes += sym.delta_len() * (take - 1);
                    break;
                }
            }
            seen += take;
        }
        if pos + delta_bytes > body.len() {
            return Err(RtcpError::Malformed("TWCC receive deltas overrun packet"));
        }
        let rt = be32(body, 12) >> 8;
        Ok(Self {
            sender_ssrc: be32(body, 0),
            media_ssrc: be32(body, 4),
            base_seq: u16::from_be_bytes([body[8], body[9]]),
            status_count,
            reference_time: ((rt << 8) as i32) >> 8,
            feedback_count: body[15],
            body,
            deltas_at: pos,
        })
    }

    /// Every packet's status in sequence order.
    pub fn statuses(&self) -> TwccStatuses<'a> {
        TwccStatuses {
            body: self.body,
            chunk_pos: CHUNKS_AT,
            idx: 0,
            delta_pos: self.deltas_at,
            seq: self.base_seq,
            remaining: self.status_count,
        }
    }
}

/// Iterator over a validated feedback packet's statuses.
#[derive(Debug, Clone)]
pub struct TwccStatuses<'a> {
    body: &'a [u8],
    chunk_pos: usize,
    idx: usize,
    delta_pos: usize,
    seq: u16,
    remaining: u16,
}

impl Iterator for TwccStatuses<'_> {
    type Item = TwccStatus;

    fn next(&mut self) -> Option<TwccStatus> {
        if self.remaining == 0 {
            return None;
        }
        let (cap, bits) = loop {
            let c = self.body.get(self.chunk_pos..self.chunk_pos + 2)?;
            let chunk = u16::from_be_bytes([c[0], c[1]]);
            let (cap, bits) = chunk_symbol(chunk, self.idx);
            if self.idx < cap {
                break (cap, bits);
            }
            self.chunk_pos += 2;
            self.idx = 0;
        };
        self.idx += 1;
        if self.idx == cap {
            self.chunk_pos += 2;
            self.idx = 0;
        }
        let delta = match TwccSymbol::from_bits(bits)? {
            TwccSymbol::NotReceived => None,
            TwccSymbol::SmallDelta => {
                let d = *self.body.get(self.delta_pos)?;
                self.delta_pos += 1;
                Some(i32::from(d))
            }
            TwccSymbol::LargeDelta => {
                let d = self.body.get(self.delta_pos..self.delta_pos + 2)?;
                self.delta_pos += 2;
                Some(i32::from(i16::from_be_bytes([d[0], d[1]])))
            }
        };
        let status = TwccStatus {
            seq: self.seq,
            delta,
        };
        self.seq = self.seq.wrapping_add(1);
        self.remaining -= 1;
        Some(status)
    }
}

/// Writes one TWCC feedback packet (with its RTCP header) into `out`; returns its length.
/// `deltas[i]` is the receive delta of packet `base_seq + i` in 250 µs ticks, or `None`
/// if it was not received.
pub(crate) fn write(
    out: &mut [u8],
    sender_ssrc: u32,
    media_ssrc: u32,
    base_seq: u16,
    reference_time: i32,
    feedback_count: u8,
    deltas: &[Option<i32>],
) -> Result<usize, RtcpError> {
    let count =
        u16::try_from(deltas.len()).map_err(|_| RtcpError::OutOfRange("TWCC status count"))?;
    if !(-(1 << 23)..(1 << 23)).contains(&reference_time) {
        return Err(RtcpError::OutOfRange("TWCC reference time"));
    }
    let mut w = Cursor { out, pos: 0 };
    w.put(&[0x80 | FMT_TWCC, PT_RTPFB, 0, 0])?;
    w.put(&sender_ssrc.to_be_bytes())?;
    w.put(&media_ssrc.to_be_bytes())?;
    w.put(&base_seq.to_be_bytes())?;
    w.put(&count.to_be_bytes())?;
    let rt = (reference_time as u32) & 0x00ff_ffff;
    w.put(&((rt << 8) | u32::from(feedback_count)).to_be_bytes())?;

    let sym = |i: usize| TwccSymbol::for_delta(deltas[i]);
    let n = deltas.len();
    let mut i = 0;
    while i < n {
        let first = sym(i)?;
        let mut run = 1;
        while i + run < n && run < 0x1fff && sym(i + run)? == first {
            run += 1;
        }
        let k1 = 14.min(n - i);
        let one_bit_ok = (i..i + k1).try_fold(true, |ok, j| {
            Ok::<_, RtcpError>(ok && sym(j)? != TwccSymbol::LargeDelta)
        })?;
        let chunk: u16;
        let used;
        if run >= 14 || (run >= 7 && !one_bit_ok) || run == n - i && run > 7 {
            chunk = ((first as u16) << 13) | run as u16;
            used = run;
        } else if one_bit_ok {
            let mut c = 0x8000u16;
            for j in 0..k1 {
                c |= (sym(i + j)? as u16) << (13 - j);
            }
            chunk = c;
            used = k1;
        } else {
            let k2 = 7.min(n - i);
            let mut c = 0xc000u16;
            for j in 0..k2 {
                c |= (sym(i + j)? as u16) << (12 - 2 * j);
            }
            chunk = c;
            used = k2;
        }
        w.put(&chunk.to_be_bytes())?;
        i += used;
    }
    for d in deltas.iter().flatten() {
        match TwccSymbol::for_delta(Some(*d))? {
            TwccSymbol::SmallDelta => w.put(&[*d as u8])?,
            _ => w.put(&(*d as i16).to_be_bytes())?,
        }
    }
    let pad = (4 - w.pos % 4) % 4;
    if pad > 0 {
        let mut padding = [0u8; 3];
        padding[pad - 1] = pad as u8;
        w.put(&padding[..pad])?;
        w.out[0] |= 0x20;
    }
    let words = (w.pos / 4 - 1) as u16;
    w.out[2..4].copy_from_slice(&words.to_be_bytes());
    Ok(w.pos)
}

pub(crate) struct Cursor<'o> {
    pub out: &'o mut [u8],
    pub pos: usize,
}

impl Cursor<'_> {
    #[inline]
    pub fn put(&mut self, bytes: &[u8]) -> Result<(), RtcpError> {
        let dst = self
            .out
            .get_mut(self.pos..self.pos + bytes.len())
            .ok_or(RtcpError::BufferTooSmall)?;
        dst.copy_from_slice(bytes);
        self.pos += bytes.len();
        Ok(())
    }
}
