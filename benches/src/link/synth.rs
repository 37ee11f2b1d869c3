//! Synthetic media for the link: RTP packets and sources that emit them on a schedule.

use bytes::Bytes;
use sluice_dataplane::engine::Micros;
use sluice_dataplane::link::MAX_RTP;

/// A plain RTP packet of `len` bytes (at least the 12-byte header).
pub fn rtp(ssrc: u32, seq: u16, timestamp: u32, len: usize) -> Bytes {
    let mut p = vec![0u8; len.max(12)];
    p[0] = 0x80;
    p[1] = 96;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&timestamp.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    Bytes::from(p)
}

/// One packet a source emitted.
#[derive(Debug, Clone)]
pub struct Emitted {
    pub track: u64,
    pub layer: u8,
    pub keyframe: bool,
    pub audio: bool,
    pub packet: Bytes,
}

/// An audio track (one small packet every 20 ms) or one simulcast layer of a video track
/// (30 frames a second of `bitrate / 240` bytes each, cut into packets of at most
/// [`MAX_RTP`] bytes, a keyframe every two seconds).
#[derive(Debug, Clone)]
pub struct Source {
    pub track: u64,
    pub layer: u8,
    pub audio: bool,
    /// RTP bits per second.
    pub bitrate: u64,
    next_at: Micros,
    frame: u64,
    seq: u16,
}

const AUDIO_INTERVAL: Micros = 20_000;
const VIDEO_INTERVAL: Micros = 33_333;
const KEYFRAME_EVERY: u64 = 60;

impl Source {
    pub fn audio(track: u64, bitrate: u64) -> Self {
        Self::new(track, 0, true, bitrate)
    }

    pub fn video(track: u64, layer: u8, bitrate: u64) -> Self {
        Self::new(track, layer, false, bitrate)
    }

    fn new(track: u64, layer: u8, audio: bool, bitrate: u64) -> Self {
        Self {
            track,
            layer,
            audio,
            bitrate,
            // Spread the sources' frames over the interval.
            next_at: (track * 7_919 + u64::from(layer) * 3_301) % 20_000,
            frame: 0,
            seq: 0,
        }
    }

    fn interval(&self) -> Micros {
        if self.audio {
            AUDIO_INTERVAL
        } else {
            VIDEO_INTERVAL
        }
    }

    /// Appends what is due by `now`.
    pub fn poll(&mut self, now: Micros, out: &mut Vec<Emitted>) {
        while self.next_at <= now {
            let interval = self.interval();
            let bytes = (self.bitrate * interval / 8 / 1_000_000).max(1) as usize;
            let packets = bytes.div_ceil(MAX_RTP - 12);
            let ssrc = (self.track as u32) << 4 | u32::from(self.layer);
            let ts = (self.frame * 3000) as u32;
            for k in 0..packets {
                let len = (bytes / packets + 12).min(MAX_RTP);
                out.push(Emitted {
                    track: self.track,
                    layer: self.layer,
                    keyframe: !self.audio && k == 0 && self.frame.is_multiple_of(KEYFRAME_EVERY),
                    audio: self.audio,
                    packet: rtp(ssrc, self.seq, ts, len),
                });
                self.seq = self.seq.wrapping_add(1);
            }
            self.frame += 1;
            self.next_at += interval;
        }
    }
}

/// A room's worth of publishers: each has audio (32 kbit/s) and three video layers.
pub fn room(publishers: u64, layers_kbps: [u64; 3]) -> Vec<Source> {
    let mut v = Vec::new();
    for p in 0..publishers {
        let audio = 1 + 2 * p;
        let video = audio + 1;
        v.push(Source::audio(audio, 32_000));
        for (l, kbps) in layers_kbps.iter().enumerate() {
            v.push(Source::video(video, l as u8, kbps * 1000));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_emit_their_bitrate() {
        let mut s = Source::video(2, 1, 2_400_000);
        let mut out = Vec::new();
        s.poll(10_000_000, &mut out);
        let bytes: usize = out.iter().map(|e| e.packet.len() - 12).sum();
        let rate = bytes as u64 * 8 / 10;
        assert!((2_300_000..2_500_000).contains(&rate), "{rate}");
        assert!(out.iter().all(|e| e.packet.len() <= MAX_RTP));
        assert_eq!(out.iter().filter(|e| e.keyframe).count(), 5);
        let mut a = Source::audio(1, 32_000);
        let mut out = Vec::new();
        a.poll(1_000_000, &mut out);
        assert_eq!(out.len(), 50);
        assert!(out.iter().all(|e| e.audio && e.packet.len() == 92));
    }
}
