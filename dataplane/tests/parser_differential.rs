//! Differential tests of the hand-written parsers and writers against the webrtc-rs
//! crates (`rtp`, `rtcp`, `stun`): what they build we parse to the same fields, and what
//! we write they parse to the same fields.

use bytes::Bytes;
use proptest::prelude::*;
use sluice_dataplane::rtcp::{self, ReportBlock, RtcpPacket, RtcpWriter};
use sluice_dataplane::rtp::{ExtensionIds, RtpPacket};
use sluice_dataplane::stun::{self, StunMessage};
use webrtc_util::marshal::{Marshal, Unmarshal};

fn theirs_rtcp(buf: &[u8]) -> Vec<Box<dyn rtcp_crate::packet::Packet + Send + Sync>> {
    rtcp_crate::packet::unmarshal(&mut Bytes::copy_from_slice(buf))
        .expect("rtcp crate parses our output")
}
use ::rtcp as rtcp_crate;

fn downcast<T: 'static>(p: &(dyn rtcp_crate::packet::Packet + Send + Sync)) -> &T {
    p.as_any().downcast_ref::<T>().expect("packet type")
}

#[test]
fn rtcp_we_write_they_parse() {
    let block = ReportBlock {
        ssrc: 0x1111,
        fraction_lost: 12,
        cumulative_lost: -3,
        extended_highest_seq: 0x0001_0203,
        jitter: 77,
        last_sr: 0xabcd_ef01,
        delay_since_last_sr: 65_536,
    };
    let mut buf = [0u8; 1500];
    let mut w = RtcpWriter::new(&mut buf);
    w.sender_report(0xaaaa, 0x0102_0304_0506_0708, 90_000, 10, 12_000, &[block])
        .unwrap();
    w.receiver_report(0xbbbb, &[block, block]).unwrap();
    w.sdes_cname(0xaaaa, b"sluice-cname").unwrap();
    w.nack(0xbbbb, 0xcccc, [100u16, 101, 105, 116, 117, 200])
        .unwrap();
    w.pli(0xbbbb, 0xcccc).unwrap();
    w.fir(0xbbbb, &[(0xcccc, 7)]).unwrap();
    w.remb(0xbbbb, 2_500_000, &[0xcccc, 0xdddd]).unwrap();
    w.bye(&[0xaaaa]).unwrap();
    let n = w.finish();
    let ours: Vec<_> = rtcp::parse_compound(&buf[..n])
        .map(Result::unwrap)
        .collect();
    assert_eq!(ours.len(), 8);
    let theirs = theirs_rtcp(&buf[..n]);
    assert_eq!(theirs.len(), 8);

    use rtcp_crate::goodbye::Goodbye;
    use rtcp_crate::payload_feedbacks::full_intra_request::FullIntraRequest;
    use rtcp_crate::payload_feedbacks::picture_loss_indication::PictureLossIndication;
    use rtcp_crate::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
    use rtcp_crate::receiver_report::ReceiverReport;
    use rtcp_crate::sender_report::SenderReport;
    use rtcp_crate::source_description::SourceDescription;
    use rtcp_crate::transport_feedbacks::transport_layer_nack::TransportLayerNack;

    let sr = downcast::<SenderReport>(theirs[0].as_ref());
    assert_eq!(
        (
            sr.ssrc,
            sr.ntp_time,
            sr.rtp_time,
            sr.packet_count,
            sr.octet_count
        ),
        (0xaaaa, 0x0102_0304_0506_0708, 90_000, 10, 12_000)
    );
    let rb = &sr.reports[0];
    assert_eq!(
        (
            rb.ssrc,
            rb.fraction_lost,
            rb.last_sequence_number,
            rb.jitter,
            rb.last_sender_report,
            rb.delay
        ),
        (0x1111, 12, 0x0001_0203, 77, 0xabcd_ef01, 65_536)
    );
    assert_eq!(rb.total_lost, 0x00ff_fffd, "24-bit two's complement of -3");
    let rr = downcast::<ReceiverReport>(theirs[1].as_ref());
    assert_eq!((rr.ssrc, rr.reports.len()), (0xbbbb, 2));
    let sdes = downcast::<SourceDescription>(theirs[2].as_ref());
    assert_eq!(sdes.chunks[0].source, 0xaaaa);
    assert_eq!(sdes.chunks[0].items[0].text.as_ref(), b"sluice-cname");
    let nack = downcast::<TransportLayerNack>(theirs[3].as_ref());
    let mut lost: Vec<u16> = nack.nacks.iter().flat_map(|p| p.packet_list()).collect();
    lost.sort_unstable();
    assert_eq!(lost, vec![100, 101, 105, 116, 117, 200]);
    assert_eq!(
        downcast::<PictureLossIndication>(theirs[4].as_ref()).media_ssrc,
        0xcccc
    );
    let fir = downcast::<FullIntraRequest>(theirs[5].as_ref());
    assert_eq!((fir.fir[0].ssrc, fir.fir[0].sequence_number), (0xcccc, 7));
    let remb = downcast::<ReceiverEstimatedMaximumBitrate>(theirs[6].as_ref());
    assert!(
        (remb.bitrate - 2_500_000.0).abs() / 2_500_000.0 < 0.001,
        "{}",
        remb.bitrate
    );
    assert_eq!(remb.ssrcs, vec![0xcccc, 0xdddd]);
    assert_eq!(
        downcast::<Goodbye>(theirs[7].as_ref()).sources,
        vec![0xaaaa]
    );

    // And our own parser agrees with itself on every field.
    let RtcpPacket::SenderReport(s) = ours[0] else {
        panic!()
    };
    assert_eq!(s.blocks.iter().next(), Some(block));
    let RtcpPacket::Nack(nk) = ours[3] else {
        panic!()
    };
    assert_eq!(
        nk.lost().collect::<Vec<_>>(),
        vec![100, 101, 105, 116, 117, 200]
    );
    let RtcpPacket::Remb(r) = ours[6] else {
        panic!()
    };
    assert!(r.bitrate <= 2_500_000 && r.bitrate > 2_490_000);
    let RtcpPacket::Sdes(sd) = ours[2] else {
        panic!()
    };
    assert_eq!(
        sd.chunks().next().unwrap().cname(),
        Some(&b"sluice-cname"[..])
    );
}

#[test]
fn rtcp_they_write_we_parse() {
    use rtcp_crate::goodbye::Goodbye;
    use rtcp_crate::payload_feedbacks::full_intra_request::{FirEntry, FullIntraRequest};
    use rtcp_crate::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
    use rtcp_crate::receiver_report::ReceiverReport;
    use rtcp_crate::reception_report::ReceptionReport;
    use rtcp_crate::source_description::{
        SdesType, SourceDescription, SourceDescriptionChunk, SourceDescriptionItem,
    };
    use rtcp_crate::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};

    let packets: Vec<Box<dyn rtcp_crate::packet::Packet + Send + Sync>> = vec![
        Box::new(ReceiverReport {
            ssrc: 5,
            reports: vec![ReceptionReport {
                ssrc: 6,
                fraction_lost: 1,
                total_lost: 2,
                last_sequence_number: 3,
                jitter: 4,
                last_sender_report: 5,
                delay: 6,
            }],
            profile_extensions: Bytes::new(),
        }),
        Box::new(SourceDescription {
            chunks: vec![SourceDescriptionChunk {
                source: 5,
                items: vec![
                    SourceDescriptionItem {
                        sdes_type: SdesType::SdesCname,
                        text: Bytes::from_static(b"abc"),
                    },
                    SourceDescriptionItem {
                        sdes_type: SdesType::SdesTool,
                        text: Bytes::from_static(b"tool"),
                    },
                ],
            }],
        }),
        Box::new(TransportLayerNack {
            sender_ssrc: 5,
            media_ssrc: 6,
            nacks: vec![NackPair {
                packet_id: 65_535,
                lost_packets: 0b101,
            }],
        }),
        Box::new(FullIntraRequest {
            sender_ssrc: 5,
            media_ssrc: 0,
            fir: vec![
                FirEntry {
                    ssrc: 6,
                    sequence_number: 9,
                },
                FirEntry {
                    ssrc: 7,
                    sequence_number: 10,
                },
            ],
        }),
        Box::new(ReceiverEstimatedMaximumBitrate {
            sender_ssrc: 5,
            bitrate: 1_000_000.0,
            ssrcs: vec![6],
        }),
        Box::new(Goodbye {
            sources: vec![5, 6],
            reason: Bytes::from_static(b"bye"),
        }),
    ];
    let raw = rtcp_crate::packet::marshal(&packets).unwrap();
    let ours: Vec<_> = rtcp::parse_compound(&raw).map(Result::unwrap).collect();
    assert_eq!(ours.len(), 6);
    let RtcpPacket::ReceiverReport(rr) = ours[0] else {
        panic!("{:?}", ours[0])
    };
    let b = rr.blocks.iter().next().unwrap();
    assert_eq!(
        (
            rr.ssrc,
            b.ssrc,
            b.fraction_lost,
            b.cumulative_lost,
            b.extended_highest_seq,
            b.jitter,
            b.last_sr,
            b.delay_since_last_sr
        ),
        (5, 6, 1, 2, 3, 4, 5, 6)
    );
    let RtcpPacket::Sdes(sdes) = ours[1] else {
        panic!()
    };
    let chunk = sdes.chunks().next().unwrap();
    assert_eq!(chunk.ssrc, 5);
    assert_eq!(chunk.cname(), Some(&b"abc"[..]));
    assert_eq!(chunk.items().count(), 2);
    let RtcpPacket::Nack(n) = ours[2] else {
        panic!()
    };
    assert_eq!(n.lost().collect::<Vec<_>>(), vec![65_535, 0, 2], "wraps");
    let RtcpPacket::Fir(f) = ours[3] else {
        panic!()
    };
    assert_eq!(
        f.entries().map(|e| (e.ssrc, e.seq_nr)).collect::<Vec<_>>(),
        vec![(6, 9), (7, 10)]
    );
    let RtcpPacket::Remb(r) = ours[4] else {
        panic!()
    };
    assert_eq!(
        (r.bitrate, r.ssrcs().collect::<Vec<_>>()),
        (1_000_000, vec![6])
    );
    let RtcpPacket::Bye(bye) = ours[5] else {
        panic!()
    };
    assert_eq!(bye.ssrcs().collect::<Vec<_>>(), vec![5, 6]);
    assert_eq!(bye.reason, Some(&b"bye"[..]));
}

fn twcc_pattern() -> impl Strategy<Value = Vec<Option<i32>>> {
    prop::collection::vec(
        prop_oneof![
            3 => Just(None),
            6 => (0i32..=255).prop_map(Some),
            1 => (-32768i32..=32767).prop_map(Some),
        ],
        1..600,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// TWCC feedback of any receive pattern: our writer's output parses back to the same
    /// statuses in our parser and in the rtcp crate.
    #[test]
    fn twcc_roundtrip_and_differential(deltas in twcc_pattern(), base in any::<u16>(), rt in -(1i32 << 23)..(1i32 << 23)) {
        let mut buf = vec![0u8; 4096];
        let mut w = RtcpWriter::new(&mut buf);
        w.transport_cc(1, 2, base, rt, 9, &deltas).unwrap();
        let n = w.finish();
        let Ok(RtcpPacket::TransportCc(fb)) = RtcpPacket::parse(&buf[..n]) else { panic!("not twcc") };
        prop_assert_eq!(fb.base_seq, base);
        prop_assert_eq!(fb.reference_time, rt);
        prop_assert_eq!(fb.feedback_count, 9);
        let got: Vec<Option<i32>> = fb.statuses().map(|s| s.delta).collect();
        prop_assert_eq!(&got, &deltas);
        let seqs: Vec<u16> = fb.statuses().map(|s| s.seq).collect();
        prop_assert_eq!(seqs.last().copied(), Some(base.wrapping_add(deltas.len() as u16 - 1)));

        let theirs = theirs_rtcp(&buf[..n]);
        let tcc = downcast::<rtcp_crate::transport_feedbacks::transport_layer_cc::TransportLayerCc>(theirs[0].as_ref());
        prop_assert_eq!(tcc.packet_status_count as usize, deltas.len());
        let received: Vec<i64> = deltas.iter().flatten().map(|d| i64::from(*d) * 250).collect();
        let theirs_deltas: Vec<i64> = tcc.recv_deltas.iter().map(|d| d.delta).collect();
        prop_assert_eq!(theirs_deltas, received);
    }

    /// Arbitrary bytes never panic any parser.
    #[test]
    fn parsers_total_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = RtpPacket::parse(&bytes).map(|p| p.known_extensions(&ExtensionIds { mid: 1, rid: 2, repaired_rid: 3, transport_cc: 4, abs_send_time: 5, audio_level: 6 }));
        for p in rtcp::parse_compound(&bytes) {
            if let Ok(RtcpPacket::TransportCc(t)) = p { let _ = t.statuses().count(); }
            if let Ok(RtcpPacket::Sdes(s)) = p { for c in s.chunks() { let _ = c.items().count(); } }
        }
        if let Ok(m) = StunMessage::parse(&bytes) { let _ = m.verify_integrity(b"x"); let _ = m.xor_mapped_address(); }
    }
}

#[test]
fn rtp_they_write_we_parse() {
    let pkt = rtp::packet::Packet {
        header: rtp::header::Header {
            version: 2,
            marker: true,
            payload_type: 111,
            sequence_number: 4242,
            timestamp: 123_456,
            ssrc: 0x5555,
            csrc: vec![1, 2],
            extension: true,
            extension_profile: 0xBEDE,
            extensions: vec![
                rtp::header::Extension {
                    id: 1,
                    payload: Bytes::from_static(b"0"),
                },
                rtp::header::Extension {
                    id: 4,
                    payload: Bytes::from_static(&[0x12, 0x34]),
                },
                rtp::header::Extension {
                    id: 6,
                    payload: Bytes::from_static(&[0x80 | 30]),
                },
            ],
            // 7 bytes of elements, padded to a word.
            extensions_padding: 1,
            ..Default::default()
        },
        payload: Bytes::from_static(b"opus frame"),
    };
    let raw = pkt.marshal().unwrap();
    let ours = RtpPacket::parse(&raw).unwrap();
    assert_eq!(
        (
            ours.marker(),
            ours.payload_type(),
            ours.sequence_number(),
            ours.timestamp(),
            ours.ssrc()
        ),
        (true, 111, 4242, 123_456, 0x5555)
    );
    assert_eq!(ours.csrcs().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(ours.payload(), b"opus frame");
    let ids = ExtensionIds {
        mid: 1,
        transport_cc: 4,
        audio_level: 6,
        ..Default::default()
    };
    let k = ours.known_extensions(&ids).unwrap();
    assert_eq!(k.mid, Some(&b"0"[..]));
    assert_eq!(k.transport_cc, Some(0x1234));
    assert_eq!(
        k.audio_level.map(|a| (a.voice_activity, a.level)),
        Some((true, 30))
    );

    // Two-byte form (an extension id above 14 forces it).
    let mut pkt2 = pkt.clone();
    pkt2.header.extension_profile = 0x1000;
    pkt2.header.extensions = vec![rtp::header::Extension {
        id: 20,
        payload: Bytes::from_static(b"rid-h"),
    }];
    let raw2 = pkt2.marshal().unwrap();
    let ours2 = RtpPacket::parse(&raw2).unwrap();
    let e: Vec<_> = ours2
        .extensions()
        .map(Result::unwrap)
        .map(|e| (e.id, e.data.to_vec()))
        .collect();
    assert_eq!(e, vec![(20, b"rid-h".to_vec())]);

    // And they agree with us on a packet we mutate in place.
    let mut mine = raw.to_vec();
    sluice_dataplane::rtp::write::set_ssrc(&mut mine, 0x9999).unwrap();
    sluice_dataplane::rtp::write::set_sequence_number(&mut mine, 1).unwrap();
    let theirs = rtp::packet::Packet::unmarshal(&mut &mine[..]).unwrap();
    assert_eq!(
        (theirs.header.ssrc, theirs.header.sequence_number),
        (0x9999, 1)
    );
    assert_eq!(theirs.payload.as_ref(), b"opus frame");
}

#[test]
fn stun_they_sign_we_verify_and_answer() {
    use ::stun::agent::TransactionId;
    use ::stun::attributes::{ATTR_PRIORITY, ATTR_USE_CANDIDATE, ATTR_USERNAME};
    use ::stun::fingerprint::FINGERPRINT;
    use ::stun::integrity::MessageIntegrity;
    use ::stun::message::{BINDING_REQUEST, Getter, Message, Setter};
    use ::stun::xoraddr::XorMappedAddress;

    let mut req = Message::new();
    req.typ = BINDING_REQUEST;
    req.transaction_id = TransactionId([7; 12]);
    req.write_header();
    req.add(ATTR_USERNAME, b"sfuufrag:browserufrag");
    req.add(ATTR_PRIORITY, &1_853_824_767u32.to_be_bytes());
    req.add(ATTR_USE_CANDIDATE, &[]);
    req.add(
        ::stun::attributes::ATTR_ICE_CONTROLLING,
        &0x0102_0304_0506_0708u64.to_be_bytes(),
    );
    MessageIntegrity::new_short_term_integrity("sfu-password".into())
        .add_to(&mut req)
        .unwrap();
    FINGERPRINT.add_to(&mut req).unwrap();

    let msg = StunMessage::parse(&req.raw).unwrap();
    assert!(msg.is_binding_request());
    assert_eq!(msg.username(), Some(&b"sfuufrag:browserufrag"[..]));
    assert_eq!(msg.priority(), Some(1_853_824_767));
    assert!(msg.use_candidate());
    assert_eq!(msg.ice_controlling(), Some(0x0102_0304_0506_0708));
    msg.verify_fingerprint().unwrap();
    msg.verify_integrity(b"sfu-password").unwrap();
    assert_eq!(
        msg.verify_integrity(b"wrong"),
        Err(stun::StunError::BadIntegrity)
    );

    for from in ["192.0.2.1:32853", "[2001:db8::1]:5000"] {
        let from = from.parse().unwrap();
        let mut out = [0u8; 256];
        let n = stun::binding_success(&mut out, &msg, from, b"sfu-password").unwrap();
        let mut resp = Message::new();
        resp.raw = out[..n].to_vec();
        resp.decode().unwrap();
        assert_eq!(resp.transaction_id.0, [7; 12]);
        MessageIntegrity::new_short_term_integrity("sfu-password".into())
            .check(&mut resp)
            .unwrap();
        FINGERPRINT.check(&resp).unwrap();
        let mut xor = XorMappedAddress::default();
        xor.get_from(&resp).unwrap();
        assert_eq!((xor.ip, xor.port), (from.ip(), from.port()));
        // And our own parser reads our response back.
        let ours = StunMessage::parse(&out[..n]).unwrap();
        assert_eq!(ours.xor_mapped_address(), Some(Ok(from)));
        ours.verify_integrity(b"sfu-password").unwrap();
        ours.verify_fingerprint().unwrap();
    }

    let mut out = [0u8; 256];
    let n = stun::binding_error(&mut out, &msg, 401, b"Unauthorized", None).unwrap();
    let mut resp = Message::new();
    resp.raw = out[..n].to_vec();
    resp.decode().unwrap();
    let mut code = ::stun::error_code::ErrorCodeAttribute::default();
    code.get_from(&resp).unwrap();
    assert_eq!(code.code.0, 401);
    assert_eq!(
        StunMessage::parse(&out[..n]).unwrap().error_code(),
        Some((401, &b"Unauthorized"[..]))
    );
}

/// RFC 5769 2.1: the sample request, a real packet with known credentials.
#[test]
fn stun_rfc5769_sample_request() {
    let hex = "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74\
               002400046e0001ff80290008932ff9b151263b36000600096576746a3a6836765920202000080014\
               9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf";
    let raw: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let m = StunMessage::parse(&raw).unwrap();
    assert_eq!(m.username(), Some(&b"evtj:h6vY"[..]));
    assert_eq!(m.priority(), Some(0x6e00_01ff));
    assert_eq!(m.ice_controlled(), Some(0x932f_f9b1_5126_3b36));
    m.verify_fingerprint().unwrap();
    m.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBt").unwrap();
}
