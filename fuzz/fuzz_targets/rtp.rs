//! RTP view, extensions, VP8 descriptor and the rewriter on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_dataplane::rewrite::{RtpRewriter, vp8};
use sluice_dataplane::rtp::{ExtensionIds, RtpPacket};

const IDS: ExtensionIds = ExtensionIds { mid: 1, rid: 2, repaired_rid: 3, transport_cc: 4, abs_send_time: 5, audio_level: 6 };

fuzz_target!(|data: &[u8]| {
    let Ok(p) = RtpPacket::parse(data) else { return };
    assert!(p.header_len() + p.payload().len() + p.padding_len() == data.len());
    let _ = p.csrcs().count();
    for e in p.extensions() {
        if let Ok(e) = e {
            assert_eq!(&data[e.offset..e.offset + e.data.len()], e.data);
        }
    }
    let _ = p.known_extensions(&IDS);
    let _ = vp8::is_keyframe(p.payload());
    let mut copy = data.to_vec();
    let mut rw = RtpRewriter::new(7, 90_000, 100, 200, true);
    if rw.rewrite(0, &mut copy).is_ok() {
        let q = RtpPacket::parse(&copy).expect("rewritten packet still parses");
        assert_eq!((q.ssrc(), q.sequence_number(), q.timestamp()), (7, 100, 200));
        assert_eq!(q.payload().len(), p.payload().len());
    }
});
