//! Two nodes on real drivers, joined the way the cascade joins them but without QUIC:
//! node A's link packets are framed with the link codec, decoded and handed to node B,
//! whose subscribers (one per worker) get the publisher's packets in order, payload
//! intact. B's requests go upstream as events that the test delivers to A: a keyframe
//! request reaches the publisher as a PLI, and a packet the link lost is NACKed by a
//! subscriber, asked of A and resent from A's cache. Timeouts only turn a hang into a
//! failure.

use bytes::Bytes;
use crossbeam_channel::Receiver;
use sluice_dataplane::driver::{DriverConfig, DriverKind, worker_for};
use sluice_dataplane::engine::LinkPacket;
use sluice_dataplane::link::{self, MAX_FRAME};
use sluice_dataplane::node::{MediaNode, NodeError};
use sluice_dataplane::router::{
    Codec, LayerConfig, RouterConfig, SessionConfig, SrtpKeys, SubscribeConfig, TrackConfig,
    UpstreamEvent,
};
use sluice_dataplane::rtcp::{RtcpPacket, RtcpWriter, parse_compound};
use sluice_dataplane::rtp::{ExtensionIds, RtpPacket};
use sluice_dataplane::srtp::{Profile, SrtpContext};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

const PROFILE: Profile = Profile::AeadAes128Gcm;
const WORKERS: usize = 2;
const TRACK: u64 = 7;
/// Node B's id, as A's link subscriptions name it.
const NODE_B: u32 = 2;
const SSRC: u32 = 0x0a0a;

fn keys(seed: u8) -> SrtpKeys {
    SrtpKeys {
        profile: PROFILE,
        key: vec![seed; 16],
        salt: vec![seed.wrapping_mul(3); 12],
    }
}

struct Client {
    id: u64,
    sock: UdpSocket,
    tx: SrtpContext,
    rx: SrtpContext,
}

impl Client {
    /// A client socket the node steers to `worker`, with its session installed.
    fn new(id: u64, worker: usize, node: &mut MediaNode) -> Self {
        let sock = loop {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            if worker_for(s.local_addr().unwrap(), WORKERS) == worker {
                break s;
            }
        };
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let (up, down) = (keys(id as u8), keys(!(id as u8)));
        let placed = node
            .add_session(SessionConfig {
                id,
                remote: sock.local_addr().unwrap(),
                inbound: up.clone(),
                outbound: down.clone(),
                extensions: ExtensionIds::default(),
                rtcp_ssrc: id as u32,
            })
            .unwrap();
        assert_eq!(placed, worker);
        sock.connect(node.local_addr()).unwrap();
        Self {
            id,
            sock,
            tx: SrtpContext::new(PROFILE, &up.key, &up.salt).unwrap(),
            rx: SrtpContext::new(PROFILE, &down.key, &down.salt).unwrap(),
        }
    }

    fn send_rtp(&mut self, seq: u16) {
        let mut p = vec![0x80, 111, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 960).to_be_bytes());
        p[8..12].copy_from_slice(&SSRC.to_be_bytes());
        p.extend_from_slice(&body(seq));
        let len = p.len();
        p.resize(len + 32, 0);
        let n = self.tx.protect_rtp(&mut p, len).unwrap();
        self.sock.send(&p[..n]).unwrap();
    }

    fn send_nack(&mut self, media_ssrc: u32, lost: u16) {
        let mut b = vec![0u8; 256];
        let mut w = RtcpWriter::new(&mut b[..200]);
        w.nack(self.id as u32, media_ssrc, [lost]).unwrap();
        let n = w.finish();
        let n = self.tx.protect_rtcp(&mut b, n).unwrap();
        self.sock.send(&b[..n]).unwrap();
    }

    /// Decrypted RTP as (seq, payload) and the media SSRCs of PLIs, from what arrived
    /// within the read timeout.
    fn drain(&mut self) -> (Vec<(u16, Vec<u8>)>, Vec<u32>) {
        let (mut rtp, mut plis) = (Vec::new(), Vec::new());
        let mut buf = [0u8; 2048];
        while let Ok(n) = self.sock.recv(&mut buf) {
            if (192..=223).contains(&buf[1]) {
                let n = self.rx.unprotect_rtcp(&mut buf[..n]).expect("authentic");
                plis.extend(parse_compound(&buf[..n]).filter_map(|p| match p {
                    Ok(RtcpPacket::Pli(p)) => Some(p.media_ssrc),
                    _ => None,
                }));
                continue;
            }
            let n = self.rx.unprotect_rtp(&mut buf[..n]).expect("authentic");
            let p = RtpPacket::parse(&buf[..n]).unwrap();
            rtp.push((p.sequence_number(), p.payload().to_vec()));
        }
        (rtp, plis)
    }
}

fn body(seq: u16) -> Vec<u8> {
    let mut b = seq.to_be_bytes().to_vec();
    b.extend((0..300u16).map(|k| (k ^ seq) as u8));
    b
}

/// Carries A's link packets to B through the frame codec, dropping those `lose` picks,
/// until `at_least` were carried and the link is quiet. Returns how many it carried.
fn carry(
    links: &Receiver<LinkPacket>,
    b: &MediaNode,
    mut lose: impl FnMut(u16) -> bool,
    at_least: usize,
) -> usize {
    let mut carried = 0;
    let mut wire = [0u8; MAX_FRAME];
    let wait = |carried| match carried >= at_least {
        true => Duration::from_millis(20),
        false => Duration::from_secs(5),
    };
    while let Ok(p) = links.recv_timeout(wait(carried)) {
        assert_eq!(
            (p.node, p.track, p.layer, p.keyframe),
            (NODE_B, TRACK, 0, true)
        );
        let n = link::encode_into(&link::LinkFrame::from(&p), &mut wire).unwrap();
        let f = link::decode(&wire[..n]).unwrap();
        let seq = RtpPacket::parse(f.rtp).unwrap().sequence_number();
        if lose(seq) {
            continue;
        }
        let packet = Bytes::copy_from_slice(f.rtp);
        b.link_media(f.track, f.layer, f.keyframe, packet).unwrap();
        carried += 1;
    }
    carried
}

impl Client {
    /// At least `n` RTP packets (seq, payload), and what else came with them.
    fn recv_n(&mut self, n: usize) -> Vec<(u16, Vec<u8>)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while got.len() < n && Instant::now() < deadline {
            got.extend(self.drain().0);
        }
        got.extend(self.drain().0);
        got
    }
}

#[test]
fn a_track_crosses_a_link_to_subscribers_on_every_worker() {
    let driver = DriverConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        workers: WORKERS,
        kind: DriverKind::Mmsg,
        ..DriverConfig::default()
    };
    let mut a = MediaNode::start(driver.clone(), RouterConfig::default()).unwrap();
    let (up_tx, upstream) = crossbeam_channel::unbounded();
    let router_b = RouterConfig {
        upstream: Some(up_tx),
        ..RouterConfig::default()
    };
    let mut b = MediaNode::start(driver, router_b).unwrap();
    let links = a.workers().links();

    let mut publisher = Client::new(1, 0, &mut a);
    let track = TrackConfig {
        id: TRACK,
        publisher: 1,
        home: 0,
        codec: Codec::Opus,
        clock_rate: 48_000,
        payload_type: 111,
        rtx_payload_type: None,
        layers: vec![LayerConfig {
            ssrc: Some(SSRC),
            ..LayerConfig::default()
        }],
    };
    a.add_track(track.clone()).unwrap();
    a.link_subscribe(TRACK, NODE_B, 0).unwrap();

    b.add_remote_track(track.clone()).unwrap();
    assert_eq!(b.remote_home(TRACK), 1);
    assert!(matches!(
        b.add_remote_track(track),
        Err(NodeError::TrackExists(TRACK))
    ));
    let mut subs: Vec<Client> = (0..WORKERS)
        .map(|w| Client::new(10 + w as u64, w, &mut b))
        .collect();
    for (i, s) in subs.iter().enumerate() {
        b.subscribe(SubscribeConfig {
            session: s.id,
            track: TRACK,
            ssrc: 0x5000 + i as u32,
            payload_type: 100,
            rtx: None,
            initial_seq: 1000 * i as u16,
            initial_ts: 0,
            layer: 0,
            pinned: true,
            ext_remap: None,
        })
        .unwrap();
    }

    // Commands and media travel separate paths: send until both subscribers see media.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seq = 0u16;
    let mut last: Vec<Option<u16>> = vec![None; subs.len()];
    while last.iter().any(Option::is_none) {
        assert!(Instant::now() < deadline, "subscriptions never became live");
        publisher.send_rtp(seq);
        seq += 1;
        carry(&links, &b, |_| false, 0);
        for (i, s) in subs.iter_mut().enumerate() {
            if let Some(&(out, _)) = s.drain().0.last() {
                last[i] = Some(out);
            }
        }
    }

    // B's subscriptions asked for a keyframe; only A's publisher can make one.
    let asked: Vec<_> = upstream.try_iter().collect();
    assert!(
        asked.contains(&UpstreamEvent::KeyframeRequest {
            track: TRACK,
            layer: 0
        }),
        "{asked:?}"
    );
    publisher.drain();
    a.request_keyframe(TRACK, 0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !publisher.drain().1.contains(&SSRC) {
        assert!(Instant::now() < deadline, "no PLI reached the publisher");
    }

    // The measured run; the link loses one packet, late enough that its repair is still
    // within the subscribers' SRTP replay window.
    const N: u16 = 300;
    let (start, lost) = (seq, seq + N - 30);
    let mut carried = 0;
    // Read as it goes: the whole run would overflow a default socket buffer.
    let mut got: Vec<Vec<(u16, Vec<u8>)>> = vec![Vec::new(); subs.len()];
    for k in 0..N {
        publisher.send_rtp(start + k);
        if k % 20 == 19 {
            carried += carry(&links, &b, |s| s == lost, 0);
            for (i, s) in subs.iter_mut().enumerate() {
                got[i].extend(s.drain().0);
            }
        }
    }
    let rest = usize::from(N) - 1 - carried;
    carried += carry(&links, &b, |s| s == lost, rest);
    assert_eq!(carried, usize::from(N) - 1);
    let mut gaps = Vec::new();
    for (i, s) in subs.iter_mut().enumerate() {
        let want = usize::from(N) - 1 - got[i].len();
        got[i].extend(s.recv_n(want));
        assert_eq!(got[i].len(), usize::from(N) - 1, "sub {i}");
        let mut prev = last[i].unwrap();
        for (out, payload) in got[i].drain(..) {
            let publisher_seq = u16::from_be_bytes([payload[0], payload[1]]);
            assert_eq!(payload, body(publisher_seq), "sub {i}: payload");
            // Output numbering follows the publisher's, the link's gap included.
            if publisher_seq == lost + 1 {
                assert_eq!(out, prev.wrapping_add(2), "sub {i}");
                gaps.push(prev.wrapping_add(1));
            } else {
                assert_eq!(out, prev.wrapping_add(1), "sub {i}");
            }
            prev = out;
        }
    }
    assert_eq!(gaps.len(), subs.len());

    // The subscriber on the worker that is not the track's home asks for it; B's cache
    // never had it, so B asks A, which resends it from its own.
    subs[0].send_nack(0x5000, gaps[0]);
    let ev = upstream
        .recv_timeout(Duration::from_secs(5))
        .expect("a NACK upstream");
    assert_eq!(
        ev,
        UpstreamEvent::NackUpstream {
            track: TRACK,
            layer: 0,
            seqs: vec![lost],
        }
    );
    a.link_nack(TRACK, NODE_B, 0, &[lost]).unwrap();
    assert_eq!(carry(&links, &b, |_| false, 1), 1);
    for (i, s) in subs.iter_mut().enumerate() {
        let got = s.recv_n(1);
        assert_eq!(got, [(gaps[i], body(lost))], "sub {i}: the repair");
    }

    let (routers_a, routers_b) = (a.shutdown().unwrap(), b.shutdown().unwrap());
    let a0 = routers_a[0].stats();
    assert_eq!((a0.link_retransmits, a0.link_nack_miss), (1, 0));
    assert!(a0.link_out >= u64::from(N));
    let b1 = routers_b[1].stats();
    // All A sent, less the lost packet, plus its repair.
    assert_eq!(b1.link_in, a0.link_out);
    assert_eq!(b1.drop_link_unknown_track, 0);
    assert_eq!(routers_b[0].stats().nack_upstream, 1);
}
