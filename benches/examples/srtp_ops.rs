//! Runs N iterations of one SRTP operation, for instruction counting under
//! `valgrind --tool=callgrind` (exact and immune to machine noise):
//!   cargo build --release -p sluice-bench --example srtp_ops
//!   valgrind --tool=callgrind target/release/examples/srtp_ops sluice 100000
//! Modes: `sluice` (protect+unprotect), `raw` (ring seal+open, the primitive we use).

use sluice_bench::fixtures::rtp_packet;
use sluice_dataplane::srtp::{Profile, SrtpContext};
use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "sluice".into());
    let n: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let size = 1200;
    let plain = rtp_packet(size);
    let mut buf = vec![0u8; size + 64];
    let key = [7u8; 16];
    let salt = [9u8; 12];
    match mode.as_str() {
        "sluice" => {
            let mut tx = SrtpContext::new(Profile::AeadAes128Gcm, &key, &salt).unwrap();
            let mut rx = SrtpContext::new(Profile::AeadAes128Gcm, &key, &salt).unwrap();
            for i in 0..n {
                buf[..size].copy_from_slice(&plain);
                buf[2..4].copy_from_slice(&(i as u16).to_be_bytes());
                let len = tx.protect_rtp(&mut buf, size).unwrap();
                black_box(rx.unprotect_rtp(&mut buf[..len]).unwrap());
            }
        }
        "raw" => {
            use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
            let k = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &key).unwrap());
            let hl = 28;
            for i in 0..n {
                let mut nonce = [0u8; 12];
                nonce[8..].copy_from_slice(&i.to_be_bytes());
                buf[..size].copy_from_slice(&plain);
                let (hdr, body) = buf.split_at_mut(hl);
                let tag = k
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(&hdr[..]),
                        &mut body[..size - hl],
                    )
                    .unwrap();
                body[size - hl..size - hl + 16].copy_from_slice(tag.as_ref());
                let out = k
                    .open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(&hdr[..]),
                        &mut body[..size - hl + 16],
                    )
                    .unwrap();
                black_box(out.len());
            }
        }
        other => panic!("unknown mode {other}"),
    }
}
