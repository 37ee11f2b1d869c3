use super::*;

fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]);
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xaa; 40]);
    p
}

fn pair(profile: Profile) -> (SrtpContext, SrtpContext) {
    let salt = vec![3u8; profile.master_salt_len()];
    (
        SrtpContext::new(profile, &[4; 16], &salt).unwrap(),
        SrtpContext::new(profile, &[4; 16], &salt).unwrap(),
    )
}

#[test]
fn needs_room_for_the_tag() {
    for profile in [Profile::AeadAes128Gcm, Profile::Aes128CmHmacSha1_80] {
        let (mut tx, _) = pair(profile);
        let mut p = rtp(1, 1);
        let len = p.len();
        assert_eq!(tx.protect_rtp(&mut p, len), Err(SrtpError::NoRoomForTag));
        p.resize(len + profile.rtp_overhead(), 0);
        assert_eq!(
            tx.protect_rtp(&mut p, len),
            Ok(len + profile.rtp_overhead())
        );
    }
}

#[test]
fn ssrc_state_is_bounded() {
    let (mut tx, mut rx) = pair(Profile::AeadAes128Gcm);
    for ssrc in 0..=MAX_SSRCS as u32 {
        let mut p = rtp(ssrc, 1);
        let len = p.len();
        p.resize(len + 16, 0);
        let r = tx.protect_rtp(&mut p, len);
        if (ssrc as usize) < MAX_SSRCS {
            let n = r.unwrap();
            rx.unprotect_rtp(&mut p[..n]).unwrap();
        } else {
            assert_eq!(r, Err(SrtpError::TooManySsrcs));
        }
    }
}

#[test]
fn joining_mid_stream_with_a_known_roc() {
    for profile in [Profile::AeadAes128Gcm, Profile::Aes128CmHmacSha1_80] {
        let (mut tx, mut rx) = pair(profile);
        tx.set_roc(7, 41).unwrap();
        rx.set_roc(7, 41).unwrap();
        let mut p = rtp(7, 65_535);
        let len = p.len();
        p.resize(len + 16, 0);
        let n = tx.protect_rtp(&mut p, len).unwrap();
        assert_eq!(rx.unprotect_rtp(&mut p[..n]), Ok(len));
        let mut q = rtp(7, 0);
        q.resize(len + 16, 0);
        let n = tx.protect_rtp(&mut q, len).unwrap();
        assert_eq!(rx.unprotect_rtp(&mut q[..n]), Ok(len));
        assert_eq!(rx.roc(7), Some(42));
        // A receiver with the wrong ROC cannot authenticate.
        let (_, mut wrong) = pair(profile);
        let mut r = rtp(7, 1);
        r.resize(len + 16, 0);
        let n = tx.protect_rtp(&mut r, len).unwrap();
        assert_eq!(
            wrong.unprotect_rtp(&mut r[..n]),
            Err(SrtpError::AuthenticationFailed)
        );
    }
}

#[test]
fn unencrypted_srtcp_is_refused() {
    for profile in [Profile::AeadAes128Gcm, Profile::Aes128CmHmacSha1_80] {
        let (mut tx, mut rx) = pair(profile);
        let mut p = vec![0x80, 201, 0, 1, 0, 0, 0, 9];
        p.resize(8 + profile.rtcp_overhead(), 0);
        let n = tx.protect_rtcp(&mut p, 8).unwrap();
        let e_at = match profile {
            Profile::AeadAes128Gcm => n - 4,
            Profile::Aes128CmHmacSha1_80 => n - 14,
        };
        p[e_at] &= 0x7f;
        assert_eq!(
            rx.unprotect_rtcp(&mut p[..n]),
            Err(SrtpError::UnencryptedSrtcp)
        );
    }
}

/// SRTCP indices are 31 bits and must never repeat under one key: at the end of the
/// space protect refuses (the session must rekey) instead of wrapping to 0 and reusing
/// a nonce/keystream. The receiver accepts the last index.
#[test]
fn srtcp_index_exhaustion_refuses_to_wrap() {
    for profile in [Profile::AeadAes128Gcm, Profile::Aes128CmHmacSha1_80] {
        let (mut tx, mut rx) = pair(profile);
        let plain = [0x80, 201, 0, 1, 0, 0, 0, 9];
        let mut p = plain.to_vec();
        p.resize(8 + profile.rtcp_overhead(), 0);
        let n = tx.protect_rtcp(&mut p, 8).unwrap();
        assert_eq!(rx.unprotect_rtcp(&mut p[..n]), Ok(8));
        let i = tx.rtcp_streams.find(9).unwrap();
        tx.rtcp_streams.entries[i].1.last_index = SRTCP_INDEX_MAX - 1;
        let mut p = plain.to_vec();
        p.resize(8 + profile.rtcp_overhead(), 0);
        let n = tx.protect_rtcp(&mut p, 8).unwrap();
        let e_at = match profile {
            Profile::AeadAes128Gcm => n - 4,
            Profile::Aes128CmHmacSha1_80 => n - 14,
        };
        assert_eq!(
            &p[e_at..e_at + 4],
            &[0xff; 4][..],
            "E flag and index 2^31-1"
        );
        assert_eq!(rx.unprotect_rtcp(&mut p[..n]), Ok(8));
        let mut p = plain.to_vec();
        p.resize(8 + profile.rtcp_overhead(), 0);
        assert_eq!(tx.protect_rtcp(&mut p, 8), Err(SrtpError::IndexExhausted));
    }
}
