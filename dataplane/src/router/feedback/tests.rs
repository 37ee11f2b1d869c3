//! Feedback end to end: real SRTP both ways, virtual time, every report decrypted and
//! parsed back with the crate's own RTCP parser.

use super::{FeedbackConfig, ntp_mid32, ntp_time};
use crate::demux::{PacketKind, classify};
use crate::engine::{Micros, Output};
use crate::router::tests::harness::*;
use crate::router::{Router, RouterCommand, RouterConfig, SubscribeConfig};
use crate::rtcp::{ReportBlock, RtcpPacket, RtcpWriter, TwccStatus, parse_compound};
use crate::rtp::RtpPacket;
use std::net::SocketAddr;

const TWCC_ID: u8 = 5;

fn config() -> RouterConfig {
    RouterConfig {
        feedback: FeedbackConfig {
            ntp_offset: 0,
            ..FeedbackConfig::default()
        },
        ..RouterConfig::default()
    }
}

fn harness() -> Harness {
    Harness {
        router: Router::new(0, config()),
        out: Output::default(),
        now: 1_000_000,
    }
}

/// Every queued datagram, oldest first; the egress is left empty.
fn drain(h: &mut Harness) -> Vec<(SocketAddr, Vec<u8>)> {
    let all = h.out.egress.iter().map(|(a, b)| (a, b.to_vec())).collect();
    h.out.clear();
    all
}

/// Decrypted RTCP datagrams for `peer` in `datagrams`.
fn open_rtcp(peer: &mut Peer, datagrams: &[(SocketAddr, Vec<u8>)]) -> Vec<Vec<u8>> {
    datagrams
        .iter()
        .filter(|(to, d)| *to == peer.addr && classify(d) == PacketKind::Rtcp)
        .map(|(_, d)| {
            let mut d = d.clone();
            let n = peer
                .rx
                .unprotect_rtcp(&mut d)
                .expect("SRTCP from the router");
            d.truncate(n);
            d
        })
        .collect()
}

/// An SRTP packet from `peer` with one-byte header extensions.
fn rtp_with_ext(
    peer: &mut Peer,
    ssrc: u32,
    seq: u16,
    ts: u32,
    ext: &[(u8, &[u8])],
    payload: &[u8],
) -> Vec<u8> {
    let mut body = Vec::new();
    for (id, data) in ext {
        body.push((id << 4) | (data.len() as u8 - 1));
        body.extend_from_slice(data);
    }
    while body.len() % 4 != 0 {
        body.push(0);
    }
    let mut p = vec![0x90, VIDEO_PT];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xbe, 0xde]);
    p.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
    p.extend_from_slice(&body);
    p.extend_from_slice(payload);
    let len = p.len();
    p.resize(len + 64, 0);
    let n = peer.tx.protect_rtp(&mut p, len).unwrap();
    p.truncate(n);
    p
}

/// One-layer setup: publisher 1, subscriber 2 pinned to layer 0 of track 9.
fn one_layer(h: &mut Harness, twcc: bool) -> (Peer, Peer) {
    let (mut publisher, mut sub) = (Peer::new(1, 5001), Peer::new(2, 5002));
    if twcc {
        publisher.config.extensions.transport_cc = TWCC_ID;
        sub.config.extensions.transport_cc = TWCC_ID;
    }
    h.add(&publisher);
    h.add(&sub);
    h.command(RouterCommand::AddTrack(Box::new(video_track(
        9,
        1,
        &[1000],
    ))));
    h.command(RouterCommand::Subscribe(subscribe(2, 9, 0xABC0, 0)));
    drain(h);
    (publisher, sub)
}

#[test]
fn receiver_report_carries_loss_jitter_and_the_last_sr() {
    let mut h = harness();
    let (mut publisher, _sub) = one_layer(&mut h, false);
    // Seq 10..=59 every 20 ms, odd ones 1 ms late; 20, 21 and 30 lost.
    let t0 = h.now;
    let mut jitter = 0u32;
    let mut prev_transit: Option<i64> = None;
    for i in 10..60u32 {
        let at = t0 + u64::from(i - 10) * 20_000 + u64::from(i % 2) * 1_000;
        if [20, 21, 30].contains(&i) {
            continue;
        }
        h.now = at;
        let ts = i * 1800;
        let pkt = publisher.rtp(VIDEO_PT, 1000, i as u16, ts, &vp8(i as u16, true, i == 10));
        h.send(&publisher, pkt);
        // RFC 3550 A.8 in integer form, with arrival in 90 kHz units.
        let transit = (at * 90 / 1000) as i64 - i64::from(ts);
        if let Some(p) = prev_transit {
            let d = (transit - p).unsigned_abs() as u32;
            jitter = jitter + d - ((jitter + 8) >> 4);
        }
        prev_transit = Some(transit);
    }
    // An SR on the layer at 1.5 s.
    let sr_ntp = 0x0000_1234_8000_0000u64 | 0xabcd;
    let me = publisher.config.rtcp_ssrc;
    h.now = 1_500_000;
    let sr = publisher.rtcp(|w| w.sender_report(1000, sr_ntp, 0, 47, 4700, &[]).unwrap());
    h.send(&publisher, sr);
    drain(&mut h);
    let rtcp_before = h.router.stats().rtcp_out;

    // The session was added at 1 s: its first report is due at 2 s.
    h.now = 1_950_000;
    h.advance(0);
    assert!(open_rtcp(&mut publisher, &drain(&mut h)).is_empty());
    h.advance(50_000);
    let reports = open_rtcp(&mut publisher, &drain(&mut h));
    assert_eq!(reports.len(), 1, "one compound report");
    let packets: Vec<_> = parse_compound(&reports[0]).map(Result::unwrap).collect();
    assert_eq!(packets.len(), 3, "RR, SDES, REMB: {packets:?}");
    let RtcpPacket::ReceiverReport(rr) = packets[0] else {
        panic!("{:?}", packets[0]);
    };
    assert_eq!(rr.ssrc, me);
    let blocks: Vec<ReportBlock> = rr.blocks.iter().collect();
    assert_eq!(
        blocks,
        vec![ReportBlock {
            ssrc: 1000,
            fraction_lost: (3 * 256 / 50) as u8,
            cumulative_lost: 3,
            extended_highest_seq: 59,
            jitter: jitter >> 4,
            last_sr: ntp_mid32(sr_ntp),
            // 0.5 s in 1/65536 s.
            delay_since_last_sr: 32_768,
        }]
    );
    assert!(
        jitter >> 4 > 60,
        "a 1 ms alternation is ~90 ticks: {}",
        jitter >> 4
    );
    let RtcpPacket::Sdes(sdes) = packets[1] else {
        panic!()
    };
    let chunk = sdes.chunks().next().unwrap();
    assert_eq!((chunk.ssrc, chunk.cname()), (me, Some(&b"sluice"[..])));
    let RtcpPacket::Remb(remb) = packets[2] else {
        panic!()
    };
    assert_eq!(remb.ssrcs().collect::<Vec<_>>(), vec![1000]);
    assert!(remb.bitrate <= 10_000_000 && remb.bitrate > 9_900_000);
    let s = h.router.stats();
    // The RR, and the subscriber's SR.
    assert_eq!(
        (
            s.rtcp_out - rtcp_before,
            s.receiver_reports,
            s.sender_reports
        ),
        (2, 1, 1)
    );

    // A second second with no loss: fraction 0, cumulative unchanged.
    for i in 60..110u32 {
        h.now += 20_000;
        let pkt = publisher.rtp(
            VIDEO_PT,
            1000,
            i as u16,
            i * 1800,
            &vp8(i as u16, true, false),
        );
        h.send(&publisher, pkt);
    }
    h.now = 3_000_000 - 1;
    h.advance(1);
    let reports = open_rtcp(&mut publisher, &drain(&mut h));
    let Ok(RtcpPacket::ReceiverReport(rr)) = parse_compound(&reports[0]).next().unwrap() else {
        panic!()
    };
    let b = rr.blocks.iter().next().unwrap();
    assert_eq!(
        (b.fraction_lost, b.cumulative_lost, b.extended_highest_seq),
        (0, 3, 109)
    );
}

#[test]
fn twcc_feedback_reports_arrivals_and_losses_to_the_publisher() {
    let mut h = harness();
    let (mut publisher, _sub) = one_layer(&mut h, true);
    let t0 = 1_010_000;
    let mut arrivals = Vec::new();
    // Transport numbers 100..=120 every 2 ms, 105 and 110 lost; 115 arrives 3 ms late,
    // after 116.
    let mut sends: Vec<(u16, Micros)> = (100..=120u16)
        .filter(|s| *s != 105 && *s != 110)
        .map(|s| {
            let late = if s == 115 { 3_000 } else { 0 };
            (s, t0 + u64::from(s - 100) * 2_000 + late)
        })
        .collect();
    sends.sort_by_key(|&(_, at)| at);
    for (i, &(tseq, at)) in sends.iter().enumerate() {
        h.now = at;
        let pkt = rtp_with_ext(
            &mut publisher,
            1000,
            i as u16,
            0,
            &[(TWCC_ID, &tseq.to_be_bytes())],
            &vp8(i as u16, true, i == 0),
        );
        h.send(&publisher, pkt);
        arrivals.push((tseq, at));
    }
    drain(&mut h);
    h.now = 1_100_000;
    h.advance(0);
    let fbs: Vec<_> = open_rtcp(&mut publisher, &drain(&mut h));
    assert_eq!(fbs.len(), 1);
    let Ok(RtcpPacket::TransportCc(fb)) = RtcpPacket::parse(&fbs[0]) else {
        panic!()
    };
    assert_eq!(fb.sender_ssrc, publisher.config.rtcp_ssrc);
    assert_eq!(fb.media_ssrc, 1000);
    assert_eq!(
        (fb.base_seq, fb.status_count, fb.feedback_count),
        (100, 21, 0)
    );
    // Rebuild each arrival from the reference time and the deltas: exact to the tick.
    let statuses: Vec<TwccStatus> = fb.statuses().collect();
    let mut t = i64::from(fb.reference_time) * 64_000;
    for st in &statuses {
        let want = arrivals
            .iter()
            .find(|(s, _)| *s == st.seq)
            .map(|&(_, at)| at);
        match (st.delta, want) {
            (Some(d), Some(at)) => {
                t += i64::from(d) * 250;
                assert_eq!(t, (at / 250 * 250) as i64, "seq {}", st.seq);
            }
            (None, None) => {}
            other => panic!("seq {}: {other:?}", st.seq),
        }
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| s.delta.is_none())
            .map(|s| s.seq)
            .collect::<Vec<_>>(),
        vec![105, 110]
    );
    assert!(statuses[15].delta.unwrap() < 0 || statuses[16].delta.unwrap() < 0);
    // Nothing new, no feedback; then the next range, counted up.
    h.advance(50_000);
    assert!(open_rtcp(&mut publisher, &drain(&mut h)).is_empty());
    for tseq in 121..124u16 {
        h.now += 1_000;
        let pkt = rtp_with_ext(
            &mut publisher,
            1000,
            tseq,
            0,
            &[(TWCC_ID, &tseq.to_be_bytes())],
            &vp8(tseq, true, false),
        );
        h.send(&publisher, pkt);
    }
    h.advance(50_000);
    let fbs = open_rtcp(&mut publisher, &drain(&mut h));
    let Ok(RtcpPacket::TransportCc(fb)) = RtcpPacket::parse(&fbs[0]) else {
        panic!()
    };
    assert_eq!(
        (fb.base_seq, fb.status_count, fb.feedback_count),
        (121, 3, 1)
    );
    assert_eq!(h.router.stats().twcc_feedback, 2);
}

#[test]
fn sender_reports_extrapolate_the_timestamp_and_count_what_was_sent() {
    let mut h = harness();
    let (mut publisher, mut sub) = one_layer(&mut h, false);
    // Ten frames of one 8-byte-payload packet, 33 ms apart, timestamps 3000 apart.
    for i in 0..10u16 {
        h.now = 1_100_000 + u64::from(i) * 33_000;
        let pkt = publisher.rtp(
            VIDEO_PT,
            1000,
            i,
            3000 * u32::from(i),
            &vp8(i, true, i == 0),
        );
        h.send(&publisher, pkt);
    }
    let last_sent = h.now;
    assert_eq!(
        drain(&mut h)
            .iter()
            .filter(|(to, d)| *to == sub.addr && classify(d) == PacketKind::Rtp)
            .count(),
        10
    );
    h.now = 2_000_000;
    h.advance(0);
    let reports = open_rtcp(&mut sub, &drain(&mut h));
    assert_eq!(reports.len(), 1);
    let Ok(RtcpPacket::SenderReport(sr)) = RtcpPacket::parse(&reports[0]) else {
        panic!()
    };
    assert_eq!(sr.ssrc, 0xABC0);
    assert_eq!(sr.ntp_time, ntp_time(2_000_000, 0));
    assert_eq!(sr.ntp_time >> 32, 2, "2 s after the (test) epoch");
    // The subscriber's timeline starts at 7; the last frame is 27000 later, and the
    // report 0.603 s after it went out.
    let elapsed_ticks = (2_000_000 - last_sent) * 90_000 / 1_000_000;
    assert_eq!(sr.rtp_time, 7 + 27_000 + elapsed_ticks as u32);
    assert_eq!((sr.packet_count, sr.octet_count), (10, 80));
    assert!(sr.blocks.is_empty());
    assert_eq!(h.router.stats().sender_reports, 1);

    // The subscriber echoes it 0.3 s later, having held it 0.1 s: RTT 0.2 s.
    let me = sub.config.rtcp_ssrc;
    h.now = 2_300_000;
    let block = ReportBlock {
        ssrc: 0xABC0,
        extended_highest_seq: 40_009,
        last_sr: ntp_mid32(sr.ntp_time),
        delay_since_last_sr: 6_554,
        ..ReportBlock::default()
    };
    let rr = sub.rtcp(|w| w.receiver_report(me, &[block]).unwrap());
    h.send(&sub, rr);
    let rtt = h.router.rtt(2).unwrap();
    assert!(rtt.abs_diff(200_000) < 100, "{rtt}");
}

#[test]
fn subscriber_packets_get_our_transport_numbers_and_its_feedback_moves_the_estimate() {
    let mut h = harness();
    let (mut publisher, mut sub) = one_layer(&mut h, true);
    // The publisher's own numbers start at 5000 and skip some: the subscriber's must not.
    let mut sent_at = Vec::new();
    for i in 0..100u16 {
        h.now = 1_100_000 + u64::from(i) * 10_000;
        let tseq = 5000 + i * 3;
        let pkt = rtp_with_ext(
            &mut publisher,
            1000,
            i,
            900 * u32::from(i),
            &[(TWCC_ID, &tseq.to_be_bytes())],
            &[vp8(i, true, i == 0), vec![0; 990]].concat(),
        );
        h.send(&publisher, pkt);
        for (to, mut d) in drain(&mut h) {
            if to != sub.addr || classify(&d) != PacketKind::Rtp {
                continue;
            }
            let n = sub.rx.unprotect_rtp(&mut d).unwrap();
            let p = RtpPacket::parse(&d[..n]).unwrap();
            let ids = crate::rtp::ExtensionIds {
                transport_cc: TWCC_ID,
                ..Default::default()
            };
            let tseq = p.known_extensions(&ids).unwrap().transport_cc.unwrap();
            sent_at.push((tseq, h.now));
        }
    }
    assert_eq!(
        sent_at.iter().map(|&(s, _)| s).collect::<Vec<_>>(),
        (0..100).collect::<Vec<u16>>()
    );
    assert_eq!(h.router.estimate(2), None, "no feedback yet");
    // Feedback: every other packet lost, the rest arriving 20 ms after they left.
    let me = sub.config.rtcp_ssrc;
    for chunk in sent_at.chunks(50) {
        let first_at = chunk
            .iter()
            .step_by(2)
            .map(|&(_, at)| at + 20_000)
            .next()
            .unwrap();
        let reference = first_at / 64_000;
        let mut prev = reference * 256;
        let deltas: Vec<Option<i32>> = chunk
            .iter()
            .enumerate()
            .map(|(i, &(_, at))| {
                (i % 2 == 0).then(|| {
                    let t = (at + 20_000) / 250;
                    let d = (t - prev) as i32;
                    prev = t;
                    d
                })
            })
            .collect();
        let fb = sub.rtcp(|w| {
            w.transport_cc(me, 0xABC0, chunk[0].0, reference as i32, 0, &deltas)
                .unwrap()
        });
        h.now += 500_000;
        h.send(&sub, fb);
    }
    // 50% loss: from the delivered rate (about half the ~0.8 Mbit/s sent), times 0.75.
    let est = h.router.estimate(2).unwrap();
    assert!((200_000..400_000).contains(&est), "{est}");
}

/// A publisher sending three simulcast layers at distinct bitrates, and one adaptive
/// subscriber, driven 10 ms at a time. Every packet the subscriber gets is decrypted.
struct Simulcast {
    h: Harness,
    publisher: Peer,
    sub: Peer,
    frame: u32,
    /// (when, output seq, layer, keyframe) of every media packet the subscriber got.
    got: Vec<(Micros, u16, u8, bool)>,
    reports_to_sub: usize,
}

const LAYER_SSRCS: [u32; 3] = [1000, 2000, 3000];
/// Payload filler per layer: about 90, 330 and 890 kbit/s at 100 packets/s.
const LAYER_FILL: [usize; 3] = [92, 392, 1092];
/// Keyframe every 50 frames, staggered per layer.
const KEY_PHASE: [u32; 3] = [0, 17, 34];

impl Simulcast {
    fn new(start_layer: u8) -> Self {
        let mut h = harness();
        let (publisher, sub) = (Peer::new(1, 5001), Peer::new(2, 5002));
        h.add(&publisher);
        h.add(&sub);
        h.command(RouterCommand::AddTrack(Box::new(video_track(
            9,
            1,
            &LAYER_SSRCS,
        ))));
        h.command(RouterCommand::Subscribe(SubscribeConfig {
            pinned: false,
            ..subscribe(2, 9, 0xABC0, start_layer)
        }));
        Self {
            h,
            publisher,
            sub,
            frame: 0,
            got: Vec::new(),
            reports_to_sub: 0,
        }
    }

    /// One frame on every layer, then 10 ms of time with the router's timers.
    fn step(&mut self) {
        let f = self.frame;
        for layer in 0..3 {
            let key = f % 50 == KEY_PHASE[layer];
            let mut payload = vp8(f as u16, true, key);
            payload.extend(std::iter::repeat_n(layer as u8, LAYER_FILL[layer]));
            let pkt = self.publisher.rtp(
                VIDEO_PT,
                LAYER_SSRCS[layer],
                (f + 1000 * layer as u32) as u16,
                f * 900,
                &payload,
            );
            self.h.send(&self.publisher, pkt);
        }
        self.frame += 1;
        self.h.advance(10_000);
        for (to, mut d) in drain(&mut self.h) {
            if to != self.sub.addr {
                continue;
            }
            if classify(&d) == PacketKind::Rtcp {
                self.reports_to_sub += 1;
                continue;
            }
            let n = self.sub.rx.unprotect_rtp(&mut d).expect("subscriber keys");
            let p = RtpPacket::parse(&d[..n]).unwrap();
            assert_eq!(p.ssrc(), 0xABC0);
            let payload = p.payload();
            let keyframe = payload[0] & 0x10 != 0 && payload[4] & 1 == 0;
            self.got
                .push((self.h.now, p.sequence_number(), payload[8], keyframe));
        }
    }

    fn feedback(&mut self, f: impl FnOnce(&mut RtcpWriter, u32)) {
        let me = self.sub.config.rtcp_ssrc;
        let pkt = self.sub.rtcp(|w| f(w, me));
        self.h.send(&self.sub, pkt);
    }

    /// The forwarded layer over time: (when it started, layer), and checks that the
    /// numbering is contiguous and that every switch landed on a keyframe.
    fn switches(&self) -> Vec<(Micros, u8)> {
        assert!(!self.got.is_empty());
        for w in self.got.windows(2) {
            assert_eq!(
                w[1].1,
                w[0].1.wrapping_add(1),
                "contiguous output numbering"
            );
        }
        assert_eq!(self.got[0].1, 40_000);
        let mut out: Vec<(Micros, u8)> = Vec::new();
        for &(at, _, layer, key) in &self.got {
            if out.last().is_none_or(|&(_, l)| l != layer) {
                assert!(key, "switch to layer {layer} at {at} on a keyframe");
                out.push((at, layer));
            }
        }
        out
    }
}

#[test]
fn remb_drop_moves_the_subscriber_down_a_layer_and_back_up_when_it_recovers() {
    let mut s = Simulcast::new(0);
    let start = s.h.now;
    let mut layers_seen = Vec::new();
    for step in 0..2000u64 {
        let t = step * 10_000;
        // REMB every 500 ms: plenty, then 600 kbit/s from 6 s, plenty again from 12 s.
        if step % 50 == 0 {
            let bitrate = if (6_000_000..12_000_000).contains(&t) {
                600_000
            } else {
                3_000_000
            };
            s.feedback(|w, me| w.remb(me, bitrate, &[0xABC0]).unwrap());
        }
        s.step();
        layers_seen.push(s.h.router.subscription_layers(2, 9).unwrap());
    }
    let switches: Vec<(Micros, u8)> = s
        .switches()
        .into_iter()
        .map(|(at, l)| (at - start, l))
        .collect();
    assert_eq!(
        switches.iter().map(|&(_, l)| l).collect::<Vec<_>>(),
        vec![0, 2, 1, 2],
        "{switches:?}"
    );
    let hold = FeedbackConfig::default().layer_up_hold;
    // Up only after the estimate held for the hold time (and then at a keyframe, which
    // comes every 0.5 s or on request).
    assert!(
        switches[1].0 >= hold && switches[1].0 < hold + 700_000,
        "{switches:?}"
    );
    // Down promptly: the first layer-1 keyframe after the drop at 6 s.
    assert!(
        (6_000_000..6_600_000).contains(&switches[2].0),
        "{switches:?}"
    );
    // Back up once the recovered estimate held.
    assert!(switches[3].0 >= 12_000_000 + hold, "{switches:?}");
    assert!(switches[3].0 < 12_000_000 + hold + 700_000, "{switches:?}");
    assert_eq!(s.h.router.subscription_layers(2, 9), Some((2, 2)));
    let stats = s.h.router.stats();
    assert_eq!(stats.target_changes, 3);
    assert_eq!(stats.layer_switches, 4);
    // The target never moved more than the three times, and never to a dead layer.
    let mut targets: Vec<u8> = layers_seen.iter().map(|&(_, t)| t).collect();
    targets.dedup();
    assert_eq!(targets, vec![0, 2, 1, 2]);
    // About one SR a second reached the subscriber.
    assert!(
        (19..=21).contains(&s.reports_to_sub),
        "{}",
        s.reports_to_sub
    );
}

#[test]
fn reported_loss_moves_the_subscriber_down_a_layer_and_back_up_when_it_stops() {
    let mut s = Simulcast::new(2);
    let start = s.h.now;
    for step in 0..1600u64 {
        let t = step * 10_000;
        // A receiver report every second; 25% loss in the one at 5 s.
        if step % 100 == 50 {
            let highest = 40_000 + s.got.len() as u32;
            let fraction_lost = if t == 5_500_000 { 64 } else { 0 };
            s.feedback(|w, me| {
                let block = ReportBlock {
                    ssrc: 0xABC0,
                    fraction_lost,
                    extended_highest_seq: highest,
                    ..ReportBlock::default()
                };
                w.receiver_report(me, &[block]).unwrap()
            });
        }
        s.step();
    }
    let switches: Vec<(Micros, u8)> = s
        .switches()
        .into_iter()
        .map(|(at, l)| (at - start, l))
        .collect();
    assert_eq!(
        switches.iter().map(|&(_, l)| l).collect::<Vec<_>>(),
        vec![2, 1, 2],
        "{switches:?}"
    );
    assert!(
        (5_500_000..6_100_000).contains(&switches[1].0),
        "{switches:?}"
    );
    assert!(switches[2].0 > 5_500_000 + FeedbackConfig::default().layer_up_hold);
    assert_eq!(s.h.router.subscription_layers(2, 9), Some((2, 2)));
    // Every block landed in the call-quality distributions: 15 clean, one at 25%.
    let q = s.h.router.stats().quality;
    assert_eq!(q.loss_ppm.count, 16);
    assert_eq!(q.loss_ppm.buckets[0], 15);
    assert_eq!(q.loss_ppm.buckets[7], 1, "{:?}", q.loss_ppm);
    assert_eq!(q.loss_ppm.sum, 250_000);
    assert_eq!((q.jitter_us.count, q.jitter_us.buckets[0]), (16, 16));
    // The blocks echo no SR, so no round trip was measured.
    assert_eq!(q.rtt_us.count, 0);
}
