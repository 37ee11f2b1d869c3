use super::vp8::{Vp8Descriptor, is_keyframe};
use super::*;
use crate::rtp::RtpPacket;
use crate::srtp::{Profile, SrtpContext};

fn pkt(ssrc: u32, seq: u16, ts: u32) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(b"payload");
    p
}

/// A VP8 packet with a 15-bit picture ID and TL0PICIDX; `key` marks a key frame start.
fn vp8_pkt(ssrc: u32, seq: u16, ts: u32, pid: u16, tl0: u8, key: bool) -> Vec<u8> {
    let mut p = pkt(ssrc, seq, ts);
    p.truncate(12);
    p.extend_from_slice(&[0x90, 0xc0, 0x80 | (pid >> 8) as u8, pid as u8, tl0]);
    p.push(if key { 0x00 } else { 0x01 });
    p.extend_from_slice(b"frame");
    p
}

fn run(rw: &mut RtpRewriter, now: u64, mut p: Vec<u8>) -> (Rewrite, Vec<u8>) {
    let r = rw.rewrite(now, &mut p).unwrap();
    (r, p)
}

fn out_seq(p: &[u8]) -> u16 {
    RtpPacket::parse(p).unwrap().sequence_number()
}

#[test]
fn layer_switch_keeps_sequence_contiguous_and_time_monotonic() {
    let mut rw = RtpRewriter::new(0xabc, 90_000, 1000, 5_000, false);
    let mut seqs = vec![];
    let mut tss = vec![];
    for i in 0..10u16 {
        let (r, p) = run(
            &mut rw,
            u64::from(i) * 33_000,
            pkt(1, 60_000 + i, 900_000 + u32::from(i) * 3000),
        );
        assert!(matches!(r, Rewrite::Forward { .. }));
        assert_eq!(RtpPacket::parse(&p).unwrap().ssrc(), 0xabc);
        seqs.push(out_seq(&p));
        tss.push(RtpPacket::parse(&p).unwrap().timestamp());
    }
    // Switch to a layer whose numbers and clock are unrelated (and behind).
    for i in 0..10u16 {
        let (_, p) = run(
            &mut rw,
            330_000 + u64::from(i) * 33_000,
            pkt(2, 7 + i, 10 + u32::from(i) * 3000),
        );
        seqs.push(out_seq(&p));
        tss.push(RtpPacket::parse(&p).unwrap().timestamp());
    }
    assert_eq!(
        seqs[0], 1000,
        "first output uses the subscriber's initial seq"
    );
    assert_eq!(tss[0], 5_000);
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0].wrapping_add(1));
    }
    for w in tss.windows(2) {
        assert!(
            w[1].wrapping_sub(w[0]) as i32 > 0,
            "timestamps move forward: {w:?}"
        );
    }
    // The switch advanced the clock by the wall time since the last packet (33 ms).
    assert_eq!(tss[10] - tss[9], 2970);
}

#[test]
fn restart_and_big_jumps_are_rebased_small_gaps_kept() {
    let mut rw = RtpRewriter::new(9, 48_000, 0, 0, false);
    let (_, a) = run(&mut rw, 0, pkt(5, 40_000, 100));
    let (_, b) = run(&mut rw, 20_000, pkt(5, 40_003, 1060));
    assert_eq!(out_seq(&b), out_seq(&a) + 3, "loss gap preserved for NACK");
    // Publisher restarted: same SSRC, sequence reset.
    let (_, c) = run(&mut rw, 40_000, pkt(5, 3, 7));
    assert_eq!(out_seq(&c), out_seq(&b) + 1);
    // A forward jump beyond MAX_SEQ_JUMP too.
    let (_, d) = run(&mut rw, 60_000, pkt(5, 3 + MAX_SEQ_JUMP + 1, 2000));
    assert_eq!(out_seq(&d), out_seq(&c) + 1);
}

/// A restart with the same SSRC whose new sequence number lands just behind the old
/// ones is recognised by its timestamp, so it is not numbered over packets already sent.
#[test]
fn restart_landing_behind_is_caught_by_the_timestamp() {
    let mut rw = RtpRewriter::new(9, 90_000, 0, 0, false);
    run(&mut rw, 0, pkt(5, 5000, 1_000_000));
    let (_, b) = run(&mut rw, 33_000, pkt(5, 5001, 1_003_000));
    let (r, c) = run(&mut rw, 66_000, pkt(5, 4990, 3_000_000_000));
    assert!(matches!(r, Rewrite::Forward { .. }));
    assert_eq!(out_seq(&c), out_seq(&b) + 1);
    let (_, d) = run(&mut rw, 99_000, pkt(5, 4991, 3_000_003_000));
    assert_eq!(out_seq(&d), out_seq(&c) + 1);
    // Ordinary reordering (a frame behind) is not a restart: it fills its own hole.
    let (_, f) = run(&mut rw, 132_000, pkt(5, 4993, 3_000_009_000));
    let (_, e) = run(&mut rw, 133_000, pkt(5, 4992, 3_000_006_000));
    assert_eq!(out_seq(&f), out_seq(&d) + 2);
    assert_eq!(out_seq(&e), out_seq(&d) + 1);
}

#[test]
fn reordering_stale_packets_and_skip() {
    let mut rw = RtpRewriter::new(9, 90_000, 500, 0, false);
    run(&mut rw, 0, pkt(1, 10, 0));
    run(&mut rw, 0, pkt(1, 12, 0));
    let (r, p) = run(&mut rw, 0, pkt(1, 11, 0));
    assert_eq!(
        r,
        Rewrite::Forward {
            seq: 501,
            timestamp: 0
        }
    );
    assert_eq!(out_seq(&p), 501, "late packet fills its own hole");
    assert_eq!(rw.original(501), Some((1, 11)));
    assert_eq!(rw.original(503), None, "not yet sent");
    // Switch to layer 2; a late layer-1 packet is now a different source: rebased.
    run(&mut rw, 0, pkt(2, 100, 0));
    let (r, _) = run(&mut rw, 0, pkt(2, 99, 0));
    assert_eq!(r, Rewrite::DropStale, "before the switch point");
    // Skip the newest packet: the next one takes its number.
    rw.skip(2, 101);
    let (_, p) = run(&mut rw, 0, pkt(2, 102, 0));
    assert_eq!(out_seq(&p), 504);
    let (r, _) = run(&mut rw, 0, pkt(2, 101, 0));
    assert_eq!(r, Rewrite::DropStale);
}

/// Thousands of packets with switches, restarts and wraps, protected by the rewriter's
/// subscriber context: a receiver accepts every one, so its ROC estimate never breaks.
#[test]
fn receiver_rollover_survives_switches_and_restarts() {
    let key = [1u8; 16];
    let salt = [2u8; 12];
    let mut tx = SrtpContext::new(Profile::AeadAes128Gcm, &key, &salt).unwrap();
    let mut rx = SrtpContext::new(Profile::AeadAes128Gcm, &key, &salt).unwrap();
    let mut rw = RtpRewriter::new(0x5eed, 90_000, 65_000, 0, false);
    let mut state = 0x1234_5678u32;
    let mut src_seq = [0u16, 30_000, 65_000];
    let mut layer = 0usize;
    let mut last = None;
    for i in 0..200_000u32 {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        if state.is_multiple_of(500) {
            layer = (layer + 1) % 3;
        }
        if state.is_multiple_of(7919) {
            src_seq[layer] = src_seq[layer].wrapping_add(20_000); // publisher restart
        }
        src_seq[layer] = src_seq[layer].wrapping_add(1);
        let mut p = pkt(layer as u32 + 1, src_seq[layer], i * 3000);
        p.resize(p.len() + 16, 0);
        let plain_len = p.len() - 16;
        let Rewrite::Forward { seq, .. } = rw
            .rewrite(u64::from(i) * 1000, &mut p[..plain_len])
            .unwrap()
        else {
            panic!("in-order packet dropped")
        };
        if let Some(prev) = last {
            assert_eq!(seq, u16::wrapping_add(prev, 1));
        }
        last = Some(seq);
        let n = tx.protect_rtp(&mut p, plain_len).unwrap();
        rx.unprotect_rtp(&mut p[..n]).unwrap();
    }
    assert!(rx.roc(0x5eed).unwrap() >= 3);
}

#[test]
fn vp8_picture_id_and_tl0_continue_across_switch() {
    let mut rw = RtpRewriter::new(1, 90_000, 0, 0, true);
    let mut pids = vec![];
    let mut tl0s = vec![];
    for i in 0..5u16 {
        let (_, p) = run(
            &mut rw,
            0,
            vp8_pkt(10, i, 0, 32_760 + i, 200 + i as u8, i == 0),
        );
        let d = Vp8Descriptor::parse(RtpPacket::parse(&p).unwrap().payload()).unwrap();
        pids.push(d.picture_id.unwrap().2);
        tl0s.push(d.tl0_pic_idx.unwrap().1);
    }
    for i in 0..5u16 {
        let (_, p) = run(
            &mut rw,
            0,
            vp8_pkt(20, 900 + i, 0, 17 + i, 3 + i as u8, i == 0),
        );
        let d = Vp8Descriptor::parse(RtpPacket::parse(&p).unwrap().payload()).unwrap();
        pids.push(d.picture_id.unwrap().2);
        tl0s.push(d.tl0_pic_idx.unwrap().1);
    }
    for w in pids.windows(2) {
        assert_eq!(w[1], (w[0] + 1) % 32_768, "{pids:?}");
    }
    for w in tl0s.windows(2) {
        assert_eq!(w[1], w[0].wrapping_add(1), "{tl0s:?}");
    }
}

#[test]
fn vp8_keyframe_detection_and_truncation() {
    let key = vp8_pkt(1, 1, 0, 5, 0, true);
    let delta = vp8_pkt(1, 1, 0, 5, 0, false);
    assert!(is_keyframe(RtpPacket::parse(&key).unwrap().payload()));
    assert!(!is_keyframe(RtpPacket::parse(&delta).unwrap().payload()));
    for cut in 0..5 {
        assert!(Vp8Descriptor::parse(&[0x90, 0xc0, 0x80, 0x01, 0x02][..cut]).is_err());
    }
    let mut rw = RtpRewriter::new(1, 90_000, 0, 0, true);
    let mut bad = pkt(1, 1, 0);
    bad.truncate(12);
    bad.extend_from_slice(&[0x90, 0x80]);
    assert!(matches!(rw.rewrite(0, &mut bad), Err(RewriteError::Vp8(_))));
}
