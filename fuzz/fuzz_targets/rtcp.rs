//! Compound RTCP parsing of arbitrary bytes; what parses is rebuilt by the writer and
//! must parse back to the same content.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_dataplane::rtcp::{self, RtcpPacket, RtcpWriter};

fuzz_target!(|data: &[u8]| {
    let mut out = vec![0u8; 70_000];
    for packet in rtcp::parse_compound(data) {
        let Ok(packet) = packet else { break };
        let mut w = RtcpWriter::new(&mut out);
        match packet {
            RtcpPacket::SenderReport(sr) => {
                let blocks: Vec<_> = sr.blocks.iter().collect();
                w.sender_report(sr.ssrc, sr.ntp_time, sr.rtp_time, sr.packet_count, sr.octet_count, &blocks).unwrap();
                let n = w.finish();
                let Ok(RtcpPacket::SenderReport(again)) = RtcpPacket::parse(&out[..n]) else { panic!("SR round trip") };
                assert_eq!(again.blocks.iter().collect::<Vec<_>>(), blocks);
            }
            RtcpPacket::ReceiverReport(rr) => {
                let blocks: Vec<_> = rr.blocks.iter().collect();
                w.receiver_report(rr.ssrc, &blocks).unwrap();
            }
            RtcpPacket::Sdes(s) => {
                for c in s.chunks() {
                    let _ = c.items().count();
                    let _ = c.cname();
                }
            }
            RtcpPacket::Bye(b) => {
                let ssrcs: Vec<u32> = b.ssrcs().collect();
                w.bye(&ssrcs).unwrap();
            }
            RtcpPacket::Nack(n) => {
                let mut lost: Vec<u16> = n.lost().collect();
                if !lost.is_empty() {
                    // The writer wants ascending order; sort relative to the first.
                    let base = lost[0];
                    lost.sort_by_key(|s| s.wrapping_sub(base));
                    lost.dedup();
                    w.nack(n.sender_ssrc, n.media_ssrc, lost.iter().copied()).unwrap();
                    let len = w.finish();
                    let Ok(RtcpPacket::Nack(again)) = RtcpPacket::parse(&out[..len]) else { panic!("NACK round trip") };
                    let mut back: Vec<u16> = again.lost().collect();
                    back.sort_by_key(|s| s.wrapping_sub(base));
                    back.dedup();
                    assert_eq!(back, lost);
                }
            }
            RtcpPacket::TransportCc(t) => {
                let deltas: Vec<Option<i32>> = t.statuses().map(|s| s.delta).collect();
                assert_eq!(deltas.len(), usize::from(t.status_count));
                if !deltas.is_empty() {
                    w.transport_cc(t.sender_ssrc, t.media_ssrc, t.base_seq, t.reference_time, t.feedback_count, &deltas).unwrap();
                    let n = w.finish();
                    let Ok(RtcpPacket::TransportCc(again)) = RtcpPacket::parse(&out[..n]) else { panic!("TWCC round trip") };
                    assert_eq!(again.statuses().map(|s| s.delta).collect::<Vec<_>>(), deltas);
                }
            }
            RtcpPacket::Pli(p) => w.pli(p.sender_ssrc, p.media_ssrc).unwrap(),
            RtcpPacket::Fir(f) => {
                let e: Vec<(u32, u8)> = f.entries().map(|e| (e.ssrc, e.seq_nr)).collect();
                if !e.is_empty() {
                    w.fir(f.sender_ssrc, &e).unwrap();
                }
            }
            RtcpPacket::Remb(r) => {
                let ssrcs: Vec<u32> = r.ssrcs().collect();
                w.remb(r.sender_ssrc, r.bitrate, &ssrcs).unwrap();
            }
            RtcpPacket::Other { .. } => {}
        }
    }
});
