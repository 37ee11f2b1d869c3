//! SRTP protect/unprotect at 160 and 1200 bytes: ours, webrtc-srtp, and the raw AEAD
//! seal/open of the primitive underneath (the crypto limit), in one criterion run.
//! `scripts/bench-packet-core.sh` runs it and turns the results into the README table.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_bench::fixtures::rtp_packet;
use sluice_dataplane::srtp::{Profile, SrtpContext};
use std::hint::black_box;
use webrtc_srtp::context::Context as WebrtcSrtp;
use webrtc_srtp::protection_profile::ProtectionProfile;

const KEY: [u8; 16] = [7; 16];
const SALT: [u8; 14] = [9; 14];
const SIZES: [usize; 2] = [160, 1200];
/// RTP header of the fixture packet: 12 fixed bytes and a 16-byte extension block.
const HEADER_LEN: usize = 28;

fn profiles() -> [(&'static str, Profile, ProtectionProfile); 2] {
    [
        (
            "gcm",
            Profile::AeadAes128Gcm,
            ProtectionProfile::AeadAes128Gcm,
        ),
        (
            "cm_sha1_80",
            Profile::Aes128CmHmacSha1_80,
            ProtectionProfile::Aes128CmHmacSha1_80,
        ),
    ]
}

fn set_seq(buf: &mut [u8], seq: u16) {
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
}

fn roundtrip(c: &mut Criterion) {
    for (name, profile, theirs) in profiles() {
        let salt = &SALT[..profile.master_salt_len()];
        let mut g = c.benchmark_group(format!("srtp_{name}"));
        for size in SIZES {
            let plain = rtp_packet(size);
            g.throughput(Throughput::Bytes(size as u64));

            // Ours: copy in (the egress copy every forwarded packet pays), protect, and
            // unprotect on a receiving context.
            let mut tx = SrtpContext::new(profile, &KEY, salt).unwrap();
            let mut rx = SrtpContext::new(profile, &KEY, salt).unwrap();
            let mut buf = vec![0u8; size + 64];
            let mut seq = 0u16;
            g.bench_function(format!("sluice_protect_unprotect/{size}"), |b| {
                b.iter(|| {
                    seq = seq.wrapping_add(1);
                    buf[..size].copy_from_slice(&plain);
                    set_seq(&mut buf, seq);
                    let n = tx.protect_rtp(&mut buf, size).unwrap();
                    let m = rx.unprotect_rtp(&mut buf[..n]).unwrap();
                    black_box(m)
                })
            });

            let mut tx = SrtpContext::new(profile, &KEY, salt).unwrap();
            let mut seq = 0u16;
            g.bench_function(format!("sluice_protect/{size}"), |b| {
                b.iter(|| {
                    seq = seq.wrapping_add(1);
                    buf[..size].copy_from_slice(&plain);
                    set_seq(&mut buf, seq);
                    black_box(tx.protect_rtp(&mut buf, size).unwrap())
                })
            });

            // Unprotect alone: a ring of pre-protected packets with increasing sequence
            // numbers, re-keyed receiver per pass so none is a replay.
            let mut tx = SrtpContext::new(profile, &KEY, salt).unwrap();
            let ring: Vec<Vec<u8>> = (0..4096u16)
                .map(|s| {
                    let mut b = plain.clone();
                    set_seq(&mut b, s);
                    b.resize(size + 64, 0);
                    let n = tx.protect_rtp(&mut b, size).unwrap();
                    b.truncate(n);
                    b
                })
                .collect();
            g.bench_function(format!("sluice_unprotect/{size}"), |b| {
                let mut rx = SrtpContext::new(profile, &KEY, salt).unwrap();
                let mut i = 0;
                b.iter(|| {
                    if i == ring.len() {
                        i = 0;
                        rx = SrtpContext::new(profile, &KEY, salt).unwrap();
                    }
                    let src = &ring[i];
                    i += 1;
                    buf[..src.len()].copy_from_slice(src);
                    black_box(rx.unprotect_rtp(&mut buf[..src.len()]).unwrap())
                })
            });

            let mut wtx = WebrtcSrtp::new(&KEY, salt, theirs, None, None).unwrap();
            let mut wrx = WebrtcSrtp::new(&KEY, salt, theirs, None, None).unwrap();
            let mut p = plain.clone();
            let mut seq = 0u16;
            g.bench_function(format!("webrtc_srtp_protect_unprotect/{size}"), |b| {
                b.iter(|| {
                    seq = seq.wrapping_add(1);
                    set_seq(&mut p, seq);
                    let s = wtx.encrypt_rtp(&p).unwrap();
                    black_box(wrx.decrypt_rtp(&s).unwrap())
                })
            });

            if profile == Profile::AeadAes128Gcm {
                raw_gcm(&mut g, &plain, size);
            }
        }
        g.finish();
    }
}

/// The crypto limit: AES-128-GCM seal + open of the same header (as AAD, the fixture's
/// 28 bytes) and payload, with the same buffer copy, nothing else. Both candidate primitives are measured so
/// the choice is visible.
fn raw_gcm(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    plain: &[u8],
    size: usize,
) {
    let mut buf = vec![0u8; size + 64];
    // aws-lc-rs and ring expose the same AEAD API under different paths.
    macro_rules! seal_open {
        ($name:literal, $aead:ident) => {{
            use $aead::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
            let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &KEY).unwrap());
            let hl = HEADER_LEN;
            let mut ctr = 0u64;
            g.bench_function(format!("{}/{size}", $name), |b| {
                b.iter(|| {
                    ctr += 1;
                    let mut n = [0u8; 12];
                    n[4..].copy_from_slice(&ctr.to_be_bytes());
                    buf[..size].copy_from_slice(plain);
                    let (hdr, body) = buf.split_at_mut(hl);
                    let tag = key
                        .seal_in_place_separate_tag(
                            Nonce::assume_unique_for_key(n),
                            Aad::from(&hdr[..]),
                            &mut body[..size - hl],
                        )
                        .unwrap();
                    body[size - hl..size - hl + 16].copy_from_slice(tag.as_ref());
                    let out = key
                        .open_in_place(
                            Nonce::assume_unique_for_key(n),
                            Aad::from(&hdr[..]),
                            &mut body[..size - hl + 16],
                        )
                        .unwrap();
                    black_box(out.len())
                })
            });
        }};
    }
    seal_open!("aws_lc_rs_seal_open", aws_lc_rs);
    seal_open!("ring_seal_open", ring);
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
