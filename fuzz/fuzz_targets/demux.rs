//! The worker's first step on every datagram: classify, then hand to the parser the
//! class names. Whatever arrives, nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_dataplane::demux::{PacketKind, classify};
use sluice_dataplane::rtcp;
use sluice_dataplane::rtp::RtpPacket;
use sluice_dataplane::stun::StunMessage;

fuzz_target!(|data: &[u8]| {
    match classify(data) {
        PacketKind::Stun => {
            let _ = StunMessage::parse(data);
        }
        PacketKind::Rtp => {
            if let Ok(p) = RtpPacket::parse(data) {
                assert!(!(192..=223).contains(&data[1]));
                let _ = p.extensions().count();
            }
        }
        PacketKind::Rtcp => {
            let _ = rtcp::parse_compound(data).count();
        }
        PacketKind::Dtls => assert!((20..=63).contains(&data[0])),
        PacketKind::Unknown => {}
    }
});
