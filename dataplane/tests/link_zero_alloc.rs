//! Media from a link allocates nothing on its way to subscribers: a remote track's
//! packets, handed in as refcounted `Bytes`, are cached, forwarded to local subscribers,
//! handed to another worker and relayed to a further node, NACKs are answered and
//! timers run, all without one allocation on either worker (counted by a global
//! allocator wrapper on this thread).

use bytes::{Bytes, BytesMut};
use sluice_dataplane::engine::{Output, PacketHandler};
use sluice_dataplane::router::{
    Codec, LayerConfig, Router, RouterCommand, RouterConfig, RouterHandoff, SessionConfig,
    SrtpKeys, SubscribeConfig, TrackConfig,
};
use sluice_dataplane::rtcp::RtcpWriter;
use sluice_dataplane::rtp::ExtensionIds;
use sluice_dataplane::srtp::{Profile, SrtpContext};
use std::net::SocketAddr;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

const P: Profile = Profile::AeadAes128Gcm;

fn session(id: u64) -> SessionConfig {
    let keys = |seed: u8| SrtpKeys {
        profile: P,
        key: vec![seed; 16],
        salt: vec![seed; 12],
    };
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

#[test]
fn link_media_allocates_nothing() {
    let track = TrackConfig {
        id: 1,
        // Not a session of this node: the publisher is on another one.
        publisher: 999,
        home: 0,
        codec: Codec::Vp8,
        clock_rate: 90_000,
        payload_type: 96,
        rtx_payload_type: None,
        layers: vec![LayerConfig::default()],
    };
    // A bounded channel: sending on it never allocates.
    let (upstream, _events) = crossbeam_channel::bounded(16);
    let config = RouterConfig {
        handoff_buffers: 256,
        upstream: Some(upstream),
        ..RouterConfig::default()
    };
    let (mut home, mut other) = (Router::new(0, config.clone()), Router::new(1, config));
    let (mut out0, mut out1) = (Output::<RouterHandoff>::default(), Output::default());
    for id in 2..=5 {
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
    for (r, out) in [(&mut home, &mut out0), (&mut other, &mut out1)] {
        r.handle_command(
            0,
            RouterCommand::AddRemoteTrack(Box::new(track.clone())),
            out,
        );
    }
    for id in 2..=5 {
        home.handle_command(0, subscribe(id, 1000 * id as u32), &mut out0);
    }
    other.handle_command(0, subscribe(6, 6000), &mut out1);
    home.handle_command(
        0,
        RouterCommand::LinkSubscribe {
            track: 1,
            node: 3,
            layer: 0,
        },
        &mut out0,
    );
    for (_, msg) in out1.handoffs.drain(..) {
        home.handle_handoff(0, msg, &mut out0);
    }
    out0.clear();

    // The link's packets, refcounted as a receive buffer hands them over (setup may
    // allocate).
    let packets: Vec<Bytes> = (0..3000u16)
        .map(|i| {
            let mut p = vec![0x80, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 77];
            p[2..4].copy_from_slice(&i.to_be_bytes());
            p[4..8].copy_from_slice(&(u32::from(i) * 3000).to_be_bytes());
            p.extend_from_slice(&[0x90, 0x80, 0x80 | (i >> 8) as u8, i as u8]);
            p.push(u8::from(i % 100 != 0));
            p.resize(1200, 0xab);
            BytesMut::from(&p[..]).split().freeze()
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

    let subscriber: SocketAddr = "127.0.0.1:6002".parse().unwrap();
    let mut buf = vec![0u8; 2048];
    let mut run = |range: std::ops::Range<usize>, home: &mut Router, other: &mut Router| {
        for i in range {
            let now = 1_000 + i as u64 * 1_000;
            let cmd = RouterCommand::LinkMedia {
                track: 1,
                layer: 0,
                keyframe: i % 100 == 0,
                packet: packets[i].clone(),
            };
            home.handle_command(now, cmd, &mut out0);
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
    // Past the first second, when the first reports go out.
    run(0..1500, &mut home, &mut other);
    let (forwarded, relayed) = (
        home.stats().rtp_out + other.stats().rtp_out,
        home.stats().link_out,
    );
    let n = allocations(|| run(1500..3000, &mut home, &mut other));
    assert_eq!(n, 0, "allocations on the link ingest path");
    let forwarded = home.stats().rtp_out + other.stats().rtp_out - forwarded;
    assert!(forwarded >= 1500 * 5, "forwarded {forwarded}");
    assert_eq!(home.stats().link_out - relayed, 1500);
    assert_eq!(home.stats().link_in, 3000);
    assert_eq!(home.stats().retransmits, 40);

    // The counter is live: an allocation is seen.
    assert_eq!(allocations(|| drop(std::hint::black_box(vec![1u8; 10]))), 1);
}
