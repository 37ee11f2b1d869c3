//! Router behaviour with virtual time and real SRTP: every packet a test peer sends is
//! encrypted with its keys, every packet it gets back is decrypted and checked.

use super::*;
use crate::engine::Egress;
use crate::rtcp::{RtcpPacket, parse_compound};
use crate::srtp::SrtpContext;

// Shared with the feedback tests, which use parts these tests do not.
#[allow(dead_code)]
pub(crate) mod harness {
    use super::*;

    pub const PROFILE: Profile = Profile::AeadAes128Gcm;

    /// A test peer: its own SRTP contexts, mirror images of the session's.
    pub struct Peer {
        pub id: SessionId,
        pub addr: SocketAddr,
        pub tx: SrtpContext,
        pub rx: SrtpContext,
        pub config: SessionConfig,
    }

    fn keys(seed: u8) -> SrtpKeys {
        SrtpKeys {
            profile: PROFILE,
            key: vec![seed; 16],
            salt: vec![seed ^ 0x5a; 12],
        }
    }

    impl Peer {
        pub fn new(id: SessionId, port: u16) -> Self {
            let (up, down) = (keys(id as u8), keys(id as u8 ^ 0xff));
            let config = SessionConfig {
                id,
                remote: SocketAddr::from(([127, 0, 0, 1], port)),
                inbound: up.clone(),
                outbound: down.clone(),
                extensions: ExtensionIds {
                    rid: 10,
                    repaired_rid: 11,
                    ..ExtensionIds::default()
                },
                rtcp_ssrc: 0x5100_0000 + id as u32,
            };
            Self {
                id,
                addr: config.remote,
                tx: SrtpContext::new(PROFILE, &up.key, &up.salt).unwrap(),
                rx: SrtpContext::new(PROFILE, &down.key, &down.salt).unwrap(),
                config,
            }
        }

        /// An SRTP packet from this peer.
        pub fn rtp(&mut self, pt: u8, ssrc: u32, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
            let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            p[4..8].copy_from_slice(&ts.to_be_bytes());
            p[8..12].copy_from_slice(&ssrc.to_be_bytes());
            p.extend_from_slice(payload);
            let len = p.len();
            p.resize(len + 64, 0);
            let n = self.tx.protect_rtp(&mut p, len).unwrap();
            p.truncate(n);
            p
        }

        /// An SRTCP packet from this peer, built by `f`.
        pub fn rtcp(&mut self, f: impl FnOnce(&mut RtcpWriter)) -> Vec<u8> {
            let mut p = vec![0u8; 1500];
            let mut w = RtcpWriter::new(&mut p[..1400]);
            f(&mut w);
            let n = w.finish();
            let n = self.tx.protect_rtcp(&mut p, n).unwrap();
            p.truncate(n);
            p
        }
    }

    /// One worker's router driven by a test, with the datagrams it produced.
    pub struct Harness {
        pub router: Router,
        pub out: Output<RouterHandoff>,
        pub now: Micros,
    }

    impl Harness {
        pub fn new() -> Self {
            Self {
                router: Router::new(0, RouterConfig::default()),
                out: Output::default(),
                now: 1_000_000,
            }
        }

        pub fn command(&mut self, cmd: RouterCommand) {
            self.router.handle_command(self.now, cmd, &mut self.out);
        }

        pub fn add(&mut self, peer: &Peer) {
            self.command(RouterCommand::AddSession(Box::new(peer.config.clone())));
        }

        pub fn send(&mut self, from: &Peer, mut datagram: Vec<u8>) {
            datagram.resize(datagram.len() + 64, 0);
            let len = datagram.len() - 64;
            // The driver hands the router a buffer exactly as long as the datagram.
            self.router
                .handle_datagram(self.now, from.addr, &mut datagram[..len], &mut self.out);
        }

        pub fn advance(&mut self, us: Micros) {
            self.now += us;
            self.router.handle_timeout(self.now, &mut self.out);
        }

        /// Takes the datagrams queued for `to`, leaving the others.
        pub fn take(&mut self, to: &Peer) -> Vec<Vec<u8>> {
            let mut mine = Vec::new();
            let mut rest = Egress::default();
            for (dest, bytes) in self.out.egress.iter() {
                if dest == to.addr {
                    mine.push(bytes.to_vec());
                } else {
                    rest.push_copy(dest, bytes);
                }
            }
            self.out.egress = rest;
            mine
        }
    }

    /// Decrypted RTP as (ssrc, seq, payload type, payload).
    pub fn open_rtp(peer: &mut Peer, mut d: Vec<u8>) -> Option<(u32, u16, u8, Vec<u8>)> {
        let n = peer.rx.unprotect_rtp(&mut d).ok()?;
        let p = RtpPacket::parse(&d[..n]).ok()?;
        Some((
            p.ssrc(),
            p.sequence_number(),
            p.payload_type(),
            p.payload().to_vec(),
        ))
    }

    /// Media SSRCs of PLIs in decrypted RTCP.
    pub fn open_plis(peer: &mut Peer, mut d: Vec<u8>) -> Vec<u32> {
        let Ok(n) = peer.rx.unprotect_rtcp(&mut d) else {
            return Vec::new();
        };
        parse_compound(&d[..n])
            .filter_map(|p| match p {
                Ok(RtcpPacket::Pli(p)) => Some(p.media_ssrc),
                _ => None,
            })
            .collect()
    }

    /// A VP8 payload: descriptor with a 15-bit picture id, then the payload header whose
    /// low bit is the inverse key-frame flag.
    pub fn vp8(picture_id: u16, start: bool, keyframe: bool) -> Vec<u8> {
        let s = if start { 0x10 } else { 0 };
        let pid = 0x8000 | (picture_id & 0x7fff);
        vec![
            0x80 | s,
            0x80,
            (pid >> 8) as u8,
            pid as u8,
            if keyframe { 0x00 } else { 0x01 },
            1,
            2,
            3,
        ]
    }

    pub const VIDEO_PT: u8 = 96;
    pub const RTX_PT: u8 = 97;

    pub fn video_track(id: TrackId, publisher: SessionId, ssrcs: &[u32]) -> TrackConfig {
        TrackConfig {
            id,
            publisher,
            home: 0,
            codec: Codec::Vp8,
            clock_rate: 90_000,
            payload_type: VIDEO_PT,
            rtx_payload_type: Some(RTX_PT),
            layers: ssrcs
                .iter()
                .map(|&s| LayerConfig {
                    ssrc: Some(s),
                    rtx_ssrc: Some(s + 1),
                    rid: None,
                })
                .collect(),
        }
    }

    pub fn subscribe(session: SessionId, track: TrackId, ssrc: u32, layer: u8) -> SubscribeConfig {
        SubscribeConfig {
            session,
            track,
            ssrc,
            payload_type: 100,
            rtx: Some((ssrc + 1, 101)),
            initial_seq: 40_000,
            initial_ts: 7,
            layer,
            pinned: true,
            ext_remap: None,
        }
    }
}

use harness::*;

fn setup(layers: &[u32]) -> (Harness, Peer, Peer) {
    let mut h = Harness::new();
    let (publisher, sub) = (Peer::new(1, 5001), Peer::new(2, 5002));
    h.add(&publisher);
    h.add(&sub);
    h.command(RouterCommand::AddTrack(Box::new(video_track(9, 1, layers))));
    h.command(RouterCommand::Subscribe(subscribe(2, 9, 0xABC0, 0)));
    (h, publisher, sub)
}

#[test]
fn forwards_rewritten_and_reencrypted() {
    let (mut h, mut publisher, mut sub) = setup(&[1000]);
    for i in 0..10u16 {
        let pkt = publisher.rtp(
            VIDEO_PT,
            1000,
            500 + i,
            90 * u32::from(i),
            &vp8(i, true, i == 0),
        );
        h.send(&publisher, pkt);
    }
    let got: Vec<_> = h
        .take(&sub)
        .into_iter()
        .map(|d| open_rtp(&mut sub, d).unwrap())
        .collect();
    assert_eq!(got.len(), 10);
    for (i, (ssrc, seq, pt, payload)) in got.iter().enumerate() {
        assert_eq!((*ssrc, *seq, *pt), (0xABC0, 40_000 + i as u16, 100));
        assert_eq!(&payload[4..], &vp8(i as u16, true, i == 0)[4..]);
    }
    assert_eq!(h.router.stats().rtp_out, 10);
}

#[test]
fn bad_input_is_counted_not_forwarded() {
    let (mut h, mut publisher, sub) = setup(&[1000]);
    let mut tampered = publisher.rtp(VIDEO_PT, 1000, 1, 0, &vp8(0, true, true));
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    h.send(&publisher, tampered);
    let good = publisher.rtp(VIDEO_PT, 1000, 2, 0, &vp8(0, true, true));
    h.send(&publisher, good.clone());
    h.send(&publisher, good);
    let stranger = Peer::new(3, 5003);
    h.send(
        &stranger,
        vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0],
    );
    let unknown = publisher.rtp(VIDEO_PT, 4242, 3, 0, &[1, 2, 3]);
    h.send(&publisher, unknown);
    h.send(&publisher, vec![0xff; 3]);
    let s = *h.router.stats();
    assert_eq!(
        (
            s.drop_srtp_auth,
            s.drop_replay,
            s.drop_unknown_session,
            s.drop_unknown_ssrc,
            s.drop_malformed
        ),
        (1, 1, 1, 1, 1)
    );
    assert_eq!(h.take(&sub).len(), 1);
}

#[test]
fn publisher_rtx_repairs_a_gap_once_and_duplicates_are_dropped() {
    let (mut h, mut publisher, mut sub) = setup(&[1000]);
    // Seqs 10 and 12 arrive; 11 is lost on the way in.
    for seq in [10u16, 12] {
        let pkt = publisher.rtp(VIDEO_PT, 1000, seq, 0, &vp8(seq, true, seq == 10));
        h.send(&publisher, pkt);
    }
    // RTX payloads: the original sequence number, then the original payload.
    let rtx = |p: &mut Peer, rtx_seq: u16, osn: u16| {
        let mut body = osn.to_be_bytes().to_vec();
        body.extend_from_slice(&vp8(osn, true, false));
        p.rtp(RTX_PT, 1001, rtx_seq, 0, &body)
    };
    // A repair of the lost packet, then padding-style resends of ones already forwarded.
    for (rtx_seq, osn) in [(1u16, 11u16), (2, 10), (3, 12), (4, 11)] {
        let pkt = rtx(&mut publisher, rtx_seq, osn);
        h.send(&publisher, pkt);
    }
    let got: Vec<_> = h
        .take(&sub)
        .into_iter()
        .map(|d| open_rtp(&mut sub, d).unwrap())
        .collect();
    let seqs: Vec<_> = got.iter().map(|g| g.1).collect();
    // Forwarded: 10, 12, then the repaired 11; the rewriter keeps the publisher's gap.
    assert_eq!(seqs, [40_000, 40_002, 40_001]);
    assert_eq!(&got[2].3[4..], &vp8(11, true, false)[4..]);
    assert_eq!(h.router.stats().drop_duplicate, 3);
}

#[test]
fn nack_is_answered_from_cache_with_rtx() {
    let (mut h, mut publisher, mut sub) = setup(&[1000]);
    for i in 0..20u16 {
        let pkt = publisher.rtp(
            VIDEO_PT,
            1000,
            100 + i,
            3000 * u32::from(i),
            &vp8(i, true, i == 0),
        );
        h.send(&publisher, pkt);
    }
    let first: Vec<_> = h
        .take(&sub)
        .into_iter()
        .map(|d| open_rtp(&mut sub, d).unwrap())
        .collect();
    let (lost_a, lost_b) = (first[5].clone(), first[6].clone());
    // The subscriber lost output packets 40005 and 40006, and asks for one never sent.
    let me = sub.config.rtcp_ssrc;
    let nack = sub.rtcp(|w| w.nack(me, 0xABC0, [40_005, 40_006, 41_000]).unwrap());
    h.send(&sub, nack);
    let rtx: Vec<_> = h
        .take(&sub)
        .into_iter()
        .map(|d| open_rtp(&mut sub, d).unwrap())
        .collect();
    assert_eq!(rtx.len(), 2);
    for ((ssrc, _, pt, payload), orig) in rtx.iter().zip([lost_a, lost_b]) {
        assert_eq!((*ssrc, *pt), (0xABC1, 101));
        // RFC 4588: the original sequence number, then the original payload.
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), orig.1);
        assert_eq!(&payload[2..], &orig.3[..]);
    }
    assert_eq!(
        rtx[1].1,
        rtx[0].1.wrapping_add(1),
        "RTX has its own contiguous numbering"
    );
    assert_eq!(
        (h.router.stats().retransmits, h.router.stats().nack_miss),
        (2, 1)
    );
}

#[test]
fn keyframe_requests_are_throttled() {
    let (mut h, mut publisher, mut sub) = setup(&[1000]);
    // Subscribing asked for a keyframe already.
    assert_eq!(
        h.take(&publisher)
            .into_iter()
            .flat_map(|d| open_plis(&mut publisher, d))
            .collect::<Vec<_>>(),
        vec![1000]
    );
    let pkt = publisher.rtp(VIDEO_PT, 1000, 1, 0, &vp8(0, true, true));
    h.send(&publisher, pkt);
    h.take(&sub);
    let mut forwarded = 0;
    for _ in 0..10 {
        let me = sub.config.rtcp_ssrc;
        let pli = sub.rtcp(|w| w.pli(me, 0xABC0).unwrap());
        h.send(&sub, pli);
        forwarded += h
            .take(&publisher)
            .into_iter()
            .flat_map(|d| open_plis(&mut publisher, d))
            .count();
        h.now += 100_000;
    }
    // 1 s of PLIs every 100 ms: the first request was at t=0, so at most two pass (t=0.5
    // and t=1.0 s boundaries) — never ten.
    assert!(forwarded <= 2, "{forwarded} PLIs went upstream");
    assert!(forwarded >= 1);
    assert_eq!(h.router.stats().keyframe_requests as usize, forwarded + 1);
}

#[test]
fn layer_switch_waits_for_keyframe_and_keeps_sequence_contiguous() {
    let (mut h, mut publisher, mut sub) = setup(&[1000, 2000]);
    let mut seqs = Vec::new();
    let mut ssrc_at = Vec::new();
    // Frames on both layers; keyframes on layer 0 at frame 0, on layer 1 at frame 6.
    for f in 0..12u16 {
        h.now += 33_000;
        if f == 3 {
            h.command(RouterCommand::SetLayer {
                session: 2,
                track: 9,
                layer: Some(1),
            });
        }
        for (layer, ssrc) in [(0u16, 1000u32), (1, 2000)] {
            let key = (layer == 0 && f == 0) || (layer == 1 && f == 6);
            for part in 0..2u16 {
                let pkt = publisher.rtp(
                    VIDEO_PT,
                    ssrc,
                    10 * layer + f * 2 + part + 300 * layer,
                    3000 * u32::from(f),
                    &vp8(f, part == 0, key && part == 0),
                );
                h.send(&publisher, pkt);
            }
        }
        for d in h.take(&sub) {
            let (ssrc, seq, _, payload) = open_rtp(&mut sub, d).unwrap();
            assert_eq!(ssrc, 0xABC0);
            seqs.push(seq);
            ssrc_at.push((f, payload[4] & 1 == 0 && payload[0] & 0x10 != 0));
        }
    }
    // Layer 0 for frames 0..=6 (the switch was asked at frame 3; in frame 6 layer 0's
    // packets arrive before layer 1's keyframe), then layer 1 for frames 6..=11: 26
    // packets, numbered without a gap or a repeat.
    assert_eq!(seqs.len(), 26);
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "{seqs:?}"
    );
    // The only keyframes the subscriber saw are the two it needed.
    let keyframes: Vec<_> = ssrc_at
        .iter()
        .filter(|(_, k)| *k)
        .map(|(f, _)| *f)
        .collect();
    assert_eq!(keyframes, vec![0, 6]);
    assert_eq!(h.router.subscription_layers(2, 9), Some((1, 1)));
    // The wait for the layer-1 keyframe asked the publisher for one on layer 1's SSRC.
    let plis: Vec<_> = h
        .take(&publisher)
        .into_iter()
        .flat_map(|d| open_plis(&mut publisher, d))
        .collect();
    assert!(plis.contains(&2000), "{plis:?}");
}

#[test]
fn simulcast_ssrcs_are_learned_from_rid() {
    let mut h = Harness::new();
    let (mut publisher, mut sub) = (Peer::new(1, 5001), Peer::new(2, 5002));
    h.add(&publisher);
    h.add(&sub);
    let mut track = video_track(9, 1, &[0, 0]);
    for (l, rid) in track.layers.iter_mut().zip([b"q", b"h"]) {
        *l = LayerConfig {
            ssrc: None,
            rtx_ssrc: None,
            rid: Some(rid.to_vec()),
        };
    }
    h.command(RouterCommand::AddTrack(Box::new(track)));
    h.command(RouterCommand::Subscribe(subscribe(2, 9, 0xABC0, 1)));
    // One-byte header extension, id 10 (rid) = "h".
    let mut payload = vec![0xbe, 0xde, 0, 1, 0xa0, b'h', 0, 0];
    payload.extend_from_slice(&vp8(0, true, true));
    let mut pkt = publisher.rtp(VIDEO_PT, 7777, 1, 0, &[]);
    // Rebuild with the extension bit and body in the header.
    let mut plain = vec![0x90, VIDEO_PT, 0, 1, 0, 0, 0, 0, 0, 0, 0x1e, 0x61];
    plain.extend_from_slice(&payload);
    let len = plain.len();
    plain.resize(len + 64, 0);
    let n = publisher.tx.protect_rtp(&mut plain, len).unwrap();
    plain.truncate(n);
    pkt.clear();
    h.send(&publisher, plain);
    let got: Vec<_> = h
        .take(&sub)
        .into_iter()
        .map(|d| open_rtp(&mut sub, d).unwrap())
        .collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, 0xABC0);
}

#[test]
fn cross_worker_subscriber_gets_handoff_and_interest_is_tracked() {
    let mut home = Harness::new();
    let mut other = Harness {
        router: Router::new(1, RouterConfig::default()),
        ..Harness::new()
    };
    let (mut publisher, mut sub) = (Peer::new(1, 5001), Peer::new(2, 5002));
    home.add(&publisher);
    other.add(&sub);
    for h in [&mut home, &mut other] {
        h.command(RouterCommand::AddTrack(Box::new(video_track(
            9,
            1,
            &[1000],
        ))));
    }
    other.command(RouterCommand::Subscribe(subscribe(2, 9, 0xABC0, 0)));
    // Interest and a keyframe request travel to the home worker.
    let msgs: Vec<_> = other.out.handoffs.drain(..).collect();
    assert_eq!(msgs.len(), 2);
    for (to, msg) in msgs {
        assert_eq!(to, 0);
        home.router.handle_handoff(home.now, msg, &mut home.out);
    }
    assert_eq!(
        home.take(&publisher)
            .into_iter()
            .flat_map(|d| open_plis(&mut publisher, d))
            .count(),
        1
    );
    let pkt = publisher.rtp(VIDEO_PT, 1000, 1, 0, &vp8(0, true, true));
    home.send(&publisher, pkt);
    let handoffs: Vec<_> = home.out.handoffs.drain(..).collect();
    assert_eq!(handoffs.len(), 1);
    for (to, msg) in handoffs {
        assert_eq!(to, 1);
        other.router.handle_handoff(other.now, msg, &mut other.out);
    }
    let got: Vec<_> = other
        .take(&sub)
        .into_iter()
        .map(|d| open_rtp(&mut sub, d).unwrap())
        .collect();
    assert_eq!(got.len(), 1);
    // The last subscriber leaving withdraws the interest.
    other.command(RouterCommand::Unsubscribe {
        session: 2,
        track: 9,
    });
    for (_, msg) in other.out.handoffs.drain(..) {
        home.router.handle_handoff(home.now, msg, &mut home.out);
    }
    let pkt = publisher.rtp(VIDEO_PT, 1000, 2, 0, &vp8(1, true, false));
    home.send(&publisher, pkt);
    assert!(home.out.handoffs.is_empty());
}

#[test]
fn nack_on_another_worker_is_answered_for_a_rid_learned_layer() {
    let mut home = Harness::new();
    let mut other = Harness {
        router: Router::new(1, RouterConfig::default()),
        ..Harness::new()
    };
    let (mut publisher, mut sub) = (Peer::new(1, 5001), Peer::new(2, 5002));
    home.add(&publisher);
    other.add(&sub);
    // Browser simulcast: the SDP names the layer by rid only.
    let mut track = video_track(9, 1, &[0]);
    track.layers[0] = LayerConfig {
        ssrc: None,
        rtx_ssrc: None,
        rid: Some(b"h".to_vec()),
    };
    for h in [&mut home, &mut other] {
        h.command(RouterCommand::AddTrack(Box::new(track.clone())));
    }
    other.command(RouterCommand::Subscribe(subscribe(2, 9, 0xABC0, 0)));
    for (_, msg) in other.out.handoffs.drain(..) {
        home.router.handle_handoff(home.now, msg, &mut home.out);
    }
    for seq in 1..=3u16 {
        // One-byte header extension, id 10 (rid) = "h".
        let mut plain = vec![0x90, VIDEO_PT, 0, 0, 0, 0, 0, 0, 0, 0, 0x1e, 0x61];
        plain[2..4].copy_from_slice(&seq.to_be_bytes());
        plain.extend_from_slice(&[0xbe, 0xde, 0, 1, 0xa0, b'h', 0, 0]);
        plain.extend_from_slice(&vp8(seq, true, seq == 1));
        let len = plain.len();
        plain.resize(len + 64, 0);
        let n = publisher.tx.protect_rtp(&mut plain, len).unwrap();
        plain.truncate(n);
        home.send(&publisher, plain);
    }
    for (_, msg) in home.out.handoffs.drain(..).collect::<Vec<_>>() {
        other.router.handle_handoff(other.now, msg, &mut other.out);
    }
    let first: Vec<_> = other
        .take(&sub)
        .into_iter()
        .map(|d| open_rtp(&mut sub, d).unwrap())
        .collect();
    assert_eq!(first.len(), 3);
    let me = sub.config.rtcp_ssrc;
    let nack = sub.rtcp(|w| w.nack(me, 0xABC0, [first[1].1]).unwrap());
    other.send(&sub, nack);
    let rtx: Vec<_> = other
        .take(&sub)
        .into_iter()
        .map(|d| open_rtp(&mut sub, d).unwrap())
        .collect();
    assert_eq!(rtx.len(), 1);
    assert_eq!(u16::from_be_bytes([rtx[0].3[0], rtx[0].3[1]]), first[1].1);
    assert_eq!(&rtx[0].3[2..], &first[1].3[..]);
    let s = other.router.stats();
    assert_eq!((s.retransmits, s.nack_miss), (1, 0));
}

/// A plaintext RTP packet with the given extension block (profile word and body).
fn with_extensions(peer: &mut Peer, seq: u16, profile: u16, body: &[u8]) -> Vec<u8> {
    let mut p = vec![0x90, VIDEO_PT];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(3000 * u32::from(seq)).to_be_bytes());
    p.extend_from_slice(&1000u32.to_be_bytes());
    p.extend_from_slice(&profile.to_be_bytes());
    p.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
    p.extend_from_slice(body);
    p.extend_from_slice(&vp8(seq, true, seq == 0));
    let len = p.len();
    p.resize(len + 64, 0);
    let n = peer.tx.protect_rtp(&mut p, len).unwrap();
    p.truncate(n);
    p
}

#[test]
fn extension_ids_are_remapped_per_subscriber_and_twcc_is_stamped_under_the_new_id() {
    let mut h = Harness::new();
    let (mut publisher, mut sub, mut plain) =
        (Peer::new(1, 5001), Peer::new(2, 5002), Peer::new(3, 5003));
    publisher.config.extensions.transport_cc = 5;
    sub.config.extensions.transport_cc = 9;
    plain.config.extensions.transport_cc = 5;
    for p in [&publisher, &sub, &plain] {
        h.add(p);
    }
    h.command(RouterCommand::AddTrack(Box::new(video_track(
        9,
        1,
        &[1000],
    ))));
    let mut map: Box<[u8; 256]> = Box::new(std::array::from_fn(|i| i as u8));
    (map[1], map[3], map[5], map[8], map[20]) = (4, 6, 9, 14, 200);
    h.command(RouterCommand::Subscribe(SubscribeConfig {
        ext_remap: Some(map),
        ..subscribe(2, 9, 0xABC0, 0)
    }));
    // Ids as the publisher sent them: no map.
    h.command(RouterCommand::Subscribe(subscribe(3, 9, 0xDEF0, 0)));

    // One-byte form: mid 1 = "m", 3 = level, 5 = TWCC 0x1388, 8 = something else.
    let one = [0x10, b'm', 0x30, 0x7f, 0x51, 0x13, 0x88, 0x82, 1, 2, 3, 0];
    // Two-byte form (profile 0x1000): 5 = TWCC 0x1389, 20 = two bytes.
    let two = [5, 2, 0x13, 0x89, 20, 2, 0xaa, 0xbb];
    let first = with_extensions(&mut publisher, 0, 0xbede, &one);
    h.send(&publisher, first);
    let second = with_extensions(&mut publisher, 1, 0x1000, &two);
    h.send(&publisher, second);

    let elements = |peer: &mut Peer, d: Vec<u8>| {
        let mut d = d;
        let n = peer.rx.unprotect_rtp(&mut d).unwrap();
        let p = RtpPacket::parse(&d[..n]).unwrap();
        assert_eq!(p.payload()[5..], [1, 2, 3], "the payload is intact");
        p.extensions()
            .map(|e| e.map(|e| (e.id, e.data.to_vec())).unwrap())
            .collect::<Vec<_>>()
    };
    let got: Vec<_> = h
        .take(&sub)
        .into_iter()
        .map(|d| elements(&mut sub, d))
        .collect();
    // The subscriber's own transport numbers, 0 and 1, under its id 9.
    assert_eq!(
        got,
        vec![
            vec![
                (4, b"m".to_vec()),
                (6, vec![0x7f]),
                (9, vec![0, 0]),
                (14, vec![1, 2, 3]),
            ],
            vec![(9, vec![0, 1]), (200, vec![0xaa, 0xbb])],
        ]
    );
    let unmapped: Vec<_> = h
        .take(&plain)
        .into_iter()
        .map(|d| elements(&mut plain, d))
        .collect();
    assert_eq!(
        unmapped,
        vec![
            vec![
                (1, b"m".to_vec()),
                (3, vec![0x7f]),
                (5, vec![0, 0]),
                (8, vec![1, 2, 3]),
            ],
            vec![(5, vec![0, 1]), (20, vec![0xaa, 0xbb])],
        ]
    );
}

/// Datagrams queued for `addr`.
fn queued_for(h: &Harness, addr: SocketAddr) -> usize {
    h.out.egress.iter().filter(|(d, _)| *d == addr).count()
}

#[test]
fn rebind_moves_media_and_egress_to_the_new_remote() {
    let (mut h, mut publisher, mut sub) = setup(&[1000]);
    let pkt = publisher.rtp(VIDEO_PT, 1000, 1, 0, &vp8(0, true, true));
    h.send(&publisher, pkt);
    assert_eq!(h.take(&sub).len(), 1);
    // The subscription's first keyframe request went to the old address.
    assert_eq!(h.take(&publisher).len(), 1);

    // Both peers re-nominate a pair from another local address.
    let (old_pub, old_sub) = (publisher.addr, sub.addr);
    publisher.addr = SocketAddr::from(([127, 0, 0, 2], 6001));
    sub.addr = SocketAddr::from(([127, 0, 0, 2], 6002));
    h.command(RouterCommand::RebindSession {
        session: 1,
        remote: publisher.addr,
    });
    h.command(RouterCommand::RebindSession {
        session: 2,
        remote: sub.addr,
    });
    for seq in 2..5u16 {
        let pkt = publisher.rtp(VIDEO_PT, 1000, seq, 0, &vp8(seq, true, false));
        h.send(&publisher, pkt);
    }
    assert_eq!(queued_for(&h, old_sub), 0);
    let got: Vec<_> = h
        .take(&sub)
        .into_iter()
        .map(|d| open_rtp(&mut sub, d).unwrap())
        .collect();
    assert_eq!(
        got.iter().map(|g| g.1).collect::<Vec<_>>(),
        [40_001, 40_002, 40_003]
    );

    // The old address is nobody's now.
    let before = h.router.stats().drop_unknown_session;
    let stale = publisher.rtp(VIDEO_PT, 1000, 5, 0, &vp8(5, true, false));
    let mut from_old = Peer::new(1, old_pub.port());
    from_old.addr = old_pub;
    h.send(&from_old, stale);
    assert_eq!(h.router.stats().drop_unknown_session, before + 1);
    assert!(h.take(&sub).is_empty());

    // RTCP from the new remote is the session's too: a PLI reaches the publisher, at
    // its new address.
    let me = sub.config.rtcp_ssrc;
    let pli = sub.rtcp(|w| w.pli(me, 0xABC0).unwrap());
    h.advance(1_000_000);
    h.send(&sub, pli);
    assert_eq!(queued_for(&h, old_pub), 0);
    let plis: Vec<_> = h
        .take(&publisher)
        .into_iter()
        .flat_map(|d| open_plis(&mut publisher, d))
        .collect();
    assert_eq!(plis, [1000]);
}

#[test]
fn forwarded_remote_is_handed_to_the_session_worker() {
    let (mut home, mut publisher, mut sub) = setup(&[1000]);
    let mut steered = Harness {
        router: Router::new(1, RouterConfig::default()),
        ..Harness::new()
    };
    let pkt = publisher.rtp(VIDEO_PT, 1000, 1, 0, &vp8(0, true, true));
    home.send(&publisher, pkt);
    assert_eq!(home.take(&sub).len(), 1);

    // The publisher's new address is steered to worker 1; its session stays on 0.
    publisher.addr = SocketAddr::from(([127, 0, 0, 2], 6001));
    home.command(RouterCommand::RebindSession {
        session: 1,
        remote: publisher.addr,
    });
    steered.command(RouterCommand::ForwardRemote {
        remote: publisher.addr,
        worker: 0,
    });
    for seq in 2..5u16 {
        let pkt = publisher.rtp(VIDEO_PT, 1000, seq, 0, &vp8(seq, true, false));
        steered.send(&publisher, pkt);
    }
    let me = publisher.config.rtcp_ssrc;
    let rr = publisher.rtcp(|w| w.receiver_report(me, &[]).unwrap());
    steered.send(&publisher, rr);
    assert_eq!(steered.router.stats().remote_handoffs_out, 4);
    assert_eq!(steered.router.stats().drop_unknown_session, 0);
    for (to, msg) in steered.out.handoffs.drain(..) {
        assert_eq!(to, 0);
        assert!(matches!(msg, RouterHandoff::Datagram { .. }));
        home.router.handle_handoff(home.now, msg, &mut home.out);
    }
    let got: Vec<_> = home
        .take(&sub)
        .into_iter()
        .map(|d| open_rtp(&mut sub, d).unwrap())
        .collect();
    assert_eq!(
        got.iter().map(|g| g.1).collect::<Vec<_>>(),
        [40_001, 40_002, 40_003]
    );
    let s = *home.router.stats();
    assert_eq!((s.remote_handoffs_in, s.rtp_in, s.rtcp_in), (4, 4, 1));

    // Without the forwarding, worker 1 knows no such remote.
    steered.command(RouterCommand::UnforwardRemote {
        remote: publisher.addr,
    });
    let pkt = publisher.rtp(VIDEO_PT, 1000, 5, 0, &vp8(5, true, false));
    steered.send(&publisher, pkt);
    assert!(steered.out.handoffs.is_empty());
    assert_eq!(steered.router.stats().drop_unknown_session, 1);
}

mod cascade;
mod null_media;
