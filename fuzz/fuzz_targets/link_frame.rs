//! Inter-node media frames on arbitrary bytes: whatever decodes re-encodes to the same
//! frame, byte for byte except flag bits this version ignores.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_dataplane::link::{self, FLAG_KEYFRAME, HEADER_LEN, MAX_FRAME};

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = link::decode(data) else { return };
    assert_eq!(frame.encoded_len(), data.len());
    let mut out = [0u8; MAX_FRAME];
    let n = link::encode_into(&frame, &mut out).expect("a decoded frame encodes");
    assert_eq!(n, data.len());
    assert_eq!(out[1], data[1] & FLAG_KEYFRAME);
    assert_eq!((out[0], &out[2..n]), (data[0], &data[2..]));
    assert_eq!(link::decode(&out[..n]), Ok(frame));
    assert!(n >= HEADER_LEN + 12);
});
