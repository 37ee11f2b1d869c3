//! The hot path allocates nothing: parse, rewrite and SRTP protect/unprotect of a packet,
//! counted by a global allocator wrapper on this thread.

use sluice_dataplane::demux;
use sluice_dataplane::rewrite::RtpRewriter;
use sluice_dataplane::rtcp::{self, ReportBlock, RtcpPacket, RtcpWriter};
use sluice_dataplane::rtp::{ExtensionIds, RtpPacket};
use sluice_dataplane::srtp::{Profile, SrtpContext};
use sluice_dataplane::stun::{self, StunMessage, StunWriter};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

const IDS: ExtensionIds = ExtensionIds {
    mid: 1,
    rid: 2,
    repaired_rid: 3,
    transport_cc: 3,
    abs_send_time: 4,
    audio_level: 5,
};

fn video_packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x90, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 42]);
    p.extend_from_slice(&[
        0xbe, 0xde, 0, 3, 0x10, b'1', 0x21, b'h', b'i', 0x31, 0, 7, 0x42, 1, 2, 3,
    ]);
    p.extend_from_slice(&[0x90, 0xc0, 0x80, 0x05, 0x11, 0x00]);
    p.resize(1200, 0x5a);
    p
}

#[test]
fn hot_path_does_not_allocate() {
    // Everything a worker owns is built up front.
    let packets: Vec<Vec<u8>> = (0..256u16).map(video_packet).collect();
    let mut buf = vec![0u8; 1500];
    let mut rtcp_buf = [0u8; 1500];
    let mut stun_buf = [0u8; 200];
    let mut rewriter = RtpRewriter::new(0x5eed, 90_000, 1, 1, true);
    let contexts: Vec<(SrtpContext, SrtpContext)> =
        [Profile::AeadAes128Gcm, Profile::Aes128CmHmacSha1_80]
            .into_iter()
            .map(|p| {
                let salt = vec![1u8; p.master_salt_len()];
                (
                    SrtpContext::new(p, &[2; 16], &salt).unwrap(),
                    SrtpContext::new(p, &[2; 16], &salt).unwrap(),
                )
            })
            .collect();
    let mut contexts = contexts;
    let mut req_buf = [0u8; 200];
    let mut w = StunWriter::new(&mut req_buf, stun::BINDING_REQUEST, &[9; 12]).unwrap();
    w.username(b"sfu:peer")
        .unwrap()
        .priority(1)
        .unwrap()
        .message_integrity(b"pw")
        .unwrap()
        .fingerprint()
        .unwrap();
    let req_len = w.finish();
    let from = "10.0.0.1:5000".parse().unwrap();

    // Warm-up: the first packet of each SSRC creates its per-SSRC SRTP state (once per
    // stream, not per packet).
    for (tx, rx) in &mut contexts {
        buf[..1200].copy_from_slice(&packets[0]);
        let n = tx.protect_rtp(&mut buf, 1200).unwrap();
        rx.unprotect_rtp(&mut buf[..n]).unwrap();
        let m = RtcpWriter::new(&mut rtcp_buf[..])
            .pli(1, 42)
            .map(|_| 12)
            .unwrap();
        let n = tx.protect_rtcp(&mut rtcp_buf, m).unwrap();
        rx.unprotect_rtcp(&mut rtcp_buf[..n]).unwrap();
    }

    let count = allocations(|| {
        for (i, p) in packets.iter().enumerate().skip(1) {
            assert_eq!(demux::classify(p), demux::PacketKind::Rtp);
            let parsed = RtpPacket::parse(p).unwrap();
            let known = parsed.known_extensions(&IDS).unwrap();
            assert_eq!(known.mid, Some(&b"1"[..]));

            // Ingress: unprotect; egress: copy, rewrite, protect.
            for (tx, rx) in &mut contexts {
                buf[..1200].copy_from_slice(p);
                let n = tx.protect_rtp(&mut buf, 1200).unwrap();
                let m = rx.unprotect_rtp(&mut buf[..n]).unwrap();
                assert_eq!(&buf[..m], &p[..]);
                rewriter.rewrite(i as u64 * 1000, &mut buf[..m]).unwrap();
            }

            // RTCP: build feedback, protect, unprotect, parse.
            let mut w = RtcpWriter::new(&mut rtcp_buf[..]);
            w.receiver_report(1, &[ReportBlock::default()]).unwrap();
            w.nack(1, 42, [i as u16, i as u16 + 2]).unwrap();
            w.transport_cc(1, 42, 0, 0, 0, &[Some(1), None, Some(300), Some(2)])
                .unwrap();
            let len = w.finish();
            for (tx, rx) in &mut contexts {
                let n = tx.protect_rtcp(&mut rtcp_buf, len).unwrap();
                let m = rx.unprotect_rtcp(&mut rtcp_buf[..n]).unwrap();
                assert_eq!(m, len);
            }
            let mut statuses = 0;
            for pkt in rtcp::parse_compound(&rtcp_buf[..len]) {
                if let RtcpPacket::TransportCc(t) = pkt.unwrap() {
                    statuses += t.statuses().count();
                }
            }
            assert_eq!(statuses, 4);

            // STUN: verify a request, answer it.
            let req = StunMessage::parse(&req_buf[..req_len]).unwrap();
            req.verify_fingerprint().unwrap();
            req.verify_integrity(b"pw").unwrap();
            stun::binding_success(&mut stun_buf, &req, from, b"pw").unwrap();
        }
    });
    assert_eq!(count, 0, "allocations on the packet path");

    // The counter is live: an allocation is seen.
    assert_eq!(allocations(|| drop(std::hint::black_box(vec![1u8; 10]))), 1);
}

mod router {
    use super::allocations;
    use sluice_dataplane::engine::{Output, PacketHandler};
    use sluice_dataplane::router::{
        Codec, LayerConfig, Router, RouterCommand, RouterConfig, RouterHandoff, SessionConfig,
        SrtpKeys, SubscribeConfig, TrackConfig,
    };
    use sluice_dataplane::rtcp::RtcpWriter;
    use sluice_dataplane::rtp::ExtensionIds;
    use sluice_dataplane::srtp::{Profile, SrtpContext};
    use std::net::SocketAddr;

    const P: Profile = Profile::AeadAes128Gcm;

    fn keys(seed: u8) -> SrtpKeys {
        SrtpKeys {
            profile: P,
            key: vec![seed; 16],
            salt: vec![seed; 12],
        }
    }

    fn session(id: u64) -> SessionConfig {
        SessionConfig {
            id,
            remote: SocketAddr::from(([127, 0, 0, 1], 6000 + id as u16)),
            inbound: keys(id as u8),
            outbound: keys(!(id as u8)),
            extensions: ExtensionIds::default(),
            rtcp_ssrc: id as u32,
        }
    }

    fn subscribe(session: u64, ssrc: u32) -> RouterCommand {
        RouterCommand::Subscribe(SubscribeConfig {
            session,
            track: 1,
            ssrc,
            payload_type: 96,
            rtx: Some((ssrc + 1, 97)),
            initial_seq: 1,
            initial_ts: 1,
            layer: 0,
            pinned: true,
            ext_remap: None,
        })
    }

    /// Steady-state forwarding: SRTP in, four local subscribers and one on another worker,
    /// NACKs answered, timers run — and not one allocation on either worker.
    #[test]
    fn router_steady_state_allocates_nothing() {
        let track = TrackConfig {
            id: 1,
            publisher: 1,
            home: 0,
            codec: Codec::Vp8,
            clock_rate: 90_000,
            payload_type: 96,
            rtx_payload_type: Some(97),
            layers: vec![LayerConfig {
                ssrc: Some(77),
                ..LayerConfig::default()
            }],
        };
        // A handoff buffer allocates once, on its first turn round the pool; a small pool
        // reaches the steady state within the warm-up.
        let config = RouterConfig {
            handoff_buffers: 256,
            ..RouterConfig::default()
        };
        let (mut home, mut other) = (Router::new(0, config.clone()), Router::new(1, config));
        let (mut out0, mut out1) = (Output::<RouterHandoff>::default(), Output::default());
        for id in 1..=5 {
            home.handle_command(
                0,
                RouterCommand::AddSession(Box::new(session(id))),
                &mut out0,
            );
        }
        other.handle_command(
            0,
            RouterCommand::AddSession(Box::new(session(6))),
            &mut out1,
        );
        home.handle_command(
            0,
            RouterCommand::AddTrack(Box::new(track.clone())),
            &mut out0,
        );
        other.handle_command(0, RouterCommand::AddTrack(Box::new(track)), &mut out1);
        for id in 2..=5 {
            home.handle_command(0, subscribe(id, 1000 * id as u32), &mut out0);
        }
        // One more subscriber whose extension ids differ from the publisher's.
        home.handle_command(
            0,
            RouterCommand::AddSession(Box::new(session(7))),
            &mut out0,
        );
        let mut remap = subscribe(7, 7000);
        if let RouterCommand::Subscribe(c) = &mut remap {
            let mut map = Box::new([0u8; 256]);
            (map[1], map[2]) = (5, 6);
            c.ext_remap = Some(map);
        }
        home.handle_command(0, remap, &mut out0);
        other.handle_command(0, subscribe(6, 6000), &mut out1);
        for (_, msg) in out1.handoffs.drain(..) {
            home.handle_handoff(0, msg, &mut out0);
        }
        out0.clear();

        // Publisher packets, encrypted up front (test setup may allocate).
        let mut tx = SrtpContext::new(P, &[1; 16], &[1; 12]).unwrap();
        let packets: Vec<Vec<u8>> = (0..3000u16)
            .map(|i| {
                // With a one-byte extension block, for the subscriber that remaps ids.
                let mut p = vec![0x90, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 77];
                p[2..4].copy_from_slice(&i.to_be_bytes());
                p[4..8].copy_from_slice(&(u32::from(i) * 3000).to_be_bytes());
                p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0x30, 0x20, 0x01]);
                p.extend_from_slice(&[
                    0x90,
                    0x80,
                    0x80 | (i >> 8) as u8,
                    i as u8,
                    u8::from(i % 100 != 0),
                    0,
                ]);
                p.resize(1200, 0xab);
                p.resize(1300, 0);
                let n = tx.protect_rtp(&mut p, 1200).unwrap();
                p.truncate(n);
                p
            })
            .collect();
        let mut sub_tx = SrtpContext::new(P, &[2; 16], &[2; 12]).unwrap();
        let nacks: Vec<Vec<u8>> = (0..40u16)
            .map(|i| {
                let mut b = vec![0u8; 200];
                let mut w = RtcpWriter::new(&mut b[..150]);
                w.nack(2, 2000, [1 + 1000 + i * 50]).unwrap();
                let n = w.finish();
                let n = sub_tx.protect_rtcp(&mut b, n).unwrap();
                b.truncate(n);
                b
            })
            .collect();

        let publisher: SocketAddr = "127.0.0.1:6001".parse().unwrap();
        let subscriber: SocketAddr = "127.0.0.1:6002".parse().unwrap();
        let mut buf = vec![0u8; 2048];
        let mut run = |range: std::ops::Range<usize>, home: &mut Router, other: &mut Router| {
            for i in range {
                let now = 1_000 + i as u64 * 1_000;
                let p = &packets[i];
                buf[..p.len()].copy_from_slice(p);
                home.handle_datagram(now, publisher, &mut buf[..p.len()], &mut out0);
                if i >= 1000 && i % 50 == 10 {
                    let n = &nacks[(i - 1000) / 50];
                    buf[..n.len()].copy_from_slice(n);
                    home.handle_datagram(now, subscriber, &mut buf[..n.len()], &mut out0);
                }
                home.handle_timeout(now, &mut out0);
                for (_, msg) in out0.handoffs.drain(..) {
                    other.handle_handoff(now, msg, &mut out1);
                }
                other.handle_timeout(now, &mut out1);
                out0.clear();
                out1.clear();
            }
        };
        run(0..1500, &mut home, &mut other);
        let forwarded = home.stats().rtp_out + other.stats().rtp_out;
        let n = allocations(|| run(1500..3000, &mut home, &mut other));
        assert_eq!(n, 0, "allocations in the steady state");
        let forwarded = home.stats().rtp_out + other.stats().rtp_out - forwarded;
        assert!(forwarded >= 1500 * 6, "forwarded {forwarded}");
        assert_eq!(home.stats().retransmits, 40);
    }

    /// A publisher rebound to an address steered to another worker: that worker hands
    /// each datagram to the session's worker, which decrypts and forwards it — with no
    /// allocation on either.
    #[test]
    fn forwarded_remote_allocates_nothing() {
        let track = TrackConfig {
            id: 1,
            publisher: 1,
            home: 0,
            codec: Codec::Vp8,
            clock_rate: 90_000,
            payload_type: 96,
            rtx_payload_type: None,
            layers: vec![LayerConfig {
                ssrc: Some(77),
                ..LayerConfig::default()
            }],
        };
        let config = RouterConfig {
            handoff_buffers: 256,
            ..RouterConfig::default()
        };
        let (mut home, mut steered) = (Router::new(0, config.clone()), Router::new(1, config));
        let (mut out0, mut out1) = (Output::<RouterHandoff>::default(), Output::default());
        let moved: SocketAddr = "127.0.0.2:7001".parse().unwrap();
        for cmd in [
            RouterCommand::AddSession(Box::new(session(1))),
            RouterCommand::AddSession(Box::new(session(2))),
            RouterCommand::AddTrack(Box::new(track)),
            subscribe(2, 2000),
            RouterCommand::RebindSession {
                session: 1,
                remote: moved,
            },
        ] {
            home.handle_command(0, cmd, &mut out0);
        }
        steered.handle_command(
            0,
            RouterCommand::ForwardRemote {
                remote: moved,
                worker: 0,
            },
            &mut out1,
        );
        out0.clear();

        let mut tx = SrtpContext::new(P, &[1; 16], &[1; 12]).unwrap();
        let packets: Vec<Vec<u8>> = (0..3000u16)
            .map(|i| {
                let mut p = vec![0x80, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 77];
                p[2..4].copy_from_slice(&i.to_be_bytes());
                p[4..8].copy_from_slice(&(u32::from(i) * 3000).to_be_bytes());
                p.extend_from_slice(&[0x90, 0x80, 0x80 | (i >> 8) as u8, i as u8]);
                p.push(u8::from(i % 100 != 0));
                p.resize(1000, 0xab);
                p.resize(1100, 0);
                let n = tx.protect_rtp(&mut p, 1000).unwrap();
                p.truncate(n);
                p
            })
            .collect();
        let mut buf = vec![0u8; 2048];
        let mut run = |range: std::ops::Range<usize>, home: &mut Router, steered: &mut Router| {
            for i in range {
                let now = 1_000 + i as u64 * 1_000;
                let p = &packets[i];
                buf[..p.len()].copy_from_slice(p);
                steered.handle_datagram(now, moved, &mut buf[..p.len()], &mut out1);
                for (_, msg) in out1.handoffs.drain(..) {
                    home.handle_handoff(now, msg, &mut out0);
                }
                home.handle_timeout(now, &mut out0);
                steered.handle_timeout(now, &mut out1);
                out0.clear();
                out1.clear();
            }
        };
        // Past the first second, when the first reports go out.
        run(0..1500, &mut home, &mut steered);
        let forwarded = home.stats().rtp_out;
        let n = allocations(|| run(1500..3000, &mut home, &mut steered));
        assert_eq!(n, 0, "allocations on the forwarded path");
        assert_eq!(home.stats().rtp_out - forwarded, 1500);
        assert_eq!(steered.stats().remote_handoffs_out, 3000);
    }
}
