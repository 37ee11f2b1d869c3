//! The sans-IO router: one instance per worker, holding the sessions whose 5-tuples hash
//! to that worker, every track of the node, and this worker's subscriptions.
//!
//! A publisher's packet is decrypted once on its home worker, cached for NACKs, and then
//! rewritten and encrypted once per local subscriber; subscribers on other workers get
//! the plaintext by reference (a `Bytes` handoff, one per worker), other nodes by link.
//! Commands (sessions with their keys, tracks, subscriptions) arrive from the control
//! plane; nothing here blocks, allocates per packet, or reads a clock. RTCP the node
//! originates (reports, congestion feedback) and the layer choice it drives live in
//! `feedback/`; the ICE-lite responder and the DTLS relay to the control plane in `ice/`;
//! tracks published on another node of the cascade in `cascade.rs`; the null-forwarder
//! reference mode (ciphertext copied to subscribers as it came) in `null_media.rs`.

mod cache;
mod cascade;
mod extmap;
mod feedback;
mod ice;
mod keyframe;
mod null_media;
mod rtx;
mod session;
mod speech;
mod stats;
mod track;

pub use cache::{CACHE_PACKET_MAX, CACHE_SLOTS};
pub use cascade::{MAX_NACK_UPSTREAM, UpstreamEvent};
pub use feedback::{FeedbackConfig, RateMeter};
pub use ice::{IceCredentials, MAX_REMOTES_PER_SESSION, RouterEvent};
pub use keyframe::is_keyframe;
pub use session::NO_LAYER;
pub use speech::SPEECH_INTERVAL;
pub use stats::{
    CallQuality, HISTOGRAM_BOUNDS, Histogram, JITTER_US_BOUNDS, LOSS_PPM_BOUNDS, RTT_US_BOUNDS,
    RouterStats,
};

use crate::demux::{PacketKind, classify};
use crate::engine::{
    BytesPool, Egress, LinkPacket, Micros, Output, PacketHandler, SLOT_LEN, WorkerId,
};
use crate::rewrite::{Rewrite, RtpRewriter};
use crate::rtcp::{RtcpPacket, RtcpWriter, parse_compound};
use crate::rtp::{ExtensionIds, RtpPacket};
use crate::srtp::{Profile, SrtpContext, SrtpError};
use bytes::Bytes;
use feedback::{SessionFeedback, SubscriptionFeedback, TwccReceiver, TwccSender};
use ice::{Ice, IceConfig};
use null_media::NullRoutes;
use session::{Session, Subscription};
use std::collections::HashMap;
use std::net::SocketAddr;
use track::Track;

pub type SessionId = u64;
pub type TrackId = u64;
type SessionIdx = usize;
type TrackIdx = usize;

/// One direction's SRTP master key and salt.
#[derive(Debug, Clone)]
pub struct SrtpKeys {
    pub profile: Profile,
    pub key: Vec<u8>,
    pub salt: Vec<u8>,
}

/// A peer's session on this worker: where it is, and the keys DTLS-SRTP (or the bench
/// API, directly) gave it.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub id: SessionId,
    pub remote: SocketAddr,
    /// Keys for what the peer sends.
    pub inbound: SrtpKeys,
    /// Keys for what the node sends the peer.
    pub outbound: SrtpKeys,
    pub extensions: ExtensionIds,
    /// The SSRC the node's own RTCP to this peer carries as sender.
    pub rtcp_ssrc: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Opus,
    Vp8,
    Vp9,
    H264,
    Av1,
    Other,
}

/// One encoding of a track. Browsers announce simulcast by rid alone, so the SSRCs may be
/// unknown until the first packet carrying the rid extension.
#[derive(Debug, Clone, Default)]
pub struct LayerConfig {
    pub ssrc: Option<u32>,
    pub rtx_ssrc: Option<u32>,
    pub rid: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct TrackConfig {
    pub id: TrackId,
    pub publisher: SessionId,
    /// Worker holding the publisher's session. Every worker learns every track so it can
    /// serve its own subscribers from handed-off packets.
    pub home: WorkerId,
    pub codec: Codec,
    pub clock_rate: u32,
    pub payload_type: u8,
    pub rtx_payload_type: Option<u8>,
    /// Simulcast layers, lowest quality first; exactly one for audio and plain video.
    pub layers: Vec<LayerConfig>,
}

#[derive(Debug, Clone)]
pub struct SubscribeConfig {
    pub session: SessionId,
    pub track: TrackId,
    pub ssrc: u32,
    pub payload_type: u8,
    /// RTX SSRC and payload type, when the subscriber negotiated RFC 4588.
    pub rtx: Option<(u32, u8)>,
    /// First sequence number and timestamp the subscriber sees (random per RFC 3550).
    pub initial_seq: u16,
    pub initial_ts: u32,
    /// Layer to start with.
    pub layer: u8,
    /// Keep `layer` regardless of the bandwidth estimate.
    pub pinned: bool,
    /// Publisher's header-extension id -> subscriber's id, applied to each forwarded
    /// packet; an id mapped to 0 is blanked. `None` forwards the ids as they are.
    pub ext_remap: Option<Box<[u8; 256]>>,
}

#[derive(Debug, Clone)]
pub enum RouterCommand {
    AddSession(Box<SessionConfig>),
    RemoveSession(SessionId),
    /// Sent to every worker.
    AddTrack(Box<TrackConfig>),
    /// Sent to every worker: a track published on another node of the cascade. Its
    /// `publisher` is ignored; its media arrives by [`RouterCommand::LinkMedia`] on
    /// `home`.
    AddRemoteTrack(Box<TrackConfig>),
    /// Sent to every worker.
    RemoveTrack(TrackId),
    /// Sent to the subscriber session's worker.
    Subscribe(SubscribeConfig),
    Unsubscribe {
        session: SessionId,
        track: TrackId,
    },
    /// Pins a subscription to a layer, or (`None`) hands it back to the estimate.
    SetLayer {
        session: SessionId,
        track: TrackId,
        layer: Option<u8>,
    },
    /// Sent to the track's home worker: another node wants this layer.
    LinkSubscribe {
        track: TrackId,
        node: u32,
        layer: u8,
    },
    LinkUnsubscribe {
        track: TrackId,
        node: u32,
        layer: u8,
    },
    /// Sent to a remote track's home worker: a packet of it from the link, the
    /// publisher's decrypted RTP as it was sent.
    LinkMedia {
        track: TrackId,
        layer: u8,
        keyframe: bool,
        packet: Bytes,
    },
    /// Sent to the track's home worker: resend these packets (the publisher's sequence
    /// numbers) of a layer `node` subscribes to, from the cache, as link packets.
    LinkNack {
        track: TrackId,
        node: u32,
        layer: u8,
        seqs: Vec<u16>,
    },
    /// Sent to the track's home worker: someone (another node) needs a keyframe of this
    /// layer. Throttled like a local subscriber's request.
    RequestKeyframe {
        track: TrackId,
        layer: u8,
    },
    /// Sent to every worker: a session's ICE credentials (a new session, or an ICE
    /// restart).
    AddIce(Box<IceCredentials>),
    /// Sent to every worker: forgets the credentials and the remotes they validated.
    RemoveIce(SessionId),
    /// Sends `packet` as it is from the media socket (the control plane's DTLS records).
    SendRaw {
        dest: SocketAddr,
        packet: Bytes,
    },
    /// Replies with a copy of the live counters.
    Snapshot(crossbeam_channel::Sender<RouterStats>),
    /// Sent to the session's worker: the peer moved to another candidate pair (a browser
    /// re-nominating). Media and RTCP from `remote` are the session's from now on, and
    /// everything the node sends it goes there; the old address is forgotten.
    RebindSession {
        session: SessionId,
        remote: SocketAddr,
    },
    /// Sent to the worker `remote` is steered to when its session lives on `worker`:
    /// RTP and RTCP from `remote` are handed to `worker` as they arrived. STUN and DTLS
    /// from it stay here, with the ICE state that validated it.
    ForwardRemote {
        remote: SocketAddr,
        worker: WorkerId,
    },
    UnforwardRemote {
        remote: SocketAddr,
    },
}

/// Messages between the routers of one node's workers.
#[derive(Debug, Clone)]
pub enum RouterHandoff {
    /// A decrypted publisher packet, from the track's home worker.
    Media {
        track: TrackId,
        layer: u8,
        keyframe: bool,
        packet: Bytes,
    },
    /// To the home worker: `worker` gained or lost a subscriber of `track`.
    Interest {
        track: TrackId,
        worker: WorkerId,
        subscribed: bool,
    },
    /// To the home worker: a subscriber needs a keyframe of this layer.
    KeyframeRequest { track: TrackId, layer: u8 },
    /// An RTP or RTCP datagram, still encrypted, that landed on a worker forwarding
    /// `from` ([`RouterCommand::ForwardRemote`]) for the session's worker.
    Datagram { from: SocketAddr, packet: Bytes },
    /// In null-media mode ([`RouterConfig::null_media`]): a publisher's RTP as it
    /// arrived, still encrypted, from its session's worker, for this worker's sinks.
    NullMedia { publisher: SessionId, packet: Bytes },
}

#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Shortest interval between keyframe requests sent upstream for one layer; a room
    /// full of subscribers joining at once must not make the publisher send nothing but
    /// keyframes.
    pub keyframe_request_interval: Micros,
    /// How often timers run (keyframe waits, reports, estimates).
    pub tick: Micros,
    /// Buffers for cross-worker handoff.
    pub handoff_buffers: usize,
    /// Reports, congestion feedback, estimates and layer choice.
    pub feedback: FeedbackConfig,
    /// Where ICE checks, DTLS records and consent expiry go. Sent without waiting: a
    /// full channel drops and counts (`events_dropped`), as does `None`.
    pub events: Option<crossbeam_channel::Sender<RouterEvent>>,
    /// A validated remote is forgotten after this long without a valid check (RFC 7675
    /// says 30 s).
    pub consent_timeout: Micros,
    /// STUN checks per second (and as many in a burst) this worker processes from
    /// remotes that are neither ICE-validated nor an established session's.
    pub handshake_rate: u32,
    /// STUN checks and DTLS records per second (and burst) from each validated remote.
    pub remote_handshake_rate: u32,
    /// Where requests for remote tracks' publishers go (keyframes, NACKs the cache
    /// cannot answer), and local publishers' audio loudness; with `None` nobody asks
    /// for loudness and none is measured. Sent without waiting: a full channel drops and counts
    /// (`events_dropped`), as does `None`.
    pub upstream: Option<crossbeam_channel::Sender<UpstreamEvent>>,
    /// A sequence number of a remote track is asked upstream at most once per interval
    /// (per worker), however many subscribers NACK it.
    pub nack_upstream_interval: Micros,
    /// The null-forwarder reference through the whole WebRTC stack, for benchmarks
    /// only: sessions, ICE, DTLS, subscriptions and RTCP stay as they are, but each RTP
    /// datagram of a local publisher is copied unchanged (not decrypted, rewritten or
    /// re-encrypted) to every session subscribed to any of its tracks, which cannot
    /// decrypt it. No layer choice, keyframe chasing or cascade forwarding of local
    /// publishers. Counted as `rtp_in` (per datagram) and `rtp_out` (per copy).
    pub null_media: bool,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            keyframe_request_interval: 500_000,
            tick: 50_000,
            handoff_buffers: 4096,
            feedback: FeedbackConfig::default(),
            events: None,
            consent_timeout: 30_000_000,
            handshake_rate: 2000,
            remote_handshake_rate: 200,
            upstream: None,
            nack_upstream_interval: 100_000,
            null_media: false,
        }
    }
}

#[derive(Debug)]
pub struct Router {
    worker: WorkerId,
    config: RouterConfig,
    sessions: Vec<Option<Session>>,
    free_sessions: Vec<SessionIdx>,
    session_by_addr: HashMap<SocketAddr, SessionIdx>,
    session_by_id: HashMap<SessionId, SessionIdx>,
    tracks: Vec<Option<Track>>,
    free_tracks: Vec<TrackIdx>,
    track_by_id: HashMap<TrackId, TrackIdx>,
    /// Remotes steered here whose sessions live on another worker (after a rebind).
    forwards: HashMap<SocketAddr, WorkerId>,
    /// Where a handed-off datagram is copied to be decrypted in place.
    scratch: Vec<u8>,
    pool: BytesPool,
    ice: Ice,
    /// Fan-out tables of null-media mode (empty otherwise).
    null: NullRoutes,
    stats: RouterStats,
    next_tick: Micros,
}

impl Router {
    pub fn new(worker: WorkerId, config: RouterConfig) -> Self {
        Self {
            worker,
            pool: BytesPool::new(config.handoff_buffers, SLOT_LEN),
            ice: Ice::new(IceConfig {
                worker,
                events: config.events.clone(),
                consent_timeout: config.consent_timeout,
                handshake_rate: config.handshake_rate,
                remote_handshake_rate: config.remote_handshake_rate,
            }),
            config,
            sessions: Vec::new(),
            free_sessions: Vec::new(),
            session_by_addr: HashMap::new(),
            session_by_id: HashMap::new(),
            tracks: Vec::new(),
            free_tracks: Vec::new(),
            track_by_id: HashMap::new(),
            forwards: HashMap::new(),
            scratch: vec![0; SLOT_LEN],
            null: NullRoutes::default(),
            stats: RouterStats::default(),
            next_tick: 0,
        }
    }

    pub fn stats(&self) -> &RouterStats {
        &self.stats
    }

    pub fn session_count(&self) -> usize {
        self.session_by_id.len()
    }

    /// The layer a subscription forwards now ([`NO_LAYER`] while it waits for a
    /// keyframe) and the one it is heading for.
    pub fn subscription_layers(&self, session: SessionId, track: TrackId) -> Option<(u8, u8)> {
        let sess = self.session(*self.session_by_id.get(&session)?)?;
        let ti = *self.track_by_id.get(&track)?;
        let sub = sess.subscriptions.iter().find(|s| s.track == ti)?;
        Some((sub.layer, sub.target))
    }

    fn session(&self, si: SessionIdx) -> Option<&Session> {
        self.sessions.get(si).and_then(Option::as_ref)
    }

    fn on_rtp(
        &mut self,
        now: Micros,
        from: SocketAddr,
        buf: &mut [u8],
        out: &mut Output<RouterHandoff>,
    ) {
        let Some(&si) = self.session_by_addr.get(&from) else {
            self.stats.drop_unknown_session += 1;
            return;
        };
        let Some(sess) = self.sessions.get_mut(si).and_then(Option::as_mut) else {
            return;
        };
        let mut len = match sess.srtp_in.unprotect_rtp(buf) {
            Ok(n) => n,
            Err(e) => {
                self.count_srtp_error(e);
                return;
            }
        };
        let Ok(hdr) = RtpPacket::parse(&buf[..len]) else {
            self.stats.drop_malformed += 1;
            return;
        };
        self.stats.rtp_in += 1;
        let (ssrc, payload_empty) = (hdr.ssrc(), hdr.payload().is_empty());
        let (seq, rtp_ts) = (hdr.sequence_number(), hdr.timestamp());
        let known = match hdr.has_extension() {
            true => hdr.known_extensions(&sess.extensions).ok(),
            false => None,
        };
        let audio_level = known.and_then(|k| k.audio_level).map(|a| a.level);
        if let (Some(twcc), Some(tseq)) = (
            sess.feedback.twcc_in.as_mut(),
            known.and_then(|k| k.transport_cc),
        ) {
            twcc.on_packet(tseq, now, ssrc);
        }
        let rid = known.and_then(|e| {
            e.rid
                .map(|r| (r, false))
                .or(e.repaired_rid.map(|r| (r, true)))
        });
        let mut found = None;
        for &ti in &sess.publishes {
            if let Some((layer, rtx)) = self.tracks[ti].as_ref().and_then(|t| t.layer_of(ssrc)) {
                found = Some((ti, layer, rtx));
                break;
            }
        }
        if found.is_none()
            && let Some((rid, repair)) = rid
        {
            for &ti in &sess.publishes {
                if let Some(layer) = self.tracks[ti]
                    .as_mut()
                    .and_then(|t| t.learn_rid(rid, ssrc, repair))
                {
                    found = Some((ti, layer, repair));
                    break;
                }
            }
        }
        let Some((ti, layer, is_rtx)) = found else {
            self.stats.drop_unknown_ssrc += 1;
            return;
        };
        let Some(track) = self.tracks[ti].as_mut() else {
            return;
        };
        let layer_state = &mut track.layers[usize::from(layer)];
        layer_state.last_packet_at = Some(now);
        if !is_rtx {
            layer_state
                .recv
                .on_packet(now, seq, rtp_ts, track.clock_rate);
        }
        if payload_empty {
            // Padding-only: a bandwidth probe. Nothing to forward, but subscribers on this
            // layer must not see the hole it leaves in the numbering as loss.
            if !is_rtx {
                for &sub_si in &track.subscribers {
                    if let Some(sub) = self.sessions[sub_si]
                        .as_mut()
                        .and_then(|s| s.subscription_mut(ti))
                        && sub.layer == layer
                    {
                        sub.rewriter.skip(ssrc, seq);
                    }
                }
            }
            return;
        }
        if is_rtx {
            let Some(primary) = layer_state.ssrc else {
                self.stats.drop_unknown_ssrc += 1;
                return;
            };
            match rtx::unwrap(&mut buf[..len], primary, track.payload_type) {
                Ok(n) => len = n,
                Err(_) => {
                    self.stats.drop_malformed += 1;
                    return;
                }
            }
        }
        if !is_rtx
            && self.config.upstream.is_some()
            && let Some(level) = audio_level
            && let Some(loudness) = track.speech.on_packet(now, level)
        {
            let ev = UpstreamEvent::AudioLevel {
                track: track.id,
                loudness,
            };
            cascade::emit(self.config.upstream.as_ref(), ev, &mut self.stats);
        }
        let pkt = &buf[..len];
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
        if is_rtx && layer_state.cache.get(seq).is_some() {
            // Chromium pads probes with retransmissions of packets that already arrived;
            // forwarding them again would show subscribers duplicates, which their
            // transport feedback reports as loss.
            self.stats.drop_duplicate += 1;
            return;
        }
        let keyframe = RtpPacket::parse(pkt).is_ok_and(|p| is_keyframe(track.codec, p.payload()));
        layer_state.cache.insert(seq, pkt);
        layer_state.rate.add(now, len);
        self.fan_out(now, ti, layer, keyframe, pkt, None, out);
    }

    fn count_srtp_error(&mut self, e: SrtpError) {
        match e {
            SrtpError::AuthenticationFailed => self.stats.drop_srtp_auth += 1,
            SrtpError::Replayed | SrtpError::TooOld => self.stats.drop_replay += 1,
            _ => self.stats.drop_malformed += 1,
        }
    }

    /// Sends a plaintext publisher packet to every local subscriber of its layer, and
    /// (on the home worker) to other workers and nodes. `shared` is `pkt` when it is
    /// already refcounted (from a link), which workers and links then share as it is.
    #[allow(clippy::too_many_arguments)]
    fn fan_out(
        &mut self,
        now: Micros,
        ti: TrackIdx,
        layer: u8,
        keyframe: bool,
        pkt: &[u8],
        shared: Option<&Bytes>,
        out: &mut Output<RouterHandoff>,
    ) {
        let Self {
            tracks,
            sessions,
            stats,
            pool,
            worker,
            ..
        } = self;
        let Some(track) = tracks[ti].as_ref() else {
            return;
        };
        let payload_len = RtpPacket::parse(pkt).map_or(0, |p| p.payload().len());
        // Subscriptions mostly share one source id: find the element once.
        let mut twcc_cache: (u8, Option<usize>) = (0, None);
        for &si in &track.subscribers {
            let Some(sess) = sessions[si].as_mut() else {
                continue;
            };
            let Session {
                subscriptions,
                srtp_out,
                remote,
                feedback,
                ..
            } = sess;
            let Some(sub) = subscriptions.iter_mut().find(|s| s.track == ti) else {
                continue;
            };
            if sub.layer != layer {
                if sub.target != layer || !keyframe {
                    continue;
                }
                sub.layer = layer;
                stats.layer_switches += 1;
            }
            let id = sub.twcc_source;
            let twcc_at = match id {
                _ if id == 0 || feedback.twcc_out.is_none() => None,
                _ if twcc_cache.0 == id => twcc_cache.1,
                _ => {
                    twcc_cache = (id, feedback::twcc_offset(pkt, id));
                    twcc_cache.1
                }
            };
            let o = Outgoing {
                pkt,
                payload_len,
                twcc_at,
                retransmit: None,
            };
            forward(now, sub, srtp_out, feedback, *remote, o, out, stats);
        }
        let mut share = || shared.cloned().unwrap_or_else(|| pool.share(pkt));
        if track.home == *worker && !track.workers.is_empty() {
            let packet = share();
            for &(w, _) in &track.workers {
                out.handoffs.push((
                    w,
                    RouterHandoff::Media {
                        track: track.id,
                        layer,
                        keyframe,
                        packet: packet.clone(),
                    },
                ));
                stats.handoffs_out += 1;
            }
        }
        if track.home == *worker && track.links.iter().any(|&(_, l)| l == layer) {
            let packet = share();
            for &(node, l) in &track.links {
                if l == layer {
                    out.links.push(LinkPacket {
                        node,
                        track: track.id,
                        layer,
                        keyframe,
                        packet: packet.clone(),
                    });
                    stats.link_out += 1;
                }
            }
        }
    }

    fn on_rtcp(
        &mut self,
        now: Micros,
        from: SocketAddr,
        buf: &mut [u8],
        out: &mut Output<RouterHandoff>,
    ) {
        let Some(&si) = self.session_by_addr.get(&from) else {
            self.stats.drop_unknown_session += 1;
            return;
        };
        let Some(sess) = self.sessions.get_mut(si).and_then(Option::as_mut) else {
            return;
        };
        let len = match sess.srtp_in.unprotect_rtcp(buf) {
            Ok(n) => n,
            Err(e) => {
                self.count_srtp_error(e);
                return;
            }
        };
        self.stats.rtcp_in += 1;
        for packet in parse_compound(&buf[..len]) {
            match packet {
                Ok(RtcpPacket::Nack(n)) => self.on_nack(now, si, n.media_ssrc, n.lost(), out),
                Ok(RtcpPacket::Pli(p)) => self.on_keyframe_request(now, si, p.media_ssrc, out),
                Ok(RtcpPacket::Fir(f)) => {
                    for e in f.entries() {
                        self.on_keyframe_request(now, si, e.ssrc, out);
                    }
                }
                Ok(
                    p @ (RtcpPacket::SenderReport(_)
                    | RtcpPacket::ReceiverReport(_)
                    | RtcpPacket::Remb(_)
                    | RtcpPacket::TransportCc(_)),
                ) => self.on_feedback_rtcp(now, si, &p),
                Ok(_) => {}
                Err(_) => {
                    self.stats.drop_malformed += 1;
                    break;
                }
            }
        }
    }

    /// Answers a subscriber's NACK from the cache, as RTX when it negotiated RTX. What a
    /// remote track's cache misses is asked upstream.
    fn on_nack(
        &mut self,
        now: Micros,
        si: SessionIdx,
        media_ssrc: u32,
        lost: impl Iterator<Item = u16>,
        out: &mut Output<RouterHandoff>,
    ) {
        let Self {
            tracks,
            sessions,
            stats,
            config,
            ..
        } = self;
        let Some(Session {
            subscriptions,
            srtp_out,
            remote,
            feedback,
            ..
        }) = sessions[si].as_mut()
        else {
            return;
        };
        let Some(sub) = subscriptions.iter_mut().find(|s| s.ssrc == media_ssrc) else {
            return;
        };
        let Some(track) = tracks[sub.track].as_mut() else {
            return;
        };
        let mut upstream = cascade::UpstreamNack::default();
        for out_seq in lost {
            let original = sub
                .rewriter
                .original(out_seq)
                .and_then(|(ssrc, seq)| Some((track.layer_of(ssrc)?.0, seq)));
            let cached =
                original.and_then(|(layer, seq)| track.layers[usize::from(layer)].cache.get(seq));
            match cached {
                Some(pkt) => {
                    let id = sub.twcc_source;
                    let o = Outgoing {
                        pkt,
                        payload_len: RtpPacket::parse(pkt).map_or(0, |p| p.payload().len()),
                        twcc_at: (id != 0 && feedback.twcc_out.is_some())
                            .then(|| feedback::twcc_offset(pkt, id))
                            .flatten(),
                        retransmit: Some(out_seq),
                    };
                    if forward(now, sub, srtp_out, feedback, *remote, o, out, stats) {
                        stats.retransmits += 1;
                    }
                }
                None => {
                    stats.nack_miss += 1;
                    if let Some((layer, seq)) = original.filter(|_| track.remote)
                        && track.layers[usize::from(layer)].nack_upstream.admit(
                            now,
                            seq,
                            config.nack_upstream_interval,
                        )
                    {
                        upstream.push(track.id, layer, seq, config.upstream.as_ref(), stats);
                    }
                }
            }
        }
        upstream.flush(track.id, config.upstream.as_ref(), stats);
    }

    fn on_keyframe_request(
        &mut self,
        now: Micros,
        si: SessionIdx,
        media_ssrc: u32,
        out: &mut Output<RouterHandoff>,
    ) {
        let Some(sess) = self.sessions.get_mut(si).and_then(Option::as_mut) else {
            return;
        };
        let Some(sub) = sess.subscription_by_ssrc(media_ssrc) else {
            return;
        };
        let layer = if sub.layer == NO_LAYER {
            sub.target
        } else {
            sub.layer
        };
        let ti = sub.track;
        self.request_keyframe(now, ti, layer, out);
    }

    /// Asks the publisher for a keyframe of `layer`, at most once per interval.
    fn request_keyframe(
        &mut self,
        now: Micros,
        ti: TrackIdx,
        layer: u8,
        out: &mut Output<RouterHandoff>,
    ) {
        let interval = self.config.keyframe_request_interval;
        let Some(track) = self.tracks.get_mut(ti).and_then(Option::as_mut) else {
            return;
        };
        let Some(l) = track.layers.get_mut(usize::from(layer)) else {
            return;
        };
        if l.last_keyframe_request
            .is_some_and(|t| now.saturating_sub(t) < interval)
        {
            return;
        }
        l.last_keyframe_request = Some(now);
        if track.home != self.worker {
            out.handoffs.push((
                track.home,
                RouterHandoff::KeyframeRequest {
                    track: track.id,
                    layer,
                },
            ));
            return;
        }
        if track.remote {
            self.keyframe_upstream(ti, layer);
            return;
        }
        let (Some(psi), Some(media_ssrc)) = (track.publisher, l.ssrc) else {
            return;
        };
        let Some(publisher) = self.sessions[psi].as_mut() else {
            return;
        };
        let sender = publisher.rtcp_ssrc;
        let srtp = &mut publisher.srtp_out;
        if send_rtcp(&mut out.egress, publisher.remote, srtp, |w| {
            w.pli(sender, media_ssrc).ok()
        }) {
            self.stats.keyframe_requests += 1;
            self.stats.rtcp_out += 1;
        }
    }

    fn add_session(&mut self, now: Micros, config: &SessionConfig) {
        if self.session_by_id.contains_key(&config.id) {
            self.remove_session(config.id, &mut None);
        }
        let Ok(mut session) = Session::new(config) else {
            self.stats.drop_malformed += 1;
            return;
        };
        session.feedback = SessionFeedback::new(now, &self.config.feedback);
        let si = match self.free_sessions.pop() {
            Some(i) => {
                self.sessions[i] = Some(session);
                i
            }
            None => {
                self.sessions.push(Some(session));
                self.sessions.len() - 1
            }
        };
        self.session_by_id.insert(config.id, si);
        self.session_by_addr.insert(config.remote, si);
    }

    fn rebind_session(&mut self, id: SessionId, remote: SocketAddr) {
        let Some(&si) = self.session_by_id.get(&id) else {
            return;
        };
        let Some(sess) = self.sessions[si].as_mut() else {
            return;
        };
        if self.session_by_addr.get(&sess.remote) == Some(&si) {
            self.session_by_addr.remove(&sess.remote);
        }
        sess.remote = remote;
        self.session_by_addr.insert(remote, si);
    }

    /// Hands an RTP/RTCP datagram from a forwarded remote to its session's worker.
    /// Returns false when `from` is not forwarded.
    fn hand_off_datagram(
        &mut self,
        from: SocketAddr,
        buf: &[u8],
        out: &mut Output<RouterHandoff>,
    ) -> bool {
        let Some(&worker) = self.forwards.get(&from) else {
            return false;
        };
        let packet = self.pool.share(buf);
        out.handoffs
            .push((worker, RouterHandoff::Datagram { from, packet }));
        self.stats.remote_handoffs_out += 1;
        true
    }

    /// A datagram another worker received for one of our sessions: handled as if it had
    /// arrived here, never passed on again.
    fn on_handed_datagram(
        &mut self,
        now: Micros,
        from: SocketAddr,
        packet: &[u8],
        out: &mut Output<RouterHandoff>,
    ) {
        self.stats.remote_handoffs_in += 1;
        if self.config.null_media
            && classify(packet) == PacketKind::Rtp
            && self
                .null
                .forward(from, packet, &mut self.pool, out, &mut self.stats)
        {
            return;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        match scratch.get_mut(..packet.len()) {
            Some(buf) => {
                buf.copy_from_slice(packet);
                match classify(buf) {
                    PacketKind::Rtp => self.on_rtp(now, from, buf, out),
                    PacketKind::Rtcp => self.on_rtcp(now, from, buf, out),
                    _ => self.stats.drop_malformed += 1,
                }
            }
            None => self.stats.drop_malformed += 1,
        }
        self.scratch = scratch;
    }

    fn remove_session(&mut self, id: SessionId, out: &mut Option<&mut Output<RouterHandoff>>) {
        let Some(si) = self.session_by_id.remove(&id) else {
            return;
        };
        let Some(sess) = self.sessions[si].take() else {
            return;
        };
        if self.session_by_addr.get(&sess.remote) == Some(&si) {
            self.session_by_addr.remove(&sess.remote);
        }
        for sub in &sess.subscriptions {
            self.detach_subscriber(si, sub.track, out);
        }
        for &ti in &sess.publishes {
            if let Some(t) = self.tracks[ti].as_mut() {
                t.publisher = None;
            }
        }
        self.free_sessions.push(si);
    }

    fn detach_subscriber(
        &mut self,
        si: SessionIdx,
        ti: TrackIdx,
        out: &mut Option<&mut Output<RouterHandoff>>,
    ) {
        let Some(track) = self.tracks[ti].as_mut() else {
            return;
        };
        track.subscribers.retain(|&s| s != si);
        if track.home != self.worker
            && let Some(out) = out
        {
            out.handoffs.push((
                track.home,
                RouterHandoff::Interest {
                    track: track.id,
                    worker: self.worker,
                    subscribed: false,
                },
            ));
        }
    }

    /// A `remote` track's publisher lives on another node: `config.publisher` is no
    /// session of ours, whatever its value.
    fn add_track(&mut self, config: &TrackConfig, remote: bool) {
        if self.track_by_id.contains_key(&config.id) || config.layers.is_empty() {
            return;
        }
        let publisher = (config.home == self.worker && !remote)
            .then(|| self.session_by_id.get(&config.publisher).copied())
            .flatten();
        let track = Track::new(config, publisher, remote);
        let ti = match self.free_tracks.pop() {
            Some(i) => {
                self.tracks[i] = Some(track);
                i
            }
            None => {
                self.tracks.push(Some(track));
                self.tracks.len() - 1
            }
        };
        self.track_by_id.insert(config.id, ti);
        if let Some(s) = publisher.and_then(|p| self.sessions[p].as_mut()) {
            s.publishes.push(ti);
            if s.extensions.transport_cc != 0 && s.feedback.twcc_in.is_none() {
                s.feedback.twcc_in = Some(TwccReceiver::default());
            }
        }
    }

    fn remove_track(&mut self, id: TrackId) {
        let Some(ti) = self.track_by_id.remove(&id) else {
            return;
        };
        let Some(track) = self.tracks[ti].take() else {
            return;
        };
        if let Some(s) = track.publisher.and_then(|p| self.sessions[p].as_mut()) {
            s.publishes.retain(|&t| t != ti);
        }
        for si in track.subscribers {
            if let Some(s) = self.sessions[si].as_mut() {
                s.subscriptions.retain(|sub| sub.track != ti);
            }
        }
        self.free_tracks.push(ti);
    }

    fn subscribe(&mut self, now: Micros, c: &SubscribeConfig, out: &mut Output<RouterHandoff>) {
        let (Some(&si), Some(&ti)) = (
            self.session_by_id.get(&c.session),
            self.track_by_id.get(&c.track),
        ) else {
            return;
        };
        let (Some(sess), Some(track)) = (self.sessions[si].as_mut(), self.tracks[ti].as_mut())
        else {
            return;
        };
        if sess.subscriptions.iter().any(|s| s.track == ti) {
            return;
        }
        let target = c.layer.min(track.layers.len().saturating_sub(1) as u8);
        let twcc_id = sess.extensions.transport_cc;
        sess.subscriptions.push(Subscription {
            track: ti,
            ssrc: c.ssrc,
            payload_type: c.payload_type,
            rtx: c
                .rtx
                .map(|(ssrc, pt)| (ssrc, pt, c.initial_seq.wrapping_add(0x8000))),
            rewriter: RtpRewriter::new(
                c.ssrc,
                track.clock_rate,
                c.initial_seq,
                c.initial_ts,
                track.codec == Codec::Vp8,
            ),
            layer: NO_LAYER,
            target,
            pinned: c.pinned,
            fb: SubscriptionFeedback::default(),
            twcc_source: c
                .ext_remap
                .as_deref()
                .map_or(twcc_id, |m| extmap::source_id(m, twcc_id)),
            ext_remap: c.ext_remap.clone(),
        });
        if sess.extensions.transport_cc != 0 && sess.feedback.twcc_out.is_none() {
            sess.feedback.twcc_out = Some(TwccSender::default());
        }
        track.subscribers.push(si);
        if track.home != self.worker {
            out.handoffs.push((
                track.home,
                RouterHandoff::Interest {
                    track: track.id,
                    worker: self.worker,
                    subscribed: true,
                },
            ));
        }
        self.request_keyframe(now, ti, target, out);
    }

    fn unsubscribe(&mut self, session: SessionId, track: TrackId, out: &mut Output<RouterHandoff>) {
        let (Some(&si), Some(&ti)) = (
            self.session_by_id.get(&session),
            self.track_by_id.get(&track),
        ) else {
            return;
        };
        let Some(sess) = self.sessions[si].as_mut() else {
            return;
        };
        let before = sess.subscriptions.len();
        sess.subscriptions.retain(|s| s.track != ti);
        if sess.subscriptions.len() != before {
            self.detach_subscriber(si, ti, &mut Some(out));
        }
    }

    fn set_layer(
        &mut self,
        now: Micros,
        session: SessionId,
        track: TrackId,
        layer: Option<u8>,
        out: &mut Output<RouterHandoff>,
    ) {
        let (Some(&si), Some(&ti)) = (
            self.session_by_id.get(&session),
            self.track_by_id.get(&track),
        ) else {
            return;
        };
        let layers = self.tracks[ti].as_ref().map_or(0, |t| t.layers.len());
        let Some(sub) = self.sessions[si]
            .as_mut()
            .and_then(|s| s.subscription_mut(ti))
        else {
            return;
        };
        sub.pinned = layer.is_some();
        sub.fb.up_since = None;
        if let Some(l) = layer {
            sub.target = l.min(layers.saturating_sub(1) as u8);
            if sub.target != sub.layer {
                let target = sub.target;
                self.request_keyframe(now, ti, target, out);
            }
        }
    }

    /// Subscribers waiting for a keyframe of their target layer keep asking (throttled),
    /// since the first request or the keyframe itself may have been lost.
    fn chase_keyframes(&mut self, now: Micros, out: &mut Output<RouterHandoff>) {
        for si in 0..self.sessions.len() {
            let Some(sess) = self.sessions[si].as_ref() else {
                continue;
            };
            for i in 0..sess.subscriptions.len() {
                let Some(sub) = self.sessions[si]
                    .as_ref()
                    .and_then(|s| s.subscriptions.get(i))
                else {
                    break;
                };
                if sub.layer != sub.target {
                    let (ti, target) = (sub.track, sub.target);
                    self.request_keyframe(now, ti, target, out);
                }
            }
        }
    }
}

/// Room an egress slot keeps after the RTCP for the SRTCP trailer (tag and index).
const SRTCP_ROOM: usize = 32;

/// Writes one compound RTCP datagram for `dest` into an egress slot with `write` and
/// protects it in place. A write that fails or writes nothing queues nothing. Returns
/// whether a datagram was queued.
fn send_rtcp(
    egress: &mut Egress,
    dest: SocketAddr,
    srtp: &mut SrtpContext,
    write: impl FnOnce(&mut RtcpWriter) -> Option<()>,
) -> bool {
    egress
        .push(dest, |slot| {
            let n = {
                let mut w = RtcpWriter::new(&mut slot[..SLOT_LEN - SRTCP_ROOM]);
                write(&mut w)?;
                w.finish()
            };
            if n == 0 {
                return None;
            }
            srtp.protect_rtcp(slot, n).ok()
        })
        .is_some()
}

/// One packet on its way to a subscriber.
#[derive(Debug, Clone, Copy)]
struct Outgoing<'a> {
    /// Plaintext, as the publisher sent it.
    pkt: &'a [u8],
    payload_len: usize,
    /// Where the transport-wide sequence number lies, when the subscriber's session
    /// gets our own numbering.
    twcc_at: Option<usize>,
    /// The sequence number a NACK asked for: the copy must map to exactly it, and goes
    /// out as RTX when the subscriber negotiated it.
    retransmit: Option<u16>,
}

/// Copies, rewrites, stamps, encrypts and queues one packet for one subscriber, and
/// counts it for the sender reports and the estimate. Returns whether a datagram was
/// queued.
#[allow(clippy::too_many_arguments)]
fn forward(
    now: Micros,
    sub: &mut Subscription,
    srtp: &mut SrtpContext,
    fb: &mut SessionFeedback,
    dest: SocketAddr,
    o: Outgoing<'_>,
    out: &mut Output<RouterHandoff>,
    stats: &mut RouterStats,
) -> bool {
    let (pkt, retransmit) = (o.pkt, o.retransmit);
    let len = pkt.len();
    let mut stale = false;
    let mut out_ts = 0;
    let twcc_seq = o
        .twcc_at
        .and(fb.twcc_out.as_ref())
        .map(TwccSender::next_seq);
    let queued = out.egress.push(dest, |slot| {
        // Room for RTX's two bytes and the SRTP tag.
        if len + 2 + 16 > SLOT_LEN {
            return None;
        }
        slot[..len].copy_from_slice(pkt);
        if let Some(map) = &sub.ext_remap {
            extmap::remap(&mut slot[..len], map);
        }
        match sub.rewriter.rewrite(now, &mut slot[..len]) {
            Ok(Rewrite::Forward { seq, timestamp })
                if retransmit.is_none_or(|want| want == seq) =>
            {
                out_ts = timestamp;
            }
            Ok(_) => {
                stale = true;
                return None;
            }
            Err(_) => return None,
        }
        slot[1] = (slot[1] & 0x80) | sub.payload_type;
        if let (Some(at), Some(tseq)) = (o.twcc_at, twcc_seq)
            && let Some(field) = slot.get_mut(at..at + 2)
        {
            field.copy_from_slice(&tseq.to_be_bytes());
        }
        let mut n = len;
        if retransmit.is_some()
            && let Some((ssrc, pt, seq)) = &mut sub.rtx
        {
            n = rtx::wrap(slot, len, *ssrc, *pt, *seq).ok()?;
            *seq = seq.wrapping_add(1);
        }
        srtp.protect_rtp(slot, n).ok()
    });
    match queued {
        Some(size) => {
            stats.rtp_out += 1;
            fb.on_sent(now, twcc_seq, size);
            // A retransmission on the RTX SSRC is not the primary stream's to count.
            match retransmit {
                None => sub.fb.sent.on_sent(now, Some(out_ts), o.payload_len),
                Some(_) if sub.rtx.is_none() => sub.fb.sent.on_sent(now, None, o.payload_len),
                Some(_) => {}
            }
        }
        None if stale => stats.drop_stale += 1,
        None => stats.drop_egress += 1,
    }
    queued.is_some()
}

impl PacketHandler for Router {
    type Command = RouterCommand;
    type Handoff = RouterHandoff;

    fn handle_datagram(
        &mut self,
        now: Micros,
        from: SocketAddr,
        buf: &mut [u8],
        out: &mut Output<RouterHandoff>,
    ) {
        match classify(buf) {
            kind @ (PacketKind::Rtp | PacketKind::Rtcp) => {
                if kind == PacketKind::Rtp
                    && self.config.null_media
                    && self
                        .null
                        .forward(from, buf, &mut self.pool, out, &mut self.stats)
                {
                    return;
                }
                if !self.session_by_addr.contains_key(&from)
                    && self.hand_off_datagram(from, buf, out)
                {
                    return;
                }
                match kind {
                    PacketKind::Rtp => self.on_rtp(now, from, buf, out),
                    _ => self.on_rtcp(now, from, buf, out),
                }
            }
            PacketKind::Stun => {
                let established =
                    self.session_by_addr.contains_key(&from) || self.forwards.contains_key(&from);
                let (egress, stats) = (&mut out.egress, &mut self.stats);
                self.ice.on_stun(now, from, buf, established, egress, stats);
            }
            PacketKind::Dtls => self.ice.on_dtls(now, from, buf, &mut self.stats),
            PacketKind::Unknown => self.stats.drop_malformed += 1,
        }
    }

    fn handle_handoff(&mut self, now: Micros, msg: RouterHandoff, out: &mut Output<RouterHandoff>) {
        match msg {
            RouterHandoff::Media {
                track,
                layer,
                keyframe,
                packet,
            } => {
                let Some(&ti) = self.track_by_id.get(&track) else {
                    return;
                };
                if let Some(l) = self.tracks[ti]
                    .as_mut()
                    .and_then(|t| t.layers.get_mut(usize::from(layer)))
                    && packet.len() >= 12
                {
                    // Only the home worker sees rids; the SSRC a simulcast layer was learned
                    // under reaches this worker with its packets, and NACKs need it here.
                    l.ssrc = Some(u32::from_be_bytes([
                        packet[8], packet[9], packet[10], packet[11],
                    ]));
                    l.cache
                        .insert(u16::from_be_bytes([packet[2], packet[3]]), &packet);
                    l.last_packet_at = Some(now);
                    l.rate.add(now, packet.len());
                }
                self.fan_out(now, ti, layer, keyframe, &packet, None, out);
            }
            RouterHandoff::Interest {
                track,
                worker,
                subscribed,
            } => {
                if let Some(t) = self
                    .track_by_id
                    .get(&track)
                    .and_then(|&ti| self.tracks[ti].as_mut())
                {
                    if subscribed {
                        t.add_worker(worker);
                    } else {
                        t.remove_worker(worker);
                    }
                }
                if let Some(p) = self
                    .null_publisher_of(track)
                    .filter(|_| self.config.null_media)
                {
                    self.null_refresh(&[p]);
                }
            }
            RouterHandoff::KeyframeRequest { track, layer } => {
                if let Some(&ti) = self.track_by_id.get(&track) {
                    self.request_keyframe(now, ti, layer, out);
                }
            }
            RouterHandoff::Datagram { from, packet } => {
                self.on_handed_datagram(now, from, &packet, out);
            }
            RouterHandoff::NullMedia { publisher, packet } => {
                self.null
                    .forward_handed(publisher, &packet, out, &mut self.stats);
            }
        }
    }

    fn handle_command(&mut self, now: Micros, cmd: RouterCommand, out: &mut Output<RouterHandoff>) {
        let touched = match self.config.null_media {
            true => self.null_touched(&cmd),
            false => Vec::new(),
        };
        self.command(now, cmd, out);
        if !touched.is_empty() {
            self.null_refresh(&touched);
        }
    }

    fn handle_timeout(&mut self, now: Micros, out: &mut Output<RouterHandoff>) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + self.config.tick;
        // In null-media mode no subscriber ever gets a layer to choose or a keyframe to
        // wait for.
        if !self.config.null_media {
            // Targets first, so that a new one asks for its keyframe in this same tick.
            self.choose_layers(now);
            self.chase_keyframes(now, out);
        }
        self.send_feedback(now, out);
        self.ice.expire(now, &mut self.stats);
    }

    fn poll_timeout(&self) -> Option<Micros> {
        Some(self.next_tick)
    }
}

impl Router {
    fn command(&mut self, now: Micros, cmd: RouterCommand, out: &mut Output<RouterHandoff>) {
        match cmd {
            RouterCommand::AddSession(c) => self.add_session(now, &c),
            RouterCommand::RemoveSession(id) => self.remove_session(id, &mut Some(out)),
            RouterCommand::AddTrack(c) => self.add_track(&c, false),
            RouterCommand::AddRemoteTrack(c) => self.add_track(&c, true),
            RouterCommand::RemoveTrack(id) => self.remove_track(id),
            RouterCommand::Subscribe(c) => self.subscribe(now, &c, out),
            RouterCommand::Unsubscribe { session, track } => self.unsubscribe(session, track, out),
            RouterCommand::SetLayer {
                session,
                track,
                layer,
            } => self.set_layer(now, session, track, layer, out),
            RouterCommand::LinkSubscribe { track, node, layer } => {
                if let Some(t) = self
                    .track_by_id
                    .get(&track)
                    .and_then(|&ti| self.tracks[ti].as_mut())
                    && !t.links.contains(&(node, layer))
                {
                    t.links.push((node, layer));
                }
            }
            RouterCommand::LinkUnsubscribe { track, node, layer } => {
                if let Some(t) = self
                    .track_by_id
                    .get(&track)
                    .and_then(|&ti| self.tracks[ti].as_mut())
                {
                    t.links.retain(|&l| l != (node, layer));
                }
            }
            RouterCommand::LinkMedia {
                track,
                layer,
                keyframe,
                packet,
            } => self.on_link_media(now, track, layer, keyframe, packet, out),
            RouterCommand::LinkNack {
                track,
                node,
                layer,
                seqs,
            } => self.on_link_nack(track, node, layer, &seqs, out),
            RouterCommand::RequestKeyframe { track, layer } => {
                if let Some(&ti) = self.track_by_id.get(&track) {
                    self.request_keyframe(now, ti, layer, out);
                }
            }
            RouterCommand::AddIce(c) => self.ice.add(&c),
            RouterCommand::RemoveIce(id) => self.ice.remove(id),
            RouterCommand::SendRaw { dest, packet } => {
                if out.egress.push_copy(dest, &packet) {
                    self.stats.raw_out += 1;
                } else {
                    self.stats.drop_egress += 1;
                }
            }
            RouterCommand::Snapshot(reply) => {
                // The asker may have given up waiting; nothing to do then.
                let _ = reply.try_send(self.stats);
            }
            RouterCommand::RebindSession { session, remote } => {
                self.rebind_session(session, remote);
            }
            // A remote steered to its session's own worker needs no forwarding.
            RouterCommand::ForwardRemote { remote, worker } if worker != self.worker => {
                self.forwards.insert(remote, worker);
            }
            RouterCommand::ForwardRemote { remote, .. }
            | RouterCommand::UnforwardRemote { remote } => {
                self.forwards.remove(&remote);
            }
        }
    }
}

#[cfg(test)]
mod tests;
