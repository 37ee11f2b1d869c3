//! SRTP/SRTCP unprotect, differential against webrtc-srtp.
//!
//! Input byte 0 picks profile, RTP/RTCP and mode; the rest is a packet. In "raw" mode it
//! goes straight to both unprotects (both must reject, or agree). In "sealed" mode the
//! oracle first protects it (so the fuzzer reaches the accept path), then byte 1 picks
//! a bit to flip (or none); both implementations must agree on accept/reject and on the
//! plaintext.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_dataplane::rtp::{RtpError, RtpPacket};
use sluice_dataplane::srtp::{Profile, SrtpContext, SrtpError};
use webrtc_srtp::context::Context;
use webrtc_util::marshal::{MarshalSize, Unmarshal};
use webrtc_srtp::protection_profile::ProtectionProfile;

const KEY: [u8; 16] = [0x42; 16];
const SALT: [u8; 14] = [0x17; 14];

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    let (ours_p, theirs_p) = if ctl & 1 == 0 {
        (Profile::AeadAes128Gcm, ProtectionProfile::AeadAes128Gcm)
    } else {
        (Profile::Aes128CmHmacSha1_80, ProtectionProfile::Aes128CmHmacSha1_80)
    };
    let is_rtcp = ctl & 2 != 0;
    let sealed = ctl & 4 != 0;
    let salt = &SALT[..ours_p.master_salt_len()];
    let mut ours = SrtpContext::new(ours_p, &KEY, salt).unwrap();
    let mut theirs = Context::new(&KEY, salt, theirs_p, None, None).unwrap();

    // The oracle's RTP header parser (rtp 0.17) panics when an extension element runs
    // past the buffer, only knows the two-byte profile 0x1000 (not 0x1001-0x100F), and
    // sizes the header from the elements it parsed rather than from the block's length
    // field (RFC 3550 5.3.1), so a one-byte block holding the id-15 stop marker makes it
    // encrypt part of the header. It only sees packets outside those cases; within them
    // its header length must equal ours.
    let header_ok = |p: &[u8]| {
        let Ok(h) = RtpPacket::parse_header(p) else { return false };
        if !h.extensions().all(|e| e.is_ok()) {
            return false;
        }
        match (h.extension_profile(), h.extension_body()) {
            (Some(0x1001..=0x100f), _) => return false,
            (Some(0xbede), Some(body)) if has_stop_marker(body) => return false,
            _ => {}
        }
        let theirs = rtp::header::Header::unmarshal(&mut &p[..]).map(|h| h.marshal_size());
        assert_eq!(theirs.ok(), Some(h.header_len()), "header length differs from the oracle's");
        true
    };
    if sealed && !is_rtcp && !rest.get(1..).is_some_and(header_ok) {
        return;
    }

    let mut packet = if sealed {
        let Some((&flip, plain)) = rest.split_first() else { return };
        let mut oracle = Context::new(&KEY, salt, theirs_p, None, None).unwrap();
        let protected = if is_rtcp { oracle.encrypt_rtcp(plain) } else { oracle.encrypt_rtp(plain) };
        let Ok(protected) = protected else { return };
        let mut p = protected.to_vec();
        if flip != 0xff && !p.is_empty() {
            let bit = usize::from(flip) % (p.len() * 8);
            p[bit / 8] ^= 1 << (bit % 8);
        }
        p
    } else {
        rest.to_vec()
    };

    // webrtc-srtp 0.17 panics (index underflow) on SRTCP shorter than its trailer; the
    // oracle is only consulted where it is defined, and below that we must reject.
    if is_rtcp && packet.len() < 8 + ours_p.rtcp_overhead() {
        assert!(ours.unprotect_rtcp(&mut packet).is_err());
        return;
    }
    if !is_rtcp && !header_ok(&packet) {
        assert!(ours.unprotect_rtp(&mut packet).is_err() || RtpPacket::parse_header(&packet).is_ok());
        return;
    }
    let theirs_out = if is_rtcp { theirs.decrypt_rtcp(&packet) } else { theirs.decrypt_rtp(&packet) };
    let ours_out = if is_rtcp { ours.unprotect_rtcp(&mut packet) } else { ours.unprotect_rtp(&mut packet) };
    match (ours_out, theirs_out) {
        (Ok(n), Ok(plain)) => assert_eq!(&packet[..n], plain.as_ref(), "plaintexts differ"),
        (Err(_), Err(_)) => {}
        (Ok(_), Err(e)) => panic!("we accepted what webrtc-srtp rejects: {e}"),
        // We are stricter on one point, on purpose: RTP/RTCP version must be 2 (RFC 3550;
        // the RFC 7983 demux would not even classify such a datagram as media).
        (Err(SrtpError::Rtp(RtpError::BadVersion(v))), Ok(_)) if v != 2 => {}
        // webrtc-srtp 0.17 (AES-CM) returns SRTCP whose E flag is clear without checking
        // its tag: anyone can forge such a packet. We refuse unencrypted SRTCP outright.
        (Err(SrtpError::UnencryptedSrtcp), Ok(_)) => {}
        (Err(e), Ok(_)) => panic!("we rejected what webrtc-srtp accepts: {e}"),
    }
});

/// Whether a one-byte extension block contains an element with the reserved id 15.
fn has_stop_marker(body: &[u8]) -> bool {
    let mut pos = 0;
    while let Some(&b) = body.get(pos) {
        if b == 0 {
            pos += 1;
            continue;
        }
        if b >> 4 == 15 {
            return true;
        }
        pos += 2 + usize::from(b & 0x0f);
    }
    false
}
