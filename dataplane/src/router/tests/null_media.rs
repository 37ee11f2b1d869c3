//! Null-media mode: a publisher's datagrams reach its subscribers byte for byte as they
//! were sent, without the router opening them, and nobody else.

use super::*;

fn null_worker(id: WorkerId) -> Harness {
    Harness {
        router: Router::new(
            id,
            RouterConfig {
                null_media: true,
                ..RouterConfig::default()
            },
        ),
        ..Harness::new()
    }
}

fn audio_track(id: TrackId, publisher: SessionId, ssrc: u32) -> TrackConfig {
    TrackConfig {
        codec: Codec::Opus,
        clock_rate: 48_000,
        payload_type: 111,
        rtx_payload_type: None,
        ..video_track(id, publisher, &[ssrc])
    }
}

/// Sends `datagram` from `from` and returns it, for comparing with what comes out.
fn send(h: &mut Harness, from: &Peer, datagram: Vec<u8>) -> Vec<u8> {
    h.send(from, datagram.clone());
    datagram
}

/// Sends an SRTP packet from `from` and returns it as sent.
fn send_rtp(
    h: &mut Harness,
    from: &mut Peer,
    pt: u8,
    ssrc: u32,
    seq: u16,
    payload: &[u8],
) -> Vec<u8> {
    let datagram = from.rtp(pt, ssrc, seq, 0, payload);
    send(h, from, datagram)
}

/// Publisher 1 (audio track 8, two-layer video track 9), subscriber 2 on both tracks,
/// subscriber 3 on video layer 0 only, subscriber 4 on nothing of publisher 1 but on
/// publisher 5's track 20.
struct Room {
    h: Harness,
    publisher: Peer,
    both: Peer,
    video_only: Peer,
    other: Peer,
    other_publisher: Peer,
}

fn room() -> Room {
    let mut h = null_worker(0);
    let (publisher, both, video_only, other, other_publisher) = (
        Peer::new(1, 5001),
        Peer::new(2, 5002),
        Peer::new(3, 5003),
        Peer::new(4, 5004),
        Peer::new(5, 5005),
    );
    for p in [&publisher, &both, &video_only, &other, &other_publisher] {
        h.add(p);
    }
    h.command(RouterCommand::AddTrack(Box::new(audio_track(8, 1, 2000))));
    h.command(RouterCommand::AddTrack(Box::new(video_track(
        9,
        1,
        &[1000, 1010],
    ))));
    h.command(RouterCommand::AddTrack(Box::new(video_track(
        20,
        5,
        &[3000],
    ))));
    h.command(RouterCommand::Subscribe(subscribe(2, 8, 0xA0, 0)));
    h.command(RouterCommand::Subscribe(subscribe(2, 9, 0xB0, 0)));
    h.command(RouterCommand::Subscribe(subscribe(3, 9, 0xC0, 0)));
    h.command(RouterCommand::Subscribe(subscribe(4, 20, 0xD0, 0)));
    Room {
        h,
        publisher,
        both,
        video_only,
        other,
        other_publisher,
    }
}

#[test]
fn publisher_datagrams_reach_every_subscriber_unchanged_and_nobody_else() {
    let Room {
        mut h,
        mut publisher,
        mut both,
        mut video_only,
        other,
        other_publisher,
    } = room();
    // What setting up sent (keyframe requests to the publishers) is not media.
    h.out.egress.clear();
    let mut sent = vec![
        send_rtp(&mut h, &mut publisher, 111, 2000, 1, b"audio"),
        send_rtp(
            &mut h,
            &mut publisher,
            VIDEO_PT,
            1000,
            1,
            &vp8(0, true, true),
        ),
        // Upper layer too: no layer selection in this mode.
        send_rtp(
            &mut h,
            &mut publisher,
            VIDEO_PT,
            1010,
            1,
            &vp8(0, true, true),
        ),
    ];
    // Never opened: a replayed datagram and one that fails authentication go out too.
    sent.push(send(&mut h, &publisher, sent[0].clone()));
    let mut forged = publisher.rtp(VIDEO_PT, 1000, 2, 0, b"forged");
    *forged.last_mut().unwrap() ^= 1;
    sent.push(send(&mut h, &publisher, forged));

    for sub in [&mut both, &mut video_only] {
        let got = h.take(sub);
        assert_eq!(got, sent, "session {}: each datagram once, as sent", sub.id);
        assert!(
            got.into_iter().all(|d| open_rtp(sub, d).is_none()),
            "ciphertext under the publisher's keys"
        );
    }
    assert!(h.take(&other).is_empty());
    assert!(h.take(&publisher).is_empty());
    let s = *h.router.stats();
    assert_eq!((s.rtp_in, s.rtp_out), (5, 10));
    assert_eq!((s.drop_replay, s.drop_srtp_auth), (0, 0));

    // The other publisher's media goes to its own subscriber only.
    let mut other_publisher = other_publisher;
    let d = send_rtp(&mut h, &mut other_publisher, VIDEO_PT, 3000, 1, b"x");
    assert_eq!(h.take(&other), vec![d]);
    assert!(h.take(&both).is_empty() && h.take(&video_only).is_empty());

    // RTCP is still the router's: opened and handled, never copied.
    let ssrc = publisher.config.rtcp_ssrc;
    let rr = publisher.rtcp(|w| w.receiver_report(ssrc, &[]).unwrap());
    h.send(&publisher, rr);
    assert_eq!(h.router.stats().rtcp_in, 1);
    assert!(h.out.egress.is_empty());

    // No keyframe chasing: subscribers never get a layer, and that asks nothing.
    for _ in 0..40 {
        h.advance(50_000);
    }
    let plis: usize = h
        .take(&publisher)
        .into_iter()
        .map(|d| open_plis(&mut publisher, d).len())
        .sum();
    assert_eq!(plis, 0);
}

#[test]
fn fan_out_follows_unsubscribes_removals_and_rebinds() {
    let Room {
        mut h,
        mut publisher,
        both,
        video_only,
        ..
    } = room();
    h.out.egress.clear();
    // Off the video track, still on audio: still gets every datagram.
    h.command(RouterCommand::Unsubscribe {
        session: 2,
        track: 9,
    });
    // Off its only track.
    h.command(RouterCommand::Unsubscribe {
        session: 3,
        track: 9,
    });
    let d = send_rtp(&mut h, &mut publisher, 111, 2000, 1, b"a");
    assert_eq!(h.take(&both), vec![d]);
    assert!(h.take(&video_only).is_empty());

    // A subscriber moving: its copies follow. The publisher moving: its datagrams are
    // recognised at the new address only.
    let moved_to = SocketAddr::from(([127, 0, 0, 1], 6002));
    h.command(RouterCommand::RebindSession {
        session: 2,
        remote: moved_to,
    });
    let old_publisher = publisher.addr;
    publisher.addr = SocketAddr::from(([127, 0, 0, 1], 6001));
    h.command(RouterCommand::RebindSession {
        session: 1,
        remote: publisher.addr,
    });
    let d = send_rtp(&mut h, &mut publisher, 111, 2000, 2, b"b");
    let dests: Vec<SocketAddr> = h.out.egress.iter().map(|(a, _)| a).collect();
    assert_eq!(dests, vec![moved_to]);
    assert_eq!(h.out.egress.iter().next().unwrap().1, &d[..]);
    h.out.egress.clear();
    let stale = Peer {
        addr: old_publisher,
        ..Peer::new(1, 5001)
    };
    h.send(&stale, d);
    assert!(h.out.egress.is_empty());

    // The subscriber gone, or the track gone: nothing goes out.
    h.command(RouterCommand::RemoveSession(2));
    send_rtp(&mut h, &mut publisher, 111, 2000, 3, b"c");
    assert!(h.out.egress.is_empty());
    h.command(RouterCommand::Subscribe(subscribe(3, 8, 0xC1, 0)));
    send_rtp(&mut h, &mut publisher, 111, 2000, 4, b"d");
    assert_eq!(h.take(&video_only).len(), 1);
    h.command(RouterCommand::RemoveTrack(8));
    h.command(RouterCommand::RemoveTrack(9));
    // No tracks left: the publisher's RTP takes the normal path (and finds no track).
    let before = h.router.stats().drop_unknown_ssrc;
    send_rtp(&mut h, &mut publisher, 111, 2000, 5, b"e");
    assert!(h.out.egress.is_empty());
    assert_eq!(h.router.stats().drop_unknown_ssrc, before + 1);
}

#[test]
fn subscribers_on_another_worker_get_the_datagram_by_handoff() {
    let (mut home, mut other) = (null_worker(0), null_worker(1));
    let (mut publisher, local, remote) =
        (Peer::new(1, 5001), Peer::new(2, 5002), Peer::new(3, 5003));
    home.add(&publisher);
    home.add(&local);
    other.add(&remote);
    for h in [&mut home, &mut other] {
        h.command(RouterCommand::AddTrack(Box::new(video_track(
            9,
            1,
            &[1000],
        ))));
    }
    home.command(RouterCommand::Subscribe(subscribe(2, 9, 0xB0, 0)));
    other.command(RouterCommand::Subscribe(subscribe(3, 9, 0xC0, 0)));
    for (to, msg) in other.out.handoffs.drain(..).collect::<Vec<_>>() {
        assert_eq!(to, 0);
        home.router.handle_handoff(home.now, msg, &mut home.out);
    }
    home.out.egress.clear();

    let d = send_rtp(&mut home, &mut publisher, VIDEO_PT, 1000, 1, b"v");
    assert_eq!(home.take(&local), vec![d.clone()]);
    let handoffs: Vec<_> = home.out.handoffs.drain(..).collect();
    assert_eq!(handoffs.len(), 1);
    for (to, msg) in handoffs {
        assert_eq!(to, 1);
        assert!(matches!(msg, RouterHandoff::NullMedia { publisher: 1, .. }));
        other.router.handle_handoff(other.now, msg, &mut other.out);
    }
    assert_eq!(other.take(&remote), vec![d]);
    assert_eq!(
        home.router.stats().rtp_out + other.router.stats().rtp_out,
        2
    );

    // The last remote subscriber leaving withdraws the handoff.
    other.command(RouterCommand::Unsubscribe {
        session: 3,
        track: 9,
    });
    for (_, msg) in other.out.handoffs.drain(..).collect::<Vec<_>>() {
        home.router.handle_handoff(home.now, msg, &mut home.out);
    }
    send_rtp(&mut home, &mut publisher, VIDEO_PT, 1000, 2, b"w");
    assert!(home.out.handoffs.is_empty());
    assert_eq!(home.take(&local).len(), 1);
}

#[test]
fn a_publisher_steered_to_another_worker_is_copied_by_its_sessions_worker() {
    let Room {
        mut h,
        mut publisher,
        both,
        ..
    } = room();
    h.out.egress.clear();
    let mut steered = null_worker(1);
    publisher.addr = SocketAddr::from(([127, 0, 0, 2], 6001));
    h.command(RouterCommand::RebindSession {
        session: 1,
        remote: publisher.addr,
    });
    steered.command(RouterCommand::ForwardRemote {
        remote: publisher.addr,
        worker: 0,
    });
    let d = send_rtp(&mut steered, &mut publisher, 111, 2000, 1, b"a");
    let ssrc = publisher.config.rtcp_ssrc;
    let rr = publisher.rtcp(|w| w.receiver_report(ssrc, &[]).unwrap());
    steered.send(&publisher, rr);
    assert!(steered.out.egress.is_empty());
    for (to, msg) in steered.out.handoffs.drain(..) {
        assert_eq!(to, 0);
        h.router.handle_handoff(h.now, msg, &mut h.out);
    }
    assert_eq!(h.take(&both), vec![d]);
    let s = *h.router.stats();
    assert_eq!((s.remote_handoffs_in, s.rtp_in, s.rtcp_in), (2, 1, 1));
}
