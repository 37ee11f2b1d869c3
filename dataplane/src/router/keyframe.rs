//! Keyframe detection from the first bytes of an RTP payload, per codec. A subscriber
//! switches layers only at a keyframe, so a false positive breaks its decoder and a false
//! negative only delays the switch: when in doubt, say no.

use super::Codec;
use crate::rewrite::vp8;

/// True when `payload` is the first packet of a keyframe (or of a new coded sequence).
pub fn is_keyframe(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Vp8 => vp8::is_keyframe(payload),
        Codec::Vp9 => vp9(payload),
        Codec::H264 => h264(payload),
        Codec::Av1 => av1(payload),
        // Audio: every packet decodes on its own.
        Codec::Opus => true,
        Codec::Other => false,
    }
}

/// RFC 9628: P (inter-picture predicted) clear, B (start of frame) set, and spatial layer
/// 0 when layer indices are present.
fn vp9(payload: &[u8]) -> bool {
    let Some(&d) = payload.first() else {
        return false;
    };
    let (i, p, l, b) = (d & 0x80 != 0, d & 0x40 != 0, d & 0x20 != 0, d & 0x08 != 0);
    if p || !b {
        return false;
    }
    if !l {
        return true;
    }
    let mut pos = 1;
    if i {
        pos += if payload.get(1).is_some_and(|m| m & 0x80 != 0) {
            2
        } else {
            1
        };
    }
    // Layer indices: TID(3) U(1) SID(3) D(1).
    payload.get(pos).is_some_and(|li| (li >> 1) & 0x07 == 0)
}

/// RFC 6184: an IDR slice or a parameter set that precedes one, whole, in a STAP-A, or
/// at the start of an FU-A.
fn h264(payload: &[u8]) -> bool {
    const IDR: u8 = 5;
    const SPS: u8 = 7;
    const STAP_A: u8 = 24;
    const FU_A: u8 = 28;
    let Some(&nal) = payload.first() else {
        return false;
    };
    match nal & 0x1f {
        IDR | SPS => true,
        STAP_A => {
            let mut pos = 1;
            while let Some(len) = payload.get(pos..pos + 2) {
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                let Some(&inner) = payload.get(pos + 2) else {
                    return false;
                };
                if matches!(inner & 0x1f, IDR | SPS) {
                    return true;
                }
                pos += 2 + len;
            }
            false
        }
        FU_A => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && matches!(fu & 0x1f, IDR | SPS)),
        _ => false,
    }
}

/// AV1 RTP aggregation header: N marks the first packet of a new coded video sequence
/// (a keyframe with a sequence header); Z clear means the packet starts an OBU.
fn av1(payload: &[u8]) -> bool {
    payload
        .first()
        .is_some_and(|h| h & 0x08 != 0 && h & 0x80 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_codec() {
        // VP8: S bit, PID 0, then a payload header with the inverse key-frame bit clear.
        assert!(is_keyframe(Codec::Vp8, &[0x10, 0x00, 0x9d, 0x01, 0x2a]));
        assert!(!is_keyframe(Codec::Vp8, &[0x10, 0x01]));
        assert!(is_keyframe(Codec::H264, &[0x65, 0x88]));
        assert!(!is_keyframe(Codec::H264, &[0x41, 0x9a]));
        assert!(is_keyframe(Codec::H264, &[0x7c, 0x85]));
        assert!(!is_keyframe(Codec::H264, &[0x7c, 0x05]));
        assert!(is_keyframe(
            Codec::H264,
            &[0x18, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x65]
        ));
        assert!(is_keyframe(Codec::Vp9, &[0x08]));
        assert!(!is_keyframe(Codec::Vp9, &[0x48]));
        assert!(is_keyframe(Codec::Vp9, &[0x28, 0x00]));
        assert!(!is_keyframe(Codec::Vp9, &[0x28, 0x02]));
        assert!(is_keyframe(Codec::Av1, &[0x18]));
        assert!(!is_keyframe(Codec::Av1, &[0x10]));
        assert!(!is_keyframe(Codec::Other, &[0x00]));
        for codec in [Codec::Vp8, Codec::Vp9, Codec::H264, Codec::Av1] {
            assert!(!is_keyframe(codec, &[]));
        }
    }
}
