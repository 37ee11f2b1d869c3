//! Packet parsing and rewriting: our zero-copy views beside the webrtc-rs crates they
//! replace on the hot path, in one criterion run.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use sluice_bench::fixtures::rtp_packet;
use sluice_dataplane::rewrite::RtpRewriter;
use sluice_dataplane::rtcp::{self, ReportBlock, RtcpPacket, RtcpWriter};
use sluice_dataplane::rtp::{ExtensionIds, RtpPacket};
use sluice_dataplane::stun::{self, StunMessage, StunWriter};
use std::hint::black_box;
use webrtc_util::marshal::Unmarshal;

const IDS: ExtensionIds = ExtensionIds {
    mid: 1,
    rid: 2,
    repaired_rid: 0,
    transport_cc: 3,
    abs_send_time: 4,
    audio_level: 0,
};

fn rtp(c: &mut Criterion) {
    let mut g = c.benchmark_group("rtp_parse");
    for size in [160usize, 1200] {
        let p = rtp_packet(size);
        g.bench_function(format!("sluice/{size}"), |b| {
            b.iter(|| {
                let v = RtpPacket::parse(black_box(&p)).unwrap();
                let k = v.known_extensions(&IDS).unwrap();
                black_box((v.ssrc(), v.sequence_number(), k.transport_cc, k.rid))
            })
        });
        let bytes = Bytes::from(p.clone());
        g.bench_function(format!("webrtc_rtp/{size}"), |b| {
            b.iter(|| {
                let v = rtp::packet::Packet::unmarshal(&mut black_box(bytes.clone())).unwrap();
                black_box((
                    v.header.ssrc,
                    v.header.get_extension(3),
                    v.header.get_extension(2),
                ))
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("rewrite");
    for size in [160usize, 1200] {
        let p = rtp_packet(size);
        let mut buf = p.clone();
        let mut rw = RtpRewriter::new(0x5eed, 90_000, 1, 1, false);
        let mut seq = 0u16;
        g.bench_function(format!("copy_rewrite/{size}"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                buf.copy_from_slice(&p);
                buf[2..4].copy_from_slice(&seq.to_be_bytes());
                black_box(rw.rewrite(u64::from(seq) * 1000, &mut buf).unwrap())
            })
        });
    }
    g.finish();
}

fn rtcp_compound() -> Vec<u8> {
    let block = ReportBlock {
        ssrc: 9,
        fraction_lost: 1,
        cumulative_lost: 2,
        extended_highest_seq: 3,
        jitter: 4,
        last_sr: 5,
        delay_since_last_sr: 6,
    };
    let mut buf = [0u8; 1500];
    let mut w = RtcpWriter::new(&mut buf);
    w.receiver_report(1, &[block]).unwrap();
    w.remb(1, 3_000_000, &[9]).unwrap();
    w.nack(1, 9, [10, 11, 15, 40]).unwrap();
    let deltas: Vec<Option<i32>> = (0..50)
        .map(|i| if i % 10 == 3 { None } else { Some(i % 40) })
        .collect();
    w.transport_cc(1, 9, 100, 5, 1, &deltas).unwrap();
    let n = w.finish();
    buf[..n].to_vec()
}

fn rtcp(c: &mut Criterion) {
    let mut g = c.benchmark_group("rtcp_parse");
    let p = rtcp_compound();
    g.bench_function("sluice/rr_remb_nack_twcc", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for pkt in rtcp::parse_compound(black_box(&p)) {
                match pkt.unwrap() {
                    RtcpPacket::TransportCc(t) => {
                        n += t.statuses().filter(|s| s.delta.is_some()).count()
                    }
                    RtcpPacket::Nack(k) => n += k.lost().count(),
                    RtcpPacket::ReceiverReport(r) => n += r.blocks.iter().count(),
                    _ => n += 1,
                }
            }
            black_box(n)
        })
    });
    let bytes = Bytes::from(p.clone());
    g.bench_function("webrtc_rtcp/rr_remb_nack_twcc", |b| {
        b.iter(|| {
            black_box(
                ::rtcp::packet::unmarshal(&mut black_box(bytes.clone()))
                    .unwrap()
                    .len(),
            )
        })
    });
    g.finish();
}

fn stun_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("stun_check");
    let mut req = [0u8; 200];
    let mut w = StunWriter::new(&mut req, stun::BINDING_REQUEST, &[3; 12]).unwrap();
    w.username(b"sfuufrag:peerufrag")
        .unwrap()
        .priority(1_853_824_767)
        .unwrap()
        .use_candidate()
        .unwrap();
    w.ice_controlling(42)
        .unwrap()
        .message_integrity(b"sfu-password")
        .unwrap()
        .fingerprint()
        .unwrap();
    let n = w.finish();
    let req = req[..n].to_vec();
    let mut out = [0u8; 200];
    let from = "10.1.2.3:50000".parse().unwrap();
    g.bench_function("sluice/verify_and_answer", |b| {
        b.iter(|| {
            let m = StunMessage::parse(black_box(&req)).unwrap();
            m.verify_fingerprint().unwrap();
            m.verify_integrity(b"sfu-password").unwrap();
            black_box(stun::binding_success(&mut out, &m, from, b"sfu-password").unwrap())
        })
    });
    g.bench_function("webrtc_stun/verify", |b| {
        use ::stun::fingerprint::FINGERPRINT;
        use ::stun::integrity::MessageIntegrity;
        let mi = MessageIntegrity::new_short_term_integrity("sfu-password".into());
        b.iter(|| {
            let mut m = ::stun::message::Message::new();
            m.raw = black_box(req.clone());
            m.decode().unwrap();
            FINGERPRINT.check(&m).unwrap();
            mi.check(&mut m).unwrap();
            black_box(m.transaction_id)
        })
    });
    g.finish();
}

criterion_group!(benches, rtp, rtcp, stun_bench);
criterion_main!(benches);
