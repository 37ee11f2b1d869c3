//! What the load generator sends: N publishers and M subscribers per room, R rooms; each
//! publisher sends Opus-sized audio every 20 ms and VP8 frames at a frame rate on one or
//! three simulcast layers, keyframes at an interval, each frame cut into packets of at
//! most `max_chunk` payload bytes as a browser would.

use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    pub rooms: usize,
    /// Publishers per room.
    pub publishers: usize,
    /// Subscribers per room; each subscribes to every publisher of its room.
    pub subscribers: usize,
    pub audio: bool,
    pub video: bool,
    /// Three VP8 layers (q, h, f); otherwise one.
    pub simulcast: bool,
    /// Bitrate of each video layer, lowest first (one entry without simulcast).
    pub layer_kbps: Vec<u32>,
    pub fps: u32,
    #[serde(with = "secs")]
    pub keyframe_interval: Duration,
    /// Largest RTP payload of a video packet, codec descriptor excluded.
    pub max_chunk: usize,
    /// Opus payload bytes per 20 ms packet.
    pub audio_bytes: usize,
    /// The clients' DTLS retransmission interval, in ms (fixed; see
    /// `ClientOptions::dtls_retransmit`). At the dtls crate's 1 s, a server that drops a
    /// ClientHello arriving just before its own ICE is ready (Janus does, for some
    /// subscribers) shows a set-up time of a second that is the client's timer, not the
    /// server.
    pub dtls_retransmit_ms: u64,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

pub const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
/// A keyframe is this many times a delta frame's size.
const KEYFRAME_FACTOR: usize = 4;

impl Default for Workload {
    fn default() -> Self {
        Self {
            rooms: 1,
            publishers: 1,
            subscribers: 16,
            audio: true,
            video: true,
            simulcast: true,
            layer_kbps: vec![150, 500, 1500],
            fps: 30,
            keyframe_interval: Duration::from_secs(2),
            max_chunk: 1100,
            audio_bytes: 80,
            dtls_retransmit_ms: 100,
        }
    }
}

impl Workload {
    pub fn layers(&self) -> usize {
        if !self.video {
            0
        } else if self.simulcast {
            3
        } else {
            1
        }
    }

    /// WebRTC sessions: every publisher, and every subscriber once per publisher.
    pub fn sessions(&self) -> usize {
        self.rooms * self.publishers * (1 + self.subscribers)
    }

    /// Bytes of one frame on `layer`.
    pub fn frame_bytes(&self, layer: usize, keyframe: bool) -> usize {
        let kbps = self
            .layer_kbps
            .get(layer)
            .or(self.layer_kbps.last())
            .copied()
            .unwrap_or(500);
        let bytes = kbps as usize * 1000 / 8 / self.fps.max(1) as usize;
        let bytes = if keyframe {
            bytes * KEYFRAME_FACTOR
        } else {
            bytes
        };
        bytes.max(super::stamp::TRAILER_LEN)
    }

    /// Chunk sizes a frame of `bytes` is cut into: as equal as possible, each at most
    /// `max_chunk` and at least a trailer.
    pub fn chunks(&self, bytes: usize) -> Vec<usize> {
        let max = self.max_chunk.max(super::stamp::TRAILER_LEN);
        let n = bytes.div_ceil(max).max(1);
        let base = (bytes / n).max(super::stamp::TRAILER_LEN);
        let extra = bytes.saturating_sub(base * n);
        (0..n).map(|i| base + usize::from(i < extra)).collect()
    }

    /// Packets per second one publisher sends (keyframes ignored).
    pub fn publisher_pps(&self) -> f64 {
        let audio = if self.audio { 50.0 } else { 0.0 };
        let video: usize = (0..self.layers())
            .map(|l| self.chunks(self.frame_bytes(l, false)).len())
            .sum();
        audio + (video * self.fps as usize) as f64
    }

    /// Packets per second every subscriber should receive from one publisher when the
    /// server forwards the top layer.
    pub fn subscriber_pps(&self) -> f64 {
        let audio = if self.audio { 50.0 } else { 0.0 };
        let top = self.layers().checked_sub(1).map_or(0, |l| {
            self.chunks(self.frame_bytes(l, false)).len() * self.fps as usize
        });
        audio + top as f64
    }

    /// Forwarded packets per second the whole workload asks of the server.
    pub fn forwarded_pps(&self) -> f64 {
        (self.rooms * self.publishers * self.subscribers) as f64 * self.subscriber_pps()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_into_bounded_chunks_that_add_up() {
        let w = Workload::default();
        for bytes in [36, 625, 1100, 1101, 6250, 25_000] {
            let c = w.chunks(bytes);
            assert!(
                c.iter().all(|&n| n <= w.max_chunk && n >= 36),
                "{bytes}: {c:?}"
            );
            assert!(c.iter().sum::<usize>() >= bytes, "{bytes}: {c:?}");
            assert!(
                c.iter().sum::<usize>() < bytes + 36 * c.len() + 1,
                "{bytes}: {c:?}"
            );
        }
        // 1.5 Mbit/s at 30 fps: 6250-byte frames in 6 packets.
        assert_eq!(w.chunks(w.frame_bytes(2, false)).len(), 6);
        assert_eq!(w.sessions(), 17);
        // 50 audio + 30 frames of 6 packets.
        assert_eq!(w.subscriber_pps(), 230.0);
    }
}
