use super::cache::PacketCache;
use super::cascade::NackThrottle;
use super::feedback::{RateMeter, ReceiveStats};
use super::speech::SpeechMeter;
use super::{Codec, LayerConfig, Micros, SessionIdx, TrackConfig, TrackId};
use crate::engine::WorkerId;

/// One simulcast layer (or the only encoding) of a track, as seen on this worker.
#[derive(Debug)]
pub struct Layer {
    pub config: LayerConfig,
    /// Learned from the rid extension when the SDP gave no SSRC (browser simulcast).
    pub ssrc: Option<u32>,
    pub rtx_ssrc: Option<u32>,
    pub cache: PacketCache,
    /// Last upstream keyframe request for this layer, for throttling.
    pub last_keyframe_request: Option<Micros>,
    pub last_packet_at: Option<Micros>,
    /// Receiver statistics for our reports (home worker only).
    pub recv: ReceiveStats,
    /// Incoming media bitrate, for fitting layers to estimates.
    pub rate: RateMeter,
    /// Sequence numbers asked of a remote publisher lately.
    pub nack_upstream: NackThrottle,
}

#[derive(Debug)]
pub struct Track {
    pub id: TrackId,
    pub codec: Codec,
    pub clock_rate: u32,
    pub payload_type: u8,
    /// Worker holding the publisher's session.
    pub home: WorkerId,
    /// The publisher's session, when it lives on this worker.
    pub publisher: Option<SessionIdx>,
    /// Published on another node: media comes from the link, requests go upstream.
    pub remote: bool,
    pub layers: Vec<Layer>,
    /// Local subscriber sessions.
    pub subscribers: Vec<SessionIdx>,
    /// On the home worker: other workers with subscribers, with their subscriber count.
    pub workers: Vec<(WorkerId, u32)>,
    /// Other nodes subscribed to a layer.
    pub links: Vec<(u32, u8)>,
    /// Loudness of a local publisher's audio, for active-speaker detection.
    pub speech: SpeechMeter,
}

impl Track {
    pub fn new(config: &TrackConfig, publisher: Option<SessionIdx>, remote: bool) -> Self {
        Self {
            id: config.id,
            codec: config.codec,
            clock_rate: config.clock_rate,
            payload_type: config.payload_type,
            home: config.home,
            publisher,
            remote,
            layers: config
                .layers
                .iter()
                .map(|l| Layer {
                    config: l.clone(),
                    ssrc: l.ssrc,
                    rtx_ssrc: l.rtx_ssrc,
                    cache: PacketCache::default(),
                    last_keyframe_request: None,
                    last_packet_at: None,
                    recv: ReceiveStats::default(),
                    rate: RateMeter::default(),
                    nack_upstream: NackThrottle::default(),
                })
                .collect(),
            subscribers: Vec::new(),
            workers: Vec::new(),
            links: Vec::new(),
            speech: SpeechMeter::default(),
        }
    }

    /// The layer and whether it is the RTX stream, for an incoming SSRC.
    pub fn layer_of(&self, ssrc: u32) -> Option<(u8, bool)> {
        self.layers.iter().enumerate().find_map(|(i, l)| {
            if l.ssrc == Some(ssrc) {
                Some((i as u8, false))
            } else if l.rtx_ssrc == Some(ssrc) {
                Some((i as u8, true))
            } else {
                None
            }
        })
    }

    /// Learns a simulcast SSRC from the rid (or repaired-rid) extension.
    pub fn learn_rid(&mut self, rid: &[u8], ssrc: u32, repair: bool) -> Option<u8> {
        let i = self
            .layers
            .iter()
            .position(|l| l.config.rid.as_deref() == Some(rid))?;
        let l = &mut self.layers[i];
        let slot = if repair { &mut l.rtx_ssrc } else { &mut l.ssrc };
        if slot.is_none() {
            *slot = Some(ssrc);
        }
        (*slot == Some(ssrc)).then_some(i as u8)
    }

    pub fn add_worker(&mut self, worker: WorkerId) {
        match self.workers.iter_mut().find(|(w, _)| *w == worker) {
            Some((_, n)) => *n += 1,
            None => self.workers.push((worker, 1)),
        }
    }

    pub fn remove_worker(&mut self, worker: WorkerId) {
        if let Some(i) = self.workers.iter().position(|(w, _)| *w == worker) {
            self.workers[i].1 -= 1;
            if self.workers[i].1 == 0 {
                self.workers.swap_remove(i);
            }
        }
    }
}
