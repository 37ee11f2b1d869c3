//! Differential tests: webrtc-srtp is the oracle. What we protect it unprotects (and its
//! output is byte-identical to ours), what it protects we unprotect, for both profiles,
//! RTP and RTCP, across sequence wrap-around and rollover-counter increments.

use sluice_dataplane::srtp::{Profile, SrtpContext, SrtpError};
use webrtc_srtp::context::Context as Oracle;
use webrtc_srtp::protection_profile::ProtectionProfile;

const PROFILES: [(Profile, ProtectionProfile); 2] = [
    (Profile::AeadAes128Gcm, ProtectionProfile::AeadAes128Gcm),
    (
        Profile::Aes128CmHmacSha1_80,
        ProtectionProfile::Aes128CmHmacSha1_80,
    ),
];

/// Deterministic xorshift so failures replay.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn keys(profile: Profile, seed: u8) -> (Vec<u8>, Vec<u8>) {
    let key = (0..16)
        .map(|i| seed.wrapping_mul(31).wrapping_add(i))
        .collect();
    let salt = (0..profile.master_salt_len() as u8)
        .map(|i| seed ^ (0xa0 + i))
        .collect();
    (key, salt)
}

/// An RTP packet with varied shape: CSRCs, a one-byte extension block, payload size.
fn rtp_packet(rng: &mut Rng, ssrc: u32, seq: u16, ts: u32) -> Vec<u8> {
    let csrcs = rng.below(3) as u8;
    let ext = rng.below(2) == 1;
    let mut p = vec![
        0x80 | csrcs | if ext { 0x10 } else { 0 },
        96 | if rng.below(8) == 0 { 0x80 } else { 0 },
    ];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    for c in 0..csrcs {
        p.extend_from_slice(&(0x1000 + u32::from(c)).to_be_bytes());
    }
    if ext {
        p.extend_from_slice(&[
            0xbe,
            0xde,
            0,
            2,
            0x10,
            b'0',
            0x41,
            (seq >> 8) as u8,
            seq as u8,
            0,
            0,
            0,
        ]);
    }
    let len = [1usize, 20, 160, 1000, 1200][rng.below(5) as usize];
    p.extend((0..len).map(|_| rng.next() as u8));
    p
}

fn rtcp_packet(rng: &mut Rng, ssrc: u32) -> Vec<u8> {
    // RR with one block, then a PLI: a realistic compound.
    let mut p = vec![0x81, 201, 0, 7];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..24).map(|_| rng.next() as u8));
    p.extend_from_slice(&[0x81, 206, 0, 2]);
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&0x5555_5555u32.to_be_bytes());
    p
}

fn protect(ctx: &mut SrtpContext, plain: &[u8], rtcp: bool) -> Result<Vec<u8>, SrtpError> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + 32, 0);
    let n = if rtcp {
        ctx.protect_rtcp(&mut buf, plain.len())?
    } else {
        ctx.protect_rtp(&mut buf, plain.len())?
    };
    buf.truncate(n);
    Ok(buf)
}

fn unprotect(ctx: &mut SrtpContext, srtp: &[u8], rtcp: bool) -> Result<Vec<u8>, SrtpError> {
    let mut buf = srtp.to_vec();
    let n = if rtcp {
        ctx.unprotect_rtcp(&mut buf)?
    } else {
        ctx.unprotect_rtp(&mut buf)?
    };
    buf.truncate(n);
    Ok(buf)
}

/// Sequence numbers starting just before a wrap, running through two rollovers, with
/// occasional adjacent swaps (reordering) that straddle the wraps.
fn sequence(start: u16, count: usize, rng: &mut Rng) -> Vec<(u16, u32)> {
    let mut v: Vec<(u16, u32)> = (0..count)
        .map(|i| (start.wrapping_add(i as u16), (i as u32).wrapping_mul(3000)))
        .collect();
    for i in (1..count).step_by(97) {
        if rng.below(2) == 0 {
            v.swap(i, i - 1);
        }
    }
    // Make sure the packets on either side of each wrap are reordered at least once.
    for i in 1..count {
        if v[i].0 == 0 {
            v.swap(i, i - 1);
        }
    }
    v
}

/// From the starting sequence numbers below (65_000 / 65_500) this crosses three wraps.
const RUN: usize = 140_000;

#[test]
fn rtp_we_protect_oracle_unprotects_byte_identical() {
    for (ours, theirs) in PROFILES {
        let mut rng = Rng(0x1234_5678);
        let (key, salt) = keys(ours, 1);
        let mut tx = SrtpContext::new(ours, &key, &salt).unwrap();
        let mut oracle_tx = Oracle::new(&key, &salt, theirs, None, None).unwrap();
        let mut oracle_rx = Oracle::new(&key, &salt, theirs, None, None).unwrap();
        let ssrc = 0xcafe_babe;
        for (seq, ts) in sequence(65_000, RUN, &mut rng) {
            let plain = rtp_packet(&mut rng, ssrc, seq, ts);
            let protected = protect(&mut tx, &plain, false).unwrap();
            let expected = oracle_tx.encrypt_rtp(&plain).unwrap();
            assert_eq!(
                protected,
                expected.as_ref(),
                "{ours:?} seq {seq}: ciphertext differs"
            );
            let back = oracle_rx.decrypt_rtp(&protected).unwrap();
            assert_eq!(back.as_ref(), plain.as_slice(), "{ours:?} seq {seq}");
        }
        assert_eq!(tx.roc(ssrc), Some(3), "{ours:?}: three rollovers");
    }
}

#[test]
fn rtp_oracle_protects_we_unprotect() {
    for (ours, theirs) in PROFILES {
        let mut rng = Rng(0x9abc_def0);
        let (key, salt) = keys(ours, 2);
        let mut oracle_tx = Oracle::new(&key, &salt, theirs, None, None).unwrap();
        let mut rx = SrtpContext::new(ours, &key, &salt).unwrap();
        let ssrc = 0x0102_0304;
        let mut accepted = 0;
        for (seq, ts) in sequence(65_500, RUN, &mut rng) {
            let plain = rtp_packet(&mut rng, ssrc, seq, ts);
            let protected = oracle_tx.encrypt_rtp(&plain).unwrap();
            let back = unprotect(&mut rx, &protected, false)
                .unwrap_or_else(|e| panic!("{ours:?} seq {seq}: {e}"));
            assert_eq!(back, plain);
            accepted += 1;
        }
        assert_eq!(accepted, RUN);
        assert_eq!(rx.roc(ssrc), Some(3));
    }
}

#[test]
fn rtcp_both_directions() {
    for (ours, theirs) in PROFILES {
        let mut rng = Rng(42);
        let (key, salt) = keys(ours, 3);
        let mut tx = SrtpContext::new(ours, &key, &salt).unwrap();
        let mut rx = SrtpContext::new(ours, &key, &salt).unwrap();
        let mut oracle_tx = Oracle::new(&key, &salt, theirs, None, None).unwrap();
        let mut oracle_rx = Oracle::new(&key, &salt, theirs, None, None).unwrap();
        for i in 0..3000u32 {
            let ssrc = 0x7700 + (i % 3);
            let plain = rtcp_packet(&mut rng, ssrc);
            let ours_out = protect(&mut tx, &plain, true).unwrap();
            let theirs_out = oracle_tx.encrypt_rtcp(&plain).unwrap();
            assert_eq!(ours_out, theirs_out.as_ref(), "{ours:?} rtcp #{i}");
            assert_eq!(
                oracle_rx.decrypt_rtcp(&ours_out).unwrap().as_ref(),
                plain.as_slice()
            );
            assert_eq!(unprotect(&mut rx, &theirs_out, true).unwrap(), plain);
        }
    }
}

#[test]
fn tampered_replayed_truncated_are_rejected() {
    for (ours, theirs) in PROFILES {
        let mut rng = Rng(7);
        let (key, salt) = keys(ours, 4);
        let mut oracle_tx = Oracle::new(&key, &salt, theirs, None, None).unwrap();
        let mut rx = SrtpContext::new(ours, &key, &salt).unwrap();
        let plain = rtp_packet(&mut rng, 99, 1000, 0);
        let srtp = oracle_tx.encrypt_rtp(&plain).unwrap().to_vec();
        // Every single-bit flip anywhere (header, payload, tag) fails authentication
        // or parsing, and leaves the context able to accept the genuine packet.
        for byte in 0..srtp.len() {
            let mut bad = srtp.clone();
            bad[byte] ^= 0x04;
            assert!(
                unprotect(&mut rx, &bad, false).is_err(),
                "{ours:?} flip at {byte}"
            );
        }
        assert_eq!(unprotect(&mut rx, &srtp, false).unwrap(), plain);
        assert_eq!(unprotect(&mut rx, &srtp, false), Err(SrtpError::Replayed));
        for cut in [0, 5, 12, srtp.len() - 1] {
            assert!(unprotect(&mut rx, &srtp[..cut], false).is_err());
        }
        // Far behind the window.
        for seq in 1001..1300u16 {
            let p = rtp_packet(&mut rng, 99, seq, 0);
            let s = oracle_tx.encrypt_rtp(&p).unwrap();
            unprotect(&mut rx, &s, false).unwrap();
        }
        let old = oracle_tx
            .encrypt_rtp(&rtp_packet(&mut rng, 99, 1100, 0))
            .unwrap();
        assert_eq!(unprotect(&mut rx, &old, false), Err(SrtpError::TooOld));

        // SRTCP: tamper, replay, truncate.
        let rtcp = rtcp_packet(&mut rng, 5);
        let s = oracle_tx.encrypt_rtcp(&rtcp).unwrap().to_vec();
        for byte in 0..s.len() {
            let mut bad = s.clone();
            bad[byte] ^= 0x01;
            assert!(
                unprotect(&mut rx, &bad, true).is_err(),
                "{ours:?} rtcp flip at {byte}"
            );
        }
        assert_eq!(unprotect(&mut rx, &s, true).unwrap(), rtcp);
        assert_eq!(unprotect(&mut rx, &s, true), Err(SrtpError::Replayed));
        assert!(unprotect(&mut rx, &s[..s.len() - 1], true).is_err());
        assert!(unprotect(&mut rx, &s[..7], true).is_err());
    }
}

#[test]
fn wrong_key_is_rejected_and_state_is_not_created() {
    for (ours, theirs) in PROFILES {
        let (key, salt) = keys(ours, 5);
        let (other_key, _) = keys(ours, 6);
        let mut oracle_tx = Oracle::new(&key, &salt, theirs, None, None).unwrap();
        let mut rx = SrtpContext::new(ours, &other_key, &salt).unwrap();
        let mut rng = Rng(3);
        for i in 0..200u32 {
            let p = rtp_packet(&mut rng, i, 1, 0);
            let s = oracle_tx.encrypt_rtp(&p).unwrap();
            assert_eq!(
                unprotect(&mut rx, &s, false),
                Err(SrtpError::AuthenticationFailed)
            );
        }
        assert_eq!(rx.roc(0), None, "forged packets leave no per-SSRC state");
    }
}

#[test]
fn bad_keys_are_errors() {
    assert_eq!(
        SrtpContext::new(Profile::AeadAes128Gcm, &[0; 15], &[0; 12]).unwrap_err(),
        SrtpError::BadKeyLength
    );
    assert_eq!(
        SrtpContext::new(Profile::Aes128CmHmacSha1_80, &[0; 16], &[0; 12]).unwrap_err(),
        SrtpError::BadKeyLength
    );
}
