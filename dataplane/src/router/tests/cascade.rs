//! Remote tracks (published on another node) and the publishing node's side of a link,
//! with virtual time and real SRTP toward the local peers.

use super::*;
use bytes::BytesMut;
use crossbeam_channel::Receiver;

/// A track whose publisher lives on another node. `publisher` is deliberately a local
/// subscriber's session id: a remote track must never treat it as its publisher.
fn remote_track(id: TrackId, layers: usize, home: WorkerId) -> TrackConfig {
    let mut c = video_track(id, 2, &vec![0; layers]);
    c.home = home;
    for l in &mut c.layers {
        *l = LayerConfig::default();
    }
    c
}

/// The publisher's plaintext RTP, refcounted the way a link's receive buffer hands it
/// over (a clone shares it, never copies).
fn plain(ssrc: u32, seq: u16, keyframe: bool) -> Bytes {
    let mut p = vec![0x80, VIDEO_PT, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(3000 * u32::from(seq)).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&vp8(seq, true, keyframe));
    BytesMut::from(&p[..]).split().freeze()
}

fn add_remote(h: &mut Harness, id: TrackId, layers: usize, home: WorkerId) {
    h.command(RouterCommand::AddRemoteTrack(Box::new(remote_track(
        id, layers, home,
    ))));
}

fn link_media(h: &mut Harness, track: TrackId, layer: u8, keyframe: bool, packet: Bytes) {
    h.command(RouterCommand::LinkMedia {
        track,
        layer,
        keyframe,
        packet,
    });
}

fn worker(id: WorkerId) -> (Harness, Receiver<UpstreamEvent>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let config = RouterConfig {
        upstream: Some(tx),
        ..RouterConfig::default()
    };
    let h = Harness {
        router: Router::new(id, config),
        ..Harness::new()
    };
    (h, rx)
}

fn events(rx: &Receiver<UpstreamEvent>) -> Vec<UpstreamEvent> {
    rx.try_iter().collect()
}

/// Decrypted (ssrc, seq, payload type, payload) of everything queued for `peer`.
fn received(h: &mut Harness, peer: &mut Peer) -> Vec<(u32, u16, u8, Vec<u8>)> {
    h.take(peer)
        .into_iter()
        .map(|d| open_rtp(peer, d).expect("decrypts and parses"))
        .collect()
}

const KEYFRAME_REQUEST: UpstreamEvent = UpstreamEvent::KeyframeRequest { track: 9, layer: 0 };

#[test]
fn remote_media_reaches_a_local_subscriber_rewritten_in_order() {
    let (mut h, up) = worker(0);
    let mut sub = Peer::new(2, 5002);
    h.add(&sub);
    add_remote(&mut h, 9, 1, 0);
    h.command(RouterCommand::Subscribe(subscribe(2, 9, 0xABC0, 0)));
    // Subscribing wants a keyframe, and only the far publisher can send one.
    assert_eq!(events(&up), [KEYFRAME_REQUEST]);
    for seq in 500..510u16 {
        link_media(&mut h, 9, 0, seq == 500, plain(0x1234, seq, seq == 500));
    }
    let got = received(&mut h, &mut sub);
    assert_eq!(got.len(), 10);
    for (i, (ssrc, seq, pt, payload)) in got.iter().enumerate() {
        assert_eq!((*ssrc, *seq, *pt), (0xABC0, 40_000 + i as u16, 100));
        assert_eq!(payload[4..], vp8(500 + i as u16, true, i == 0)[4..]);
    }
    let s = *h.router.stats();
    assert_eq!(
        (s.link_in, s.rtp_out, s.drop_link_unknown_track),
        (10, 10, 0)
    );
    // Nothing went to the session the config named as publisher but the subscriber.
    assert!(h.out.egress.is_empty());
}

#[test]
fn remote_media_is_handed_to_a_subscriber_on_another_worker_by_reference() {
    let (mut home, up) = worker(0);
    let (mut other, other_up) = worker(1);
    let mut sub = Peer::new(2, 5002);
    other.add(&sub);
    for h in [&mut home, &mut other] {
        add_remote(h, 9, 1, 0);
    }
    other.command(RouterCommand::Subscribe(subscribe(2, 9, 0xABC0, 0)));
    // Interest and the keyframe request go to the home worker, which asks upstream.
    for (to, msg) in other.out.handoffs.drain(..) {
        assert_eq!(to, 0);
        home.router.handle_handoff(home.now, msg, &mut home.out);
    }
    assert_eq!(events(&up), [KEYFRAME_REQUEST]);
    assert!(events(&other_up).is_empty());

    for seq in 1..=5u16 {
        let packet = plain(0x1234, seq, seq == 1);
        link_media(&mut home, 9, 0, seq == 1, packet.clone());
        let handoffs: Vec<_> = home.out.handoffs.drain(..).collect();
        assert_eq!(handoffs.len(), 1);
        for (to, msg) in handoffs {
            assert_eq!(to, 1);
            match &msg {
                RouterHandoff::Media {
                    packet: shared,
                    keyframe,
                    ..
                } => {
                    assert_eq!(shared.as_ptr(), packet.as_ptr(), "shared, not copied");
                    assert_eq!(*keyframe, seq == 1);
                }
                other => panic!("{other:?}"),
            }
            other.router.handle_handoff(other.now, msg, &mut other.out);
        }
    }
    let seqs: Vec<_> = received(&mut other, &mut sub).iter().map(|g| g.1).collect();
    assert_eq!(seqs, (40_000..40_005).collect::<Vec<_>>());
    assert_eq!(home.router.stats().link_in, 5);
}

#[test]
fn keyframe_requests_for_a_remote_track_go_upstream_throttled() {
    let (mut h, up) = worker(0);
    let mut sub = Peer::new(2, 5002);
    h.add(&sub);
    add_remote(&mut h, 9, 2, 0);
    h.command(RouterCommand::Subscribe(subscribe(2, 9, 0xABC0, 0)));
    assert_eq!(events(&up), [KEYFRAME_REQUEST]);
    link_media(&mut h, 9, 0, true, plain(0x1234, 1, true));
    assert_eq!(received(&mut h, &mut sub).len(), 1);

    // Ten PLIs 100 ms apart, the first 600 ms after the subscription's request: one
    // every 500 ms goes up.
    h.now += 600_000;
    let mut up_count = 0;
    for _ in 0..10 {
        let me = sub.config.rtcp_ssrc;
        let pli = sub.rtcp(|w| w.pli(me, 0xABC0).unwrap());
        h.send(&sub, pli);
        let got = events(&up);
        assert!(got.iter().all(|e| *e == KEYFRAME_REQUEST), "{got:?}");
        up_count += got.len();
        h.now += 100_000;
    }
    assert_eq!(up_count, 2);
    assert_eq!(h.router.stats().keyframe_requests_upstream, 3);
    // No PLI went anywhere as RTCP: there is no publisher here.
    assert!(h.out.egress.is_empty());
    assert_eq!(h.router.stats().keyframe_requests, 0);

    // A layer switch asks for the new layer's keyframe, and so does a far node.
    h.command(RouterCommand::SetLayer {
        session: 2,
        track: 9,
        layer: Some(1),
    });
    const LAYER1: UpstreamEvent = UpstreamEvent::KeyframeRequest { track: 9, layer: 1 };
    assert_eq!(events(&up), [LAYER1]);
    h.now += 500_000;
    h.command(RouterCommand::RequestKeyframe { track: 9, layer: 1 });
    h.command(RouterCommand::RequestKeyframe { track: 9, layer: 1 });
    assert_eq!(events(&up), [LAYER1]);
}

#[test]
fn nacks_on_a_remote_track_are_served_from_cache_else_asked_upstream_once() {
    let (mut h, up) = worker(0);
    let mut sub = Peer::new(2, 5002);
    h.add(&sub);
    add_remote(&mut h, 9, 1, 0);
    h.command(RouterCommand::Subscribe(subscribe(2, 9, 0xABC0, 0)));
    events(&up);
    // 102 and 103 are lost on the link.
    for seq in [100u16, 101, 104, 105] {
        link_media(&mut h, 9, 0, seq == 100, plain(0x1234, seq, seq == 100));
    }
    let got = received(&mut h, &mut sub);
    let seqs: Vec<_> = got.iter().map(|g| g.1).collect();
    // The subscriber sees the link's gap as its own.
    assert_eq!(seqs, [40_000, 40_001, 40_004, 40_005]);

    let me = sub.config.rtcp_ssrc;
    let nack = sub.rtcp(|w| w.nack(me, 0xABC0, [40_001, 40_002, 40_003]).unwrap());
    h.send(&sub, nack);
    // 40001 is in the cache: resent as RTX carrying the original output number.
    let rtx = received(&mut h, &mut sub);
    assert_eq!(rtx.len(), 1);
    assert_eq!((rtx[0].0, rtx[0].2), (0xABC1, 101));
    assert_eq!(u16::from_be_bytes([rtx[0].3[0], rtx[0].3[1]]), 40_001);
    // The other two are asked of the publisher, in its own numbering.
    assert_eq!(
        events(&up),
        [UpstreamEvent::NackUpstream {
            track: 9,
            layer: 0,
            seqs: vec![102, 103],
        }]
    );
    // Asked again before a repair could arrive: the link is not asked twice.
    h.now += 20_000;
    let nack = sub.rtcp(|w| w.nack(me, 0xABC0, [40_002, 40_003]).unwrap());
    h.send(&sub, nack);
    assert!(events(&up).is_empty());
    // The repair of 102 arrives and goes out in its place; a copy of it is a duplicate.
    link_media(&mut h, 9, 0, false, plain(0x1234, 102, false));
    link_media(&mut h, 9, 0, false, plain(0x1234, 102, false));
    let repaired = received(&mut h, &mut sub);
    assert_eq!(repaired.len(), 1);
    assert_eq!(repaired[0].1, 40_002);
    assert_eq!(repaired[0].3[4..], vp8(102, true, false)[4..]);
    // Still missing after the interval: 103 is asked again, 102 is not.
    h.now += 100_000;
    let nack = sub.rtcp(|w| w.nack(me, 0xABC0, [40_002, 40_003]).unwrap());
    h.send(&sub, nack);
    assert_eq!(
        events(&up),
        [UpstreamEvent::NackUpstream {
            track: 9,
            layer: 0,
            seqs: vec![103],
        }]
    );
    let s = *h.router.stats();
    assert_eq!(
        (s.retransmits, s.nack_upstream, s.drop_duplicate),
        (2, 3, 1)
    );
}

#[test]
fn link_media_that_is_not_a_remote_track_here_is_counted_and_dropped() {
    let (mut h, _publisher, sub) = setup(&[1000]);
    let (mut other, _) = worker(1);
    for w in [&mut h, &mut other] {
        add_remote(w, 10, 1, 1);
    }
    // Unknown; a local publisher's track; a remote track homed elsewhere.
    link_media(&mut h, 77, 0, true, plain(1, 1, true));
    link_media(&mut h, 9, 0, true, plain(1000, 1, true));
    link_media(&mut h, 10, 0, true, plain(1, 1, true));
    assert_eq!(h.router.stats().drop_link_unknown_track, 3);
    // Garbage and a layer the track lacks, on the right worker.
    link_media(&mut other, 10, 0, true, Bytes::from_static(&[0x80; 8]));
    link_media(&mut other, 10, 3, true, plain(1, 1, true));
    link_media(&mut other, 10, 0, true, Bytes::from_static(&[0xff; 40]));
    assert_eq!(other.router.stats().drop_malformed, 3);
    assert!(h.take(&sub).is_empty());
    assert!(other.out.is_empty());
    // Removed: unknown again.
    other.command(RouterCommand::RemoveTrack(10));
    link_media(&mut other, 10, 0, true, plain(1, 1, true));
    assert_eq!(other.router.stats().drop_link_unknown_track, 1);
}

fn links(h: &mut Harness) -> Vec<(u32, u8, bool, u16)> {
    h.out
        .links
        .drain(..)
        .map(|p| {
            assert_eq!(p.track, 9);
            let rtp = RtpPacket::parse(&p.packet).expect("plaintext RTP");
            (p.node, p.layer, p.keyframe, rtp.sequence_number())
        })
        .collect()
}

#[test]
fn link_subscriptions_send_each_layer_once_per_node_with_the_keyframe_flag() {
    let (mut h, mut publisher, _sub) = setup(&[1000, 2000]);
    for (node, layer) in [(7, 0), (7, 0), (8, 0), (7, 1)] {
        h.command(RouterCommand::LinkSubscribe {
            track: 9,
            node,
            layer,
        });
    }
    let mut send = |h: &mut Harness, ssrc: u32, seq: u16, key: bool| {
        let pkt = publisher.rtp(VIDEO_PT, ssrc, seq, 0, &vp8(seq, true, key));
        h.send(&publisher, pkt);
    };
    send(&mut h, 1000, 1, true);
    send(&mut h, 1000, 2, false);
    send(&mut h, 2000, 50, true);
    assert_eq!(
        links(&mut h),
        [
            (7, 0, true, 1),
            (8, 0, true, 1),
            (7, 0, false, 2),
            (8, 0, false, 2),
            (7, 1, true, 50),
        ]
    );
    // The far node gets the publisher's plaintext: its own SSRC and payload.
    send(&mut h, 2000, 51, false);
    let p = h.out.links.pop().unwrap();
    let rtp = RtpPacket::parse(&p.packet).unwrap();
    assert_eq!(
        (rtp.ssrc(), rtp.payload()),
        (2000, &vp8(51, true, false)[..])
    );
    assert_eq!(h.router.stats().link_out, 6);

    h.command(RouterCommand::LinkUnsubscribe {
        track: 9,
        node: 7,
        layer: 0,
    });
    h.command(RouterCommand::LinkUnsubscribe {
        track: 9,
        node: 7,
        layer: 1,
    });
    send(&mut h, 1000, 3, false);
    send(&mut h, 2000, 52, false);
    assert_eq!(links(&mut h), [(8, 0, false, 3)]);
}

#[test]
fn a_far_nodes_nack_is_answered_from_the_cache_to_that_node() {
    let (mut h, mut publisher, _sub) = setup(&[1000]);
    h.command(RouterCommand::LinkSubscribe {
        track: 9,
        node: 7,
        layer: 0,
    });
    h.command(RouterCommand::LinkSubscribe {
        track: 9,
        node: 8,
        layer: 0,
    });
    for seq in 10..15u16 {
        let pkt = publisher.rtp(VIDEO_PT, 1000, seq, 0, &vp8(seq, true, seq == 10));
        h.send(&publisher, pkt);
    }
    h.out.links.clear();
    let nack = |seqs: Vec<u16>, node| RouterCommand::LinkNack {
        track: 9,
        node,
        layer: 0,
        seqs,
    };
    // 99 was never sent; node 9 subscribes to nothing.
    h.command(nack(vec![10, 12, 99], 7));
    h.command(nack(vec![11], 9));
    let resent: Vec<_> = h.out.links.drain(..).collect();
    assert_eq!(
        resent
            .iter()
            .map(|p| (
                p.node,
                p.keyframe,
                RtpPacket::parse(&p.packet).unwrap().sequence_number()
            ))
            .collect::<Vec<_>>(),
        [(7, true, 10), (7, false, 12)]
    );
    let payload = RtpPacket::parse(&resent[1].packet)
        .unwrap()
        .payload()
        .to_vec();
    assert_eq!(payload, vp8(12, true, false));
    let s = *h.router.stats();
    assert_eq!((s.link_retransmits, s.link_nack_miss), (2, 2));
    // An absurdly long NACK is looked at only up to the cap.
    h.command(nack((0..1000).collect(), 7));
    assert_eq!(
        h.router.stats().link_nack_miss,
        2 + MAX_NACK_UPSTREAM as u64 - 5
    );
}

#[test]
fn a_remote_track_relays_to_further_nodes() {
    let (mut h, _up) = worker(0);
    add_remote(&mut h, 9, 1, 0);
    h.command(RouterCommand::LinkSubscribe {
        track: 9,
        node: 3,
        layer: 0,
    });
    let packet = plain(0x1234, 1, true);
    link_media(&mut h, 9, 0, true, packet.clone());
    let out: Vec<_> = h.out.links.drain(..).collect();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].node, out[0].keyframe), (3, true));
    assert_eq!(out[0].packet.as_ptr(), packet.as_ptr());
}

/// A local publisher's audio level condenses into one loudness report per interval
/// for the control plane; a node with no control plane listening measures nothing.
#[test]
fn local_audio_levels_become_one_loudness_report_per_interval() {
    // One second of 20 ms packets from a publisher whose audio level id is 3.
    let talk = |h: &mut Harness, dbov: fn(u16) -> u8| {
        let mut publisher = Peer::new(1, 5001);
        publisher.config.extensions.audio_level = 3;
        h.add(&publisher);
        h.command(RouterCommand::AddTrack(Box::new(video_track(
            9,
            1,
            &[1000],
        ))));
        for seq in 0..50u16 {
            let ext = [0x30, 0x80 | dbov(seq), 0, 0];
            let p = with_extensions(&mut publisher, seq, 0xbede, &ext);
            h.send(&publisher, p);
            h.advance(20_000);
        }
    };
    // -20 dBov for 400 ms, then -60.
    let (mut h, up) = worker(0);
    talk(&mut h, |seq| if seq < 20 { 20 } else { 60 });
    assert_eq!(
        events(&up),
        [107, 107, 67, 67].map(|loudness| UpstreamEvent::AudioLevel { track: 9, loudness })
    );
    assert_eq!(h.router.stats().events_dropped, 0);

    // Without a control plane there is nobody to tell, and nothing is counted dropped.
    let mut alone = Harness::new();
    talk(&mut alone, |_| 20);
    let s = alone.router.stats();
    assert_eq!((s.rtp_in, s.events_dropped), (50, 0));
}
