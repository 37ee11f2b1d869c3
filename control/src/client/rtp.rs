//! Packetization, sans-IO: RTP headers with one-byte header extensions (RFC 8285) and
//! the VP8 payload format (RFC 7741), and reading them back on the receiving side.

use rand::Rng;

/// The one-byte header-extension profile.
const ONE_BYTE_PROFILE: u16 = 0xBEDE;

/// Header extensions a stream stamps on every packet (ids as negotiated; `None` when the
/// answer dropped the extension).
#[derive(Debug, Clone, Default)]
pub struct StreamExtensions {
    pub mid: Option<(u8, Vec<u8>)>,
    pub rid: Option<(u8, Vec<u8>)>,
    pub transport_cc: Option<u8>,
    /// RFC 6464 audio level id, written with [`RtpStream::audio_level`].
    pub audio_level: Option<u8>,
}

/// One outgoing RTP stream: its SSRC, numbering and extensions.
#[derive(Debug, Clone)]
pub struct RtpStream {
    pub ssrc: u32,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ext: StreamExtensions,
    /// Level in -dBov (0 loudest, 127 silence) that audio packets carry, when the audio
    /// level extension was negotiated.
    pub audio_level: u8,
}

impl RtpStream {
    /// Random initial sequence number and timestamp, as RFC 3550 asks.
    pub fn new(ssrc: u32, payload_type: u8, ext: StreamExtensions) -> Self {
        let mut rng = rand::rng();
        Self {
            ssrc,
            payload_type,
            seq: rng.random(),
            timestamp: rng.random(),
            ext,
            audio_level: 127,
        }
    }

    /// Writes the next packet carrying `payload` and advances the numbering; `ts_step` is
    /// added to the timestamp afterwards. `transport_seq` is the transport-wide number.
    /// The vector has `tail` spare bytes of capacity (room for the SRTP tag).
    pub fn packet(
        &mut self,
        payload: &[u8],
        marker: bool,
        ts_step: u32,
        transport_seq: u16,
        tail: usize,
    ) -> Vec<u8> {
        let mut elements: Vec<(u8, &[u8])> = Vec::with_capacity(4);
        let twcc = transport_seq.to_be_bytes();
        // The voice-activity bit: set above the -60 dBov a speaker detector calls silence.
        let level = [self.audio_level.min(127) | if self.audio_level < 60 { 0x80 } else { 0 }];
        if let Some(id) = self.ext.audio_level {
            elements.push((id, &level));
        }
        if let Some((id, v)) = &self.ext.mid {
            elements.push((*id, v));
        }
        if let Some((id, v)) = &self.ext.rid {
            elements.push((*id, v));
        }
        if let Some(id) = self.ext.transport_cc {
            elements.push((id, &twcc));
        }
        let p = write_packet(
            self.payload_type,
            marker,
            self.seq,
            self.timestamp,
            self.ssrc,
            &elements,
            payload,
            tail,
        );
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(ts_step);
        p
    }
}

/// An RTP packet with one-byte header extensions (ids 1-14, values 1-16 bytes; others
/// are skipped).
#[allow(clippy::too_many_arguments)]
pub fn write_packet(
    payload_type: u8,
    marker: bool,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    extensions: &[(u8, &[u8])],
    payload: &[u8],
    tail: usize,
) -> Vec<u8> {
    let valid: Vec<&(u8, &[u8])> = extensions
        .iter()
        .filter(|(id, v)| (1..=14).contains(id) && (1..=16).contains(&v.len()))
        .collect();
    let ext_len: usize = valid.iter().map(|(_, v)| 1 + v.len()).sum();
    let ext_words = ext_len.div_ceil(4);
    let mut p = Vec::with_capacity(12 + 4 + ext_words * 4 + payload.len() + tail);
    let x = if valid.is_empty() { 0 } else { 0x10 };
    p.push(0x80 | x);
    p.push((payload_type & 0x7f) | if marker { 0x80 } else { 0 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&timestamp.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    if !valid.is_empty() {
        p.extend_from_slice(&ONE_BYTE_PROFILE.to_be_bytes());
        // At most 14 elements of 17 bytes: far below u16::MAX words.
        p.extend_from_slice(&(ext_words as u16).to_be_bytes());
        for (id, v) in &valid {
            p.push((id << 4) | (v.len() as u8 - 1));
            p.extend_from_slice(v);
        }
        p.resize(p.len() + ext_words * 4 - ext_len, 0);
    }
    p.extend_from_slice(payload);
    p
}

/// Frame sizes written into keyframe headers, per simulcast layer.
const LAYER_SIZES: [(u16, u16); 3] = [(320, 180), (640, 360), (1280, 720)];

/// A whole VP8 frame in one packet: payload descriptor with a 15-bit picture ID and the
/// start-of-partition bit, then the VP8 frame tag (RFC 6386 9.1) whose inverse key-frame
/// bit is what keyframe detection reads, then for a keyframe the start code and frame
/// size, then `data`.
pub fn vp8_payload(picture_id: u16, keyframe: bool, layer: usize, data: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(4 + 10 + data.len());
    // X=1, S=1, PID=0; I=1; M=1 + 15-bit picture ID.
    p.extend_from_slice(&[0x90, 0x80]);
    p.extend_from_slice(&(0x8000 | (picture_id & 0x7fff)).to_be_bytes());
    // Frame tag: P (inverse key frame) bit 0, version 0, show_frame bit 4, size 0.
    p.extend_from_slice(&[if keyframe { 0x10 } else { 0x11 }, 0, 0]);
    if keyframe {
        let (w, h) = LAYER_SIZES[layer.min(LAYER_SIZES.len() - 1)];
        p.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        p.extend_from_slice(&w.to_le_bytes());
        p.extend_from_slice(&h.to_le_bytes());
    }
    p.extend_from_slice(data);
    p
}

/// A later packet of a frame [`vp8_payload`] began: the payload descriptor without the
/// start-of-partition bit, then `data`.
pub fn vp8_continuation(picture_id: u16, data: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(4 + data.len());
    // X=1, S=0, PID=0; I=1; M=1 + 15-bit picture ID.
    p.extend_from_slice(&[0x80, 0x80]);
    p.extend_from_slice(&(0x8000 | (picture_id & 0x7fff)).to_be_bytes());
    p.extend_from_slice(data);
    p
}

/// What `vp8_payload` wrapped: (keyframe, picture ID, data). `None` if the payload is not
/// one of ours.
pub fn vp8_data(payload: &[u8]) -> Option<(bool, Option<u16>, &[u8])> {
    let d = sluice_dataplane::rewrite::vp8::Vp8Descriptor::parse(payload).ok()?;
    let tag = payload.get(d.len)?;
    let keyframe = tag & 0x01 == 0;
    let header = if keyframe { 10 } else { 3 };
    let data = payload.get(d.len + header..)?;
    Some((keyframe, d.picture_id.map(|(_, _, id)| id), data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_dataplane::router::Codec;
    use sluice_dataplane::router::is_keyframe;
    use sluice_dataplane::rtp::{ExtensionIds, RtpPacket};

    #[test]
    fn packets_carry_extensions_the_dataplane_reads() {
        let mut s = RtpStream::new(
            0xdead_beef,
            96,
            StreamExtensions {
                mid: Some((4, b"1".to_vec())),
                rid: Some((10, b"h".to_vec())),
                transport_cc: Some(3),
                audio_level: None,
            },
        );
        let seq0 = s.seq;
        let ts0 = s.timestamp;
        let p = s.packet(b"payload", true, 3000, 0x1234, 16);
        assert!(p.capacity() >= p.len() + 16);
        let pkt = RtpPacket::parse(&p).expect("valid RTP");
        assert_eq!(pkt.ssrc(), 0xdead_beef);
        assert_eq!(pkt.sequence_number(), seq0);
        assert_eq!(pkt.timestamp(), ts0);
        assert!(pkt.marker());
        assert_eq!(pkt.payload_type(), 96);
        assert_eq!(pkt.payload(), b"payload");
        let ids = ExtensionIds {
            mid: 4,
            rid: 10,
            transport_cc: 3,
            ..ExtensionIds::default()
        };
        let ext = pkt.known_extensions(&ids).expect("extensions parse");
        assert_eq!(ext.mid, Some(&b"1"[..]));
        assert_eq!(ext.rid, Some(&b"h"[..]));
        assert_eq!(ext.transport_cc, Some(0x1234));

        let p2 = s.packet(b"x", false, 3000, 0x1235, 0);
        let pkt2 = RtpPacket::parse(&p2).unwrap();
        assert_eq!(pkt2.sequence_number(), seq0.wrapping_add(1));
        assert_eq!(pkt2.timestamp(), ts0.wrapping_add(3000));
    }

    #[test]
    fn no_extensions_no_x_bit() {
        let p = write_packet(111, false, 1, 2, 3, &[], b"opus", 0);
        assert_eq!(p[0], 0x80);
        assert_eq!(p.len(), 12 + 4);
        // Invalid ids are skipped rather than written.
        let p = write_packet(111, false, 1, 2, 3, &[(15, b"x"), (0, b"y")], b"opus", 0);
        assert_eq!(p.len(), 12 + 4);
    }

    #[test]
    fn vp8_keyframes_are_what_the_node_detects() {
        let key = vp8_payload(5, true, 2, b"frame");
        let delta = vp8_payload(6, false, 2, b"frame");
        assert!(is_keyframe(Codec::Vp8, &key));
        assert!(!is_keyframe(Codec::Vp8, &delta));
        assert_eq!(vp8_data(&key), Some((true, Some(5), &b"frame"[..])));
        assert_eq!(vp8_data(&delta), Some((false, Some(6), &b"frame"[..])));
        assert_eq!(vp8_data(&[0x90]), None);
    }
}
