//! Writes the fuzz seed corpora (real packets) to fuzz/seeds/<target>/seed-*:
//!   cargo run -p sluice-dataplane --example fuzz_seeds
//! Packets are shaped like what browsers send: Opus with audio level, VP8 simulcast with
//! mid/rid/TWCC/abs-send-time, RTX, RTCP compounds, ICE checks (RFC 5769 vectors), and
//! SRTP/SRTCP of all of those under both profiles.

use sluice_dataplane::rtcp::{ReportBlock, RtcpWriter};
use sluice_dataplane::srtp::{Profile, SrtpContext};
use sluice_dataplane::stun::{self, StunMessage, StunWriter};
use std::path::Path;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, ext: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80 | if ext.is_empty() { 0 } else { 0x10 }, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(ext);
    p.extend_from_slice(payload);
    p
}

fn rtp_seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Opus: one-byte extensions mid=1 "0", audio level id 6, TWCC id 4; 2-byte pad.
    let opus_ext = [
        0xbe, 0xde, 0, 2, 0x10, b'0', 0x60, 0x9e, 0x41, 0x00, 0x2a, 0x00,
    ];
    let opus = rtp(111, 17_000, 960 * 50, 0x1111_2222, &opus_ext, &[0x78; 80]);
    // VP8 simulcast layer "h": mid, rid, TWCC, abs-send-time; descriptor with 15-bit
    // picture ID, TL0PICIDX, TID; a key frame header.
    let vp8_ext = [
        0xbe, 0xde, 0, 4, 0x10, b'1', 0x20, b'h', 0x41, 0x00, 0x2b, 0x52, 0x1a, 0x2b, 0x3c, 0x00,
        0x00, 0x00, 0x00, 0x00,
    ];
    let mut vp8_payload = vec![
        0x90,
        0xe0,
        0x80 | 0x12,
        0x34,
        0x56,
        0x40,
        0x10,
        0x02,
        0x00,
        0x9d,
        0x01,
        0x2a,
    ];
    vp8_payload.resize(1100, 0x33);
    let vp8 = rtp(96, 40_000, 3_000_000, 0x3333_4444, &vp8_ext, &vp8_payload);
    // RTX with repaired-rid (id 3) and the original sequence number at the payload start.
    let rtx_ext = [0xbe, 0xde, 0, 1, 0x30, b'h', 0x00, 0x00];
    let rtx = rtp(
        97,
        5,
        3_000_000,
        0x5555_6666,
        &rtx_ext,
        &[0x9c, 0x40, 0x90, 0xe0, 0x12, 0x34],
    );
    // Two-byte extension form, CSRCs and padding.
    let mut padded = rtp(
        96,
        65_535,
        1,
        0x77,
        &[0x10, 0x00, 0, 2, 20, 3, b'l', b'o', b'w', 0, 0, 0],
        &[1, 2, 3],
    );
    padded[0] |= 0x20 | 0x02;
    padded.splice(12..12, [0, 0, 0, 9, 0, 0, 0, 10]);
    padded.extend_from_slice(&[0, 0, 0, 4]);
    vec![
        ("opus", opus),
        ("vp8-keyframe", vp8),
        ("rtx", rtx),
        ("two-byte-padded", padded),
    ]
}

fn rtcp_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let block = ReportBlock {
        ssrc: 0x3333_4444,
        fraction_lost: 3,
        cumulative_lost: 40,
        extended_highest_seq: 0x0001_9c40,
        jitter: 120,
        last_sr: 0x1234_5678,
        delay_since_last_sr: 5000,
    };
    let mut out = vec![];
    let mut buf = [0u8; 1500];
    let mut w = RtcpWriter::new(&mut buf);
    w.sender_report(
        0x1111_2222,
        0xe8a1_2345_6789_abcd,
        48_000,
        1000,
        80_000,
        &[block],
    )
    .unwrap();
    w.sdes_cname(0x1111_2222, b"{9c1f5e0a-1b2c-4d3e-8f90-a1b2c3d4e5f6}")
        .unwrap();
    let n = w.finish();
    out.push(("sr-sdes", buf[..n].to_vec()));
    let mut w = RtcpWriter::new(&mut buf);
    w.receiver_report(1, &[block]).unwrap();
    w.remb(1, 2_500_000, &[0x3333_4444, 0x5555_6666]).unwrap();
    let n = w.finish();
    out.push(("rr-remb", buf[..n].to_vec()));
    let mut w = RtcpWriter::new(&mut buf);
    w.receiver_report(1, &[]).unwrap();
    w.nack(1, 0x3333_4444, [100, 101, 104, 130]).unwrap();
    w.pli(1, 0x3333_4444).unwrap();
    w.fir(1, &[(0x3333_4444, 3)]).unwrap();
    let n = w.finish();
    out.push(("rr-nack-pli-fir", buf[..n].to_vec()));
    let deltas: Vec<Option<i32>> = (0..40)
        .map(|i| match i % 9 {
            0 => None,
            4 => Some(-20),
            7 => Some(900),
            _ => Some(i),
        })
        .collect();
    let mut w = RtcpWriter::new(&mut buf);
    w.transport_cc(1, 0x3333_4444, 1000, 12_345, 7, &deltas)
        .unwrap();
    let n = w.finish();
    out.push(("twcc", buf[..n].to_vec()));
    let mut w = RtcpWriter::new(&mut buf);
    w.transport_cc(1, 0x3333_4444, 65_530, 1, 8, &vec![Some(4); 300])
        .unwrap();
    w.bye(&[1]).unwrap();
    let n = w.finish();
    out.push(("twcc-run-bye", buf[..n].to_vec()));
    out
}

fn stun_seeds() -> Vec<(&'static str, Vec<u8>)> {
    // RFC 5769 2.1 sample request and 2.2 sample IPv4 response.
    let request = hex(
        "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74
         002400046e0001ff80290008932ff9b151263b36000600096576746a3a6836765920202000080014
         9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf",
    );
    let m = StunMessage::parse(&request).unwrap();
    let mut buf = [0u8; 200];
    let n = stun::binding_success(
        &mut buf,
        &m,
        "192.0.2.1:32853".parse().unwrap(),
        b"VOkJxbRl1RmTxUk/WvJxBt",
    )
    .unwrap();
    let response = buf[..n].to_vec();
    let mut buf6 = [0u8; 200];
    let n6 = stun::binding_success(
        &mut buf6,
        &m,
        "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse()
            .unwrap(),
        b"pw",
    )
    .unwrap();
    let mut ice = [0u8; 200];
    let mut w = StunWriter::new(&mut ice, stun::BINDING_REQUEST, &[0x42; 12]).unwrap();
    w.username(b"sfuA:brwB")
        .unwrap()
        .priority(1_853_824_767)
        .unwrap()
        .use_candidate()
        .unwrap()
        .ice_controlling(0x1122_3344_5566_7788)
        .unwrap();
    w.message_integrity(b"password")
        .unwrap()
        .fingerprint()
        .unwrap();
    let ni = w.finish();
    let mut err = [0u8; 200];
    let ne = stun::binding_error(&mut err, &m, 487, b"Role Conflict", Some(b"pw")).unwrap();
    vec![
        ("rfc5769-request", request),
        ("response-v4", response),
        ("response-v6", buf6[..n6].to_vec()),
        ("browser-check", ice[..ni].to_vec()),
        ("error-487", err[..ne].to_vec()),
    ]
}

fn write(dir: &Path, target: &str, seeds: &[(&str, Vec<u8>)]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).unwrap();
    for (name, bytes) in seeds {
        std::fs::write(d.join(format!("seed-{name}")), bytes).unwrap();
    }
    println!("{target}: {} seeds", seeds.len());
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let rtp = rtp_seeds();
    let rtcp = rtcp_seeds();
    let stun = stun_seeds();
    write(&dir, "rtp", &rtp);
    write(&dir, "rtcp", &rtcp);
    write(&dir, "stun", &stun);
    let mut demux: Vec<(&str, Vec<u8>)> = vec![];
    demux.extend(rtp.iter().cloned());
    demux.extend(rtcp.iter().cloned());
    demux.extend(stun.iter().cloned());
    // A DTLS 1.2 ClientHello record header and the start of its handshake.
    demux.push((
        "dtls-clienthello",
        hex("16fefd000000000000000000360100002a000000000000002afefd"),
    ));
    write(&dir, "demux", &demux);

    // SRTP target: byte 0 = mode bits (bit0 AES-CM, bit1 RTCP, bit2 sealed-by-oracle).
    // Sealed seeds carry a flip byte (0xff = none) and the plaintext; raw seeds carry
    // real protected packets under the fuzz target's keys.
    const KEY: [u8; 16] = [0x42; 16];
    const SALT: [u8; 14] = [0x17; 14];
    let mut srtp: Vec<(String, Vec<u8>)> = vec![];
    for (pbit, profile) in [
        (0u8, Profile::AeadAes128Gcm),
        (1, Profile::Aes128CmHmacSha1_80),
    ] {
        let mut ctx = SrtpContext::new(profile, &KEY, &SALT[..profile.master_salt_len()]).unwrap();
        for (rbit, set) in [(0u8, &rtp), (2, &rtcp)] {
            for (name, plain) in set.iter() {
                let mut sealed = vec![pbit | rbit | 4, 0xff];
                sealed.extend_from_slice(plain);
                srtp.push((format!("sealed-{pbit}-{name}"), sealed));
                let mut buf = plain.clone();
                buf.resize(plain.len() + 32, 0);
                let n = if rbit == 2 {
                    ctx.protect_rtcp(&mut buf, plain.len())
                } else {
                    ctx.protect_rtp(&mut buf, plain.len())
                }
                .unwrap();
                let mut raw = vec![pbit | rbit];
                raw.extend_from_slice(&buf[..n]);
                srtp.push((format!("protected-{pbit}-{name}"), raw));
            }
        }
    }
    let srtp_ref: Vec<(&str, Vec<u8>)> =
        srtp.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    write(&dir, "srtp_unprotect", &srtp_ref);
}
