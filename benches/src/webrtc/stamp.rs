//! The bench trailer every synthetic media packet carries at the end of its RTP payload,
//! so a subscriber can verify it end to end whatever the codec framing put before it:
//! the fill the trailer covers, then magic, stream, sequence, send time, fill length and
//! a check word over all of it. The hash is the dataplane benchmark's.

use crate::dataplane::payload::{fill_hash, mix};

pub const MAGIC: u32 = 0x534c_5754;
pub const TRAILER_LEN: usize = 36;

/// What a subscriber learns from a verified packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The publisher's stream (publisher index and layer, as the generator numbers them).
    pub stream: u32,
    pub seq: u64,
    pub send_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampError {
    Short,
    Magic,
    Checksum,
}

fn check(stream: u32, seq: u64, send_ns: u64, fill_len: u32, fill: u64) -> u64 {
    let h = mix(mix(u64::from(MAGIC), u64::from(stream)), seq);
    mix(mix(mix(h, send_ns), u64::from(fill_len)), fill)
}

/// Writes a chunk of `len` bytes (at least [`TRAILER_LEN`]): a fill pattern, then the
/// trailer sealing it.
pub fn seal(out: &mut Vec<u8>, len: usize, stamp: Stamp) {
    let fill_len = len.saturating_sub(TRAILER_LEN);
    let start = out.len();
    out.extend((0..fill_len).map(|i| (i as u64).wrapping_mul(stamp.seq | 1) as u8));
    let fill = fill_hash(&out[start..]);
    let fill_len = fill_len as u32;
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&stamp.stream.to_le_bytes());
    out.extend_from_slice(&stamp.seq.to_le_bytes());
    out.extend_from_slice(&stamp.send_ns.to_le_bytes());
    out.extend_from_slice(&fill_len.to_le_bytes());
    let c = check(stamp.stream, stamp.seq, stamp.send_ns, fill_len, fill);
    // The check word overlaps nothing: 4+4+8+8+4 = 28, then 8 = 36.
    out.extend_from_slice(&c.to_le_bytes());
}

/// Checks the trailer at the end of `payload` and the fill before it.
pub fn verify(payload: &[u8]) -> Result<Stamp, StampError> {
    let at = payload
        .len()
        .checked_sub(TRAILER_LEN)
        .ok_or(StampError::Short)?;
    let t = &payload[at..];
    let u32_at = |i: usize| u32::from_le_bytes([t[i], t[i + 1], t[i + 2], t[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&t[i..i + 8]);
        u64::from_le_bytes(b)
    };
    if u32_at(0) != MAGIC {
        return Err(StampError::Magic);
    }
    let (stream, seq, send_ns, fill_len, c) =
        (u32_at(4), u64_at(8), u64_at(16), u32_at(24), u64_at(28));
    let fill = at
        .checked_sub(fill_len as usize)
        .map(|start| &payload[start..at])
        .ok_or(StampError::Short)?;
    if check(stream, seq, send_ns, fill_len, fill_hash(fill)) != c {
        return Err(StampError::Checksum);
    }
    Ok(Stamp {
        stream,
        seq,
        send_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_chunks_verify_behind_any_prefix_and_any_flip_is_caught() {
        let stamp = Stamp {
            stream: 7,
            seq: 123_456,
            send_ns: 42,
        };
        for len in [TRAILER_LEN, 100, 1100] {
            let mut p = vec![0x90, 0x80, 0x81, 0x23];
            seal(&mut p, len, stamp);
            assert_eq!(p.len(), 4 + len);
            assert_eq!(verify(&p), Ok(stamp));
            for i in 4..p.len() {
                let mut bad = p.clone();
                bad[i] ^= 0x01;
                assert!(verify(&bad).is_err(), "flip at {i} of {len} passed");
            }
        }
        assert_eq!(verify(&[0; 10]), Err(StampError::Short));
    }
}
