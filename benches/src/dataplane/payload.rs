//! The synthetic media packets: a VP8 video RTP packet as a browser sends it (one-byte
//! header extensions with mid, transport-wide sequence number and abs-send-time; a VP8
//! payload descriptor with a 15-bit picture ID), whose payload carries a bench block —
//! magic, publisher id, a 64-bit sequence number, the send time, and a checksum over
//! the block and the fill after it — so a sink can verify the packet end to end and
//! compute its one-way latency.

use sluice_dataplane::rtp::ExtensionIds;

pub const MAGIC: u32 = 0x534c_4442;

/// RTP fixed header (12) + extension header (4) + three one-byte elements padded to 12.
pub const HEADER_LEN: usize = 28;
/// VP8 payload descriptor (X, I, 15-bit picture ID) + the VP8 payload header byte.
pub const VP8_LEN: usize = 5;
pub const BLOCK_LEN: usize = 32;
/// Offset of the bench block within the RTP payload.
pub const BLOCK_IN_PAYLOAD: usize = VP8_LEN;
/// Smallest plaintext RTP packet that holds the bench block.
pub const MIN_RTP_LEN: usize = HEADER_LEN + VP8_LEN + BLOCK_LEN;

pub const PAYLOAD_TYPE: u8 = 96;
pub const CLOCK_RATE: u32 = 90_000;
/// Frames per second each publisher aims at (timestamps advance by this cadence).
pub const FRAME_RATE: u32 = 30;

/// The extension ids the generator's packets use (as a browser's SDP would negotiate).
pub const EXTENSIONS: ExtensionIds = ExtensionIds {
    mid: 1,
    rid: 2,
    repaired_rid: 0,
    transport_cc: 3,
    abs_send_time: 4,
    audio_level: 0,
};

/// What a sink learns from a verified packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub publisher: u32,
    pub seq: u64,
    pub send_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    Short,
    Magic,
    Checksum,
}

#[inline]
pub(crate) fn mix(h: u64, w: u64) -> u64 {
    (h.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95)
}

/// Hash of the fill bytes (everything after the block).
pub(crate) fn fill_hash(fill: &[u8]) -> u64 {
    let mut h = fill.len() as u64;
    let mut chunks = fill.chunks_exact(8);
    for c in &mut chunks {
        h = mix(h, u64::from_le_bytes(c.try_into().expect("8 bytes")));
    }
    for &b in chunks.remainder() {
        h = mix(h, u64::from(b));
    }
    h
}

fn block_check(publisher: u32, seq: u64, send_ns: u64, fill: u64) -> u64 {
    mix(
        mix(
            mix(mix(u64::from(MAGIC), u64::from(publisher)), seq),
            send_ns,
        ),
        fill,
    )
}

/// Builds one publisher's packets: keeps its RTP sequence, timestamp, transport-wide
/// sequence and picture ID, and a template of the fill, which encryption overwrites.
#[derive(Debug, Clone)]
pub struct PacketWriter {
    publisher: u32,
    ssrc: u32,
    rtp_seq: u16,
    timestamp: u32,
    twcc: u16,
    picture_id: u16,
    seq: u64,
    template: Vec<u8>,
    fill_hash: u64,
}

impl PacketWriter {
    /// Packets of `rtp_len` plaintext bytes (at least [`MIN_RTP_LEN`]).
    pub fn new(publisher: u32, ssrc: u32, first_seq: u16, first_ts: u32, rtp_len: usize) -> Self {
        assert!(
            rtp_len >= MIN_RTP_LEN,
            "packet smaller than the bench block"
        );
        let mut t = vec![0u8; rtp_len];
        t[0] = 0x90; // V=2, X=1
        t[1] = PAYLOAD_TYPE;
        t[8..12].copy_from_slice(&ssrc.to_be_bytes());
        // One-byte extension block, 3 words: mid "0", transport-cc (2 bytes),
        // abs-send-time (3 bytes), padding.
        t[12..16].copy_from_slice(&[0xbe, 0xde, 0, 3]);
        t[16..28].copy_from_slice(&[0x10, b'0', 0x31, 0, 0, 0x42, 0, 0, 0, 0, 0, 0]);
        let fill_start = HEADER_LEN + VP8_LEN + BLOCK_LEN;
        for (i, b) in t[fill_start..].iter_mut().enumerate() {
            *b = (i as u32).wrapping_mul(131).wrapping_add(publisher) as u8;
        }
        let fill_hash = fill_hash(&t[fill_start..]);
        Self {
            publisher,
            ssrc,
            rtp_seq: first_seq,
            timestamp: first_ts,
            twcc: 0,
            picture_id: 0,
            seq: 0,
            template: t,
            fill_hash,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    pub fn rtp_len(&self) -> usize {
        self.template.len()
    }

    /// Packets written so far (the next packet's 64-bit sequence number).
    pub fn written(&self) -> u64 {
        self.seq
    }

    /// Writes the next packet into `buf` (which needs room for the SRTP tag after it)
    /// and returns its plaintext length. `frame_start` opens a new picture (and a
    /// keyframe if `keyframe`); `marker` closes one.
    pub fn write(
        &mut self,
        buf: &mut [u8],
        frame_start: bool,
        keyframe: bool,
        marker: bool,
        send_ns: u64,
    ) -> usize {
        let n = self.template.len();
        let p = &mut buf[..n];
        p.copy_from_slice(&self.template);
        if frame_start && self.seq > 0 {
            self.picture_id = (self.picture_id + 1) & 0x7fff;
            self.timestamp = self.timestamp.wrapping_add(CLOCK_RATE / FRAME_RATE);
        }
        p[1] = PAYLOAD_TYPE | if marker { 0x80 } else { 0 };
        p[2..4].copy_from_slice(&self.rtp_seq.to_be_bytes());
        p[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        p[19..21].copy_from_slice(&self.twcc.to_be_bytes());
        // abs-send-time: 6.18 fixed-point seconds, 24 bits.
        let ast = ((send_ns << 18) / 1_000_000_000) as u32 & 0x00ff_ffff;
        p[22..25].copy_from_slice(&ast.to_be_bytes()[1..]);
        let d = &mut p[HEADER_LEN..HEADER_LEN + VP8_LEN];
        d[0] = 0x80 | if frame_start { 0x10 } else { 0 };
        d[1] = 0x80;
        d[2..4].copy_from_slice(&(0x8000 | self.picture_id).to_be_bytes());
        // VP8 payload header, inverse key-frame bit: 0 for a keyframe.
        d[4] = if frame_start && keyframe { 0x00 } else { 0x01 };
        let b = HEADER_LEN + VP8_LEN;
        let check = block_check(self.publisher, self.seq, send_ns, self.fill_hash);
        p[b..b + 4].copy_from_slice(&MAGIC.to_le_bytes());
        p[b + 4..b + 8].copy_from_slice(&self.publisher.to_le_bytes());
        p[b + 8..b + 16].copy_from_slice(&self.seq.to_le_bytes());
        p[b + 16..b + 24].copy_from_slice(&send_ns.to_le_bytes());
        p[b + 24..b + 32].copy_from_slice(&check.to_le_bytes());
        self.rtp_seq = self.rtp_seq.wrapping_add(1);
        self.twcc = self.twcc.wrapping_add(1);
        self.seq += 1;
        n
    }
}

/// Checks the bench block of a decrypted RTP payload (the part after the RTP header).
pub fn verify(payload: &[u8]) -> Result<Stamp, VerifyError> {
    let block = payload
        .get(BLOCK_IN_PAYLOAD..BLOCK_IN_PAYLOAD + BLOCK_LEN)
        .ok_or(VerifyError::Short)?;
    let word = |i: usize| u64::from_le_bytes(block[i..i + 8].try_into().expect("8 bytes"));
    if u32::from_le_bytes(block[0..4].try_into().expect("4 bytes")) != MAGIC {
        return Err(VerifyError::Magic);
    }
    let publisher = u32::from_le_bytes(block[4..8].try_into().expect("4 bytes"));
    let (seq, send_ns, check) = (word(8), word(16), word(24));
    let fill = fill_hash(&payload[BLOCK_IN_PAYLOAD + BLOCK_LEN..]);
    if block_check(publisher, seq, send_ns, fill) != check {
        return Err(VerifyError::Checksum);
    }
    Ok(Stamp {
        publisher,
        seq,
        send_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_dataplane::router::Codec;
    use sluice_dataplane::router::is_keyframe;
    use sluice_dataplane::rtp::RtpPacket;

    #[test]
    fn packets_parse_and_verify() {
        let mut w = PacketWriter::new(7, 0x1234, 65535, 1000, 200);
        let mut buf = [0u8; 256];
        let n = w.write(&mut buf, true, true, false, 42_000);
        let p = RtpPacket::parse(&buf[..n]).unwrap();
        assert_eq!(p.sequence_number(), 65535);
        assert_eq!(p.ssrc(), 0x1234);
        assert_eq!(p.header_len(), HEADER_LEN);
        let ext = p.known_extensions(&EXTENSIONS).unwrap();
        assert_eq!(ext.mid, Some(&b"0"[..]));
        assert!(is_keyframe(Codec::Vp8, p.payload()));
        let s = verify(p.payload()).unwrap();
        assert_eq!((s.publisher, s.seq, s.send_ns), (7, 0, 42_000));

        let n = w.write(&mut buf, false, false, true, 43_000);
        let p = RtpPacket::parse(&buf[..n]).unwrap();
        assert_eq!(p.sequence_number(), 0);
        assert!(p.marker());
        assert!(!is_keyframe(Codec::Vp8, p.payload()));
        assert_eq!(verify(p.payload()).unwrap().seq, 1);

        let n = w.write(&mut buf, true, false, false, 44_000);
        let p = RtpPacket::parse(&buf[..n]).unwrap();
        assert!(!is_keyframe(Codec::Vp8, p.payload()));
        buf[n - 1] ^= 1;
        let p = RtpPacket::parse(&buf[..n]).unwrap();
        assert_eq!(verify(p.payload()), Err(VerifyError::Checksum));
    }
}
