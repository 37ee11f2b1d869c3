//! SRTP and SRTCP (RFC 3711, RFC 7714), protecting and unprotecting in place.
//!
//! A [`SrtpContext`] holds one direction's keys (a session has one for what it sends and
//! one for what it receives) plus per-SSRC rollover, index and replay state. Buffers are
//! the caller's: `protect_*` needs [`Profile::rtp_overhead`] / [`Profile::rtcp_overhead`]
//! spare bytes after the packet; `unprotect_*` shrinks the packet and returns its new
//! length. Nothing here allocates except the first packet of a new SSRC, and per-SSRC
//! state only exists for packets that authenticated, so a peer cannot grow it by noise.

mod cipher;
mod kdf;
mod replay;

pub use replay::REPLAY_WINDOW;

use crate::rtp::{Layout, RtpError};
use cipher::{CmHmac, GCM_TAG_LEN, Gcm, HMAC_TAG_LEN};
use replay::{Replay, ReplayWindow, Rollover, index};

/// Most SSRCs one context tracks per direction (RTP and RTCP each). A WebRTC session has
/// a handful (audio, three simulcast layers, RTX); the cap bounds peer-driven state.
pub const MAX_SSRCS: usize = 64;

/// SRTCP indices are 31 bits; the key must be renegotiated before they run out.
const SRTCP_INDEX_MAX: u32 = (1 << 31) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// AEAD_AES_128_GCM (RFC 7714): 16-byte key, 12-byte salt, 16-byte tag.
    AeadAes128Gcm,
    /// AES_CM_128_HMAC_SHA1_80 (RFC 3711): 16-byte key, 14-byte salt, 10-byte tag.
    Aes128CmHmacSha1_80,
}

impl Profile {
    pub const fn master_key_len(self) -> usize {
        16
    }
    pub const fn master_salt_len(self) -> usize {
        match self {
            Self::AeadAes128Gcm => 12,
            Self::Aes128CmHmacSha1_80 => 14,
        }
    }
    /// Bytes SRTP adds to an RTP packet.
    pub const fn rtp_overhead(self) -> usize {
        match self {
            Self::AeadAes128Gcm => GCM_TAG_LEN,
            Self::Aes128CmHmacSha1_80 => HMAC_TAG_LEN,
        }
    }
    /// Bytes SRTCP adds to an RTCP packet (tag plus the E flag and index word).
    pub const fn rtcp_overhead(self) -> usize {
        self.rtp_overhead() + 4
    }
    /// The DTLS-SRTP protection profile id (RFC 5764, RFC 7714).
    pub const fn dtls_id(self) -> u16 {
        match self {
            Self::AeadAes128Gcm => 0x0007,
            Self::Aes128CmHmacSha1_80 => 0x0001,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    #[error("master key or salt has the wrong length for the profile")]
    BadKeyLength,
    #[error("bad RTP header: {0}")]
    Rtp(#[from] RtpError),
    #[error("packet of {0} bytes too short for its header and tag")]
    TooShort(usize),
    #[error("buffer lacks room for the SRTP tag")]
    NoRoomForTag,
    #[error("authentication failed")]
    AuthenticationFailed,
    #[error("replayed packet")]
    Replayed,
    #[error("packet index is behind the replay window")]
    TooOld,
    #[error("more than {MAX_SSRCS} SSRCs in one context")]
    TooManySsrcs,
    #[error("SRTCP index exhausted: rekey")]
    IndexExhausted,
    #[error("unencrypted SRTCP (E flag clear) is not accepted")]
    UnencryptedSrtcp,
    #[error("crypto primitive failure")]
    CryptoFailure,
}

// The AES-CM variant carries its key schedule and HMAC state inline: boxing it would put
// a pointer chase on every packet to save memory in a once-per-session object.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Transform {
    Gcm(Gcm),
    Cm(CmHmac),
}

impl Transform {
    fn derive(profile: Profile, key: &[u8; 16], salt: &[u8], labels: [u8; 3]) -> Self {
        let mut session_key = [0u8; 16];
        kdf::derive(key, salt, labels[0], &mut session_key);
        match profile {
            Profile::AeadAes128Gcm => {
                let mut s = [0u8; 12];
                kdf::derive(key, salt, labels[2], &mut s);
                Self::Gcm(Gcm::new(&session_key, s))
            }
            Profile::Aes128CmHmacSha1_80 => {
                let mut s = [0u8; 14];
                kdf::derive(key, salt, labels[2], &mut s);
                let mut auth = [0u8; 20];
                kdf::derive(key, salt, labels[1], &mut auth);
                Self::Cm(CmHmac::new(&session_key, s, &auth))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct RtpStream {
    rollover: Rollover,
    replay: ReplayWindow,
}

#[derive(Debug, Clone, Copy, Default)]
struct RtcpStream {
    /// Last index sent. The first packet carries index 1, as libsrtp (and so every
    /// browser) does; RFC 3711 only requires indices to be unique per key.
    last_index: u32,
    replay: ReplayWindow,
}

/// Per-SSRC state in a small vector: sessions have a few SSRCs, so a linear scan beats
/// hashing, and the last hit is checked first.
#[derive(Debug)]
struct Streams<T> {
    entries: Vec<(u32, T)>,
    last: usize,
}

impl<T: Copy + Default> Streams<T> {
    fn new() -> Self {
        Self {
            entries: Vec::with_capacity(8),
            last: 0,
        }
    }
    #[inline]
    fn find(&mut self, ssrc: u32) -> Option<usize> {
        if self.entries.get(self.last).is_some_and(|e| e.0 == ssrc) {
            return Some(self.last);
        }
        let i = self.entries.iter().position(|e| e.0 == ssrc)?;
        self.last = i;
        Some(i)
    }
    /// The state of `ssrc` and where to store it back: its entry, or `None` for a new
    /// stream, which is only added by [`Self::store`] once its packet authenticated.
    /// The cap is checked here, before any crypto work is spent on the packet.
    #[inline]
    fn slot(&mut self, ssrc: u32) -> Result<(Option<usize>, T), SrtpError> {
        match self.find(ssrc) {
            Some(i) => Ok((Some(i), self.entries[i].1)),
            None if self.entries.len() >= MAX_SSRCS => Err(SrtpError::TooManySsrcs),
            None => Ok((None, T::default())),
        }
    }
    #[inline]
    fn store(&mut self, slot: Option<usize>, ssrc: u32, state: T) {
        match slot {
            Some(i) => self.entries[i].1 = state,
            None => {
                self.last = self.entries.len();
                self.entries.push((ssrc, state));
            }
        }
    }
}

/// One direction of an SRTP session.
#[derive(Debug)]
pub struct SrtpContext {
    profile: Profile,
    rtp: Transform,
    rtcp: Transform,
    rtp_streams: Streams<RtpStream>,
    rtcp_streams: Streams<RtcpStream>,
}

impl SrtpContext {
    pub fn new(profile: Profile, master_key: &[u8], master_salt: &[u8]) -> Result<Self, SrtpError> {
        let key: &[u8; 16] = master_key.try_into().map_err(|_| SrtpError::BadKeyLength)?;
        if master_salt.len() != profile.master_salt_len() {
            return Err(SrtpError::BadKeyLength);
        }
        use kdf::*;
        Ok(Self {
            profile,
            rtp: Transform::derive(
                profile,
                key,
                master_salt,
                [LABEL_RTP_ENCRYPTION, LABEL_RTP_AUTH, LABEL_RTP_SALT],
            ),
            rtcp: Transform::derive(
                profile,
                key,
                master_salt,
                [LABEL_RTCP_ENCRYPTION, LABEL_RTCP_AUTH, LABEL_RTCP_SALT],
            ),
            rtp_streams: Streams::new(),
            rtcp_streams: Streams::new(),
        })
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Sets the rollover counter of `ssrc`, for joining a stream mid-way (e.g. after a
    /// node hands a subscriber over). Unlike packet-driven state this may add an SSRC.
    pub fn set_roc(&mut self, ssrc: u32, roc: u32) -> Result<(), SrtpError> {
        let (slot, mut s) = self.rtp_streams.slot(ssrc)?;
        s.rollover.roc = roc;
        self.rtp_streams.store(slot, ssrc, s);
        Ok(())
    }

    pub fn roc(&mut self, ssrc: u32) -> Option<u32> {
        self.rtp_streams
            .find(ssrc)
            .map(|i| self.rtp_streams.entries[i].1.rollover.roc)
    }

    /// Encrypts the RTP packet in `buf[..len]` in place and appends the tag; returns the
    /// SRTP length. `buf` must have `rtp_overhead()` spare bytes after `len`.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let out_len = len + self.profile.rtp_overhead();
        if buf.len() < out_len {
            return Err(SrtpError::NoRoomForTag);
        }
        let layout = Layout::parse_header(&buf[..len])?;
        let (seq, ssrc) = (u16::from_be_bytes([buf[2], buf[3]]), read_u32(buf, 8));
        let (slot, mut stream) = self.rtp_streams.slot(ssrc)?;
        // Retransmissions of old packets may come after a wrap: estimate as a receiver would.
        let roc = stream.rollover.estimate(seq).ok_or(SrtpError::TooOld)?;
        let hl = layout.header_len;
        match &self.rtp {
            Transform::Gcm(gcm) => {
                let (header, rest) = buf.split_at_mut(hl);
                let tag = gcm.seal(gcm_rtp_iv(ssrc, roc, seq), header, &mut rest[..len - hl])?;
                rest[len - hl..len - hl + GCM_TAG_LEN].copy_from_slice(&tag);
            }
            Transform::Cm(cm) => {
                cm.apply_keystream(cm_iv(ssrc, index(roc, seq)), &mut buf[hl..len]);
                let tag = cm.tag(&[&buf[..len], &roc.to_be_bytes()]);
                buf[len..out_len].copy_from_slice(&tag);
            }
        }
        stream.rollover.update(roc, seq);
        self.rtp_streams.store(slot, ssrc, stream);
        Ok(out_len)
    }

    /// Authenticates and decrypts the SRTP packet in `buf` in place; returns the RTP
    /// length. Replayed, too-old, tampered and truncated packets are errors, and leave
    /// no trace in the context.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let len = buf.len();
        let tag_len = self.profile.rtp_overhead();
        let layout = Layout::parse_header(buf)?;
        let hl = layout.header_len;
        if len < hl + tag_len {
            return Err(SrtpError::TooShort(len));
        }
        let (seq, ssrc) = (u16::from_be_bytes([buf[2], buf[3]]), read_u32(buf, 8));
        let (slot, mut stream) = self.rtp_streams.slot(ssrc)?;
        let roc = stream.rollover.estimate(seq).ok_or(SrtpError::TooOld)?;
        let idx = index(roc, seq);
        check_replay(&stream.replay, idx)?;
        let plain_len = match &self.rtp {
            Transform::Gcm(gcm) => {
                let (header, rest) = buf.split_at_mut(hl);
                hl + gcm.open(gcm_rtp_iv(ssrc, roc, seq), header, rest)?
            }
            Transform::Cm(cm) => {
                let body = len - tag_len;
                cm.verify(&[&buf[..body], &roc.to_be_bytes()], &buf[body..])?;
                cm.apply_keystream(cm_iv(ssrc, idx), &mut buf[hl..body]);
                body
            }
        };
        stream.replay.accept(idx);
        stream.rollover.update(roc, seq);
        self.rtp_streams.store(slot, ssrc, stream);
        Ok(plain_len)
    }

    /// Encrypts the (compound) RTCP packet in `buf[..len]` in place, appending the tag and
    /// the E flag/index word; returns the SRTCP length.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let out_len = len + self.profile.rtcp_overhead();
        if buf.len() < out_len {
            return Err(SrtpError::NoRoomForTag);
        }
        if len < 8 {
            return Err(SrtpError::TooShort(len));
        }
        let ssrc = read_u32(buf, 4);
        let (slot, mut stream) = self.rtcp_streams.slot(ssrc)?;
        let srtcp_index = stream.last_index + 1;
        if srtcp_index > SRTCP_INDEX_MAX {
            return Err(SrtpError::IndexExhausted);
        }
        let e_index = (0x8000_0000 | srtcp_index).to_be_bytes();
        match &self.rtcp {
            Transform::Gcm(gcm) => {
                let aad = rtcp_gcm_aad(&buf[..8], e_index);
                let tag = gcm.seal(gcm_rtcp_iv(ssrc, srtcp_index), &aad, &mut buf[8..len])?;
                buf[len..len + GCM_TAG_LEN].copy_from_slice(&tag);
                buf[len + GCM_TAG_LEN..out_len].copy_from_slice(&e_index);
            }
            Transform::Cm(cm) => {
                cm.apply_keystream(cm_iv(ssrc, u64::from(srtcp_index)), &mut buf[8..len]);
                buf[len..len + 4].copy_from_slice(&e_index);
                let tag = cm.tag(&[&buf[..len + 4]]);
                buf[len + 4..out_len].copy_from_slice(&tag);
            }
        }
        stream.last_index = srtcp_index;
        self.rtcp_streams.store(slot, ssrc, stream);
        Ok(out_len)
    }

    /// Authenticates and decrypts an SRTCP packet in place; returns the RTCP length.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let len = buf.len();
        let overhead = self.profile.rtcp_overhead();
        if len < 8 + overhead {
            return Err(SrtpError::TooShort(len));
        }
        if buf[0] >> 6 != 2 {
            return Err(SrtpError::Rtp(RtpError::BadVersion(buf[0] >> 6)));
        }
        let ssrc = read_u32(buf, 4);
        let e_at = match self.profile {
            Profile::AeadAes128Gcm => len - 4,
            Profile::Aes128CmHmacSha1_80 => len - 4 - HMAC_TAG_LEN,
        };
        let e_index: [u8; 4] = buf[e_at..e_at + 4].try_into().expect("4 bytes");
        let word = u32::from_be_bytes(e_index);
        if word & 0x8000_0000 == 0 {
            return Err(SrtpError::UnencryptedSrtcp);
        }
        let srtcp_index = word & SRTCP_INDEX_MAX;
        let (slot, mut stream) = self.rtcp_streams.slot(ssrc)?;
        check_replay(&stream.replay, u64::from(srtcp_index))?;
        let plain_len = match &self.rtcp {
            Transform::Gcm(gcm) => {
                let aad = rtcp_gcm_aad(&buf[..8], e_index);
                8 + gcm.open(gcm_rtcp_iv(ssrc, srtcp_index), &aad, &mut buf[8..e_at])?
            }
            Transform::Cm(cm) => {
                cm.verify(&[&buf[..e_at + 4]], &buf[e_at + 4..])?;
                cm.apply_keystream(cm_iv(ssrc, u64::from(srtcp_index)), &mut buf[8..e_at]);
                e_at
            }
        };
        stream.replay.accept(u64::from(srtcp_index));
        self.rtcp_streams.store(slot, ssrc, stream);
        Ok(plain_len)
    }
}

#[inline]
fn check_replay(window: &ReplayWindow, idx: u64) -> Result<(), SrtpError> {
    match window.check(idx) {
        Replay::Fresh => Ok(()),
        Replay::Replayed => Err(SrtpError::Replayed),
        Replay::TooOld => Err(SrtpError::TooOld),
    }
}

#[inline]
fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// RFC 7714 8.1: 00 00 | SSRC | ROC | SEQ, XORed with the salt by the transform.
#[inline]
fn gcm_rtp_iv(ssrc: u32, roc: u32, seq: u16) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[6..10].copy_from_slice(&roc.to_be_bytes());
    iv[10..12].copy_from_slice(&seq.to_be_bytes());
    iv
}

/// RFC 7714 9.1: 00 00 | SSRC | 00 00 | 0 + 31-bit SRTCP index.
#[inline]
fn gcm_rtcp_iv(ssrc: u32, srtcp_index: u32) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[8..12].copy_from_slice(&srtcp_index.to_be_bytes());
    iv
}

/// RFC 7714 9.3: the first 8 octets and the E flag/index word are authenticated.
#[inline]
fn rtcp_gcm_aad(head: &[u8], e_index: [u8; 4]) -> [u8; 12] {
    let mut aad = [0u8; 12];
    aad[..8].copy_from_slice(head);
    aad[8..].copy_from_slice(&e_index);
    aad
}

/// RFC 3711 4.1.1: SSRC * 2^64 XOR index * 2^16, before the salt.
#[inline]
fn cm_iv(ssrc: u32, idx: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[4..8].copy_from_slice(&ssrc.to_be_bytes());
    iv[8..14].copy_from_slice(&idx.to_be_bytes()[2..8]);
    iv
}

#[cfg(test)]
mod tests;
