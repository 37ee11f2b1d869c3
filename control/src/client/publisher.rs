//! A WHIP publisher: Opus-like audio and VP8 video (optionally three simulcast layers),
//! SRTP-protected, with sender reports, and NACKs answered from a short history.

use super::answer::Answer;
use super::hangup::Hangup;
use super::http::Signaling;
use super::ice::{IceState, IceStats};
use super::offer::{
    EXT_AUDIO_LEVEL, EXT_MID, EXT_RID, EXT_TRANSPORT_CC, MID_AUDIO, MID_VIDEO, OfferDirection,
    OfferSpec, PT_OPUS, PT_VP8, SIMULCAST_RIDS, URI_AUDIO_LEVEL, URI_MID, URI_RID,
    URI_TRANSPORT_CC,
};
use super::rtp::{RtpStream, StreamExtensions, vp8_continuation, vp8_payload};
use super::stats::RtcpCounts;
use super::tasks::Tasks;
use super::transport::{self, Roles, Transport};
use super::{ClientError, ClientOptions, Credentials, ntp_now};
use bytes::Bytes;
use sluice_dataplane::demux::{PacketKind, classify};
use sluice_dataplane::rtcp::RtcpWriter;
use sluice_dataplane::srtp::SrtpContext;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Packets kept per SSRC for answering NACKs (about 2 s of 30 fps video per layer).
const HISTORY: usize = 512;
/// RTP timestamp steps: 20 ms of 48 kHz audio, one 30 fps frame of 90 kHz video.
const AUDIO_TS_STEP: u32 = 960;
const VIDEO_TS_STEP: u32 = 3000;

/// What a publisher sent on one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentStream {
    pub ssrc: u32,
    /// "audio" or "video".
    pub kind: &'static str,
    pub rid: Option<String>,
    pub packets: u64,
    pub payload_bytes: u64,
    pub keyframes: u64,
    /// Sequence number of the next packet.
    pub next_seq: u16,
}

#[derive(Debug, Clone, Default)]
pub struct PublisherStats {
    pub streams: Vec<SentStream>,
    /// RTCP the node sent us (receiver reports, PLI, NACK, REMB, TWCC feedback...).
    pub rtcp: RtcpCounts,
    /// Packets resent in answer to a NACK.
    pub retransmitted: u64,
    /// SRTCP from the node that failed to authenticate.
    pub srtcp_errors: u64,
    pub ice: IceStats,
    pub ice_state: Option<IceState>,
    pub dropped_datagrams: u64,
    /// Our address as the node saw it (from its ICE responses).
    pub mapped_address: Option<std::net::SocketAddr>,
}

struct State {
    outbound: SrtpContext,
    audio: Option<RtpStream>,
    video: Vec<RtpStream>,
    picture_ids: Vec<u16>,
    transport_seq: u16,
    history: HashMap<u32, VecDeque<Vec<u8>>>,
    stats: PublisherStats,
}

impl State {
    /// Protects a copy of `plain` for sending.
    fn protect(&mut self, plain: &[u8]) -> Result<Vec<u8>, ClientError> {
        let mut buf = plain.to_vec();
        buf.resize(plain.len() + self.outbound.profile().rtp_overhead(), 0);
        let n = self
            .outbound
            .protect_rtp(&mut buf, plain.len())
            .map_err(|e| ClientError::Srtp(e.to_string()))?;
        buf.truncate(n);
        Ok(buf)
    }

    fn remember(&mut self, ssrc: u32, plain: Vec<u8>) {
        let h = self.history.entry(ssrc).or_default();
        if h.len() >= HISTORY {
            h.pop_front();
        }
        h.push_back(plain);
    }

    fn stream_stats(&mut self, ssrc: u32) -> Option<&mut SentStream> {
        self.stats.streams.iter_mut().find(|s| s.ssrc == ssrc)
    }
}

/// Our offer to publish, written before signaling: the bound socket and credentials it
/// names, and its SSRCs.
pub(super) struct PublishOffer {
    creds: Credentials,
    bound: transport::Bound,
    audio_ssrc: Option<u32>,
    video_ssrcs: Vec<u32>,
    pub sdp: String,
}

impl PublishOffer {
    pub(super) async fn new(opts: &ClientOptions) -> Result<Self, ClientError> {
        if !opts.audio && !opts.video {
            return Err(ClientError::Options("publish needs audio or video".into()));
        }
        let creds = Credentials::generate(opts)?;
        let bound = transport::bind(opts.bind).await?;
        let audio_ssrc = opts.audio.then(rand::random::<u32>);
        let video_ssrcs: Vec<u32> = if !opts.video {
            Vec::new()
        } else if opts.simulcast {
            (0..SIMULCAST_RIDS.len()).map(|_| rand::random()).collect()
        } else {
            vec![rand::random()]
        };
        let sdp = OfferSpec {
            ice_ufrag: creds.ufrag.clone(),
            ice_pwd: creds.pwd.clone(),
            fingerprint_sha256: creds.announced_fingerprint(opts),
            direction: OfferDirection::SendOnly,
            candidate: bound.local,
            cname: creds.cname.clone(),
            audio: audio_ssrc,
            video: video_ssrcs.first().copied(),
            simulcast: opts.simulcast,
        }
        .to_sdp();
        Ok(Self {
            creds,
            bound,
            audio_ssrc,
            video_ssrcs,
            sdp,
        })
    }
}

/// A publishing session. Dropping it stops the media without telling the server; call
/// [`Publisher::close`] to end it there too.
pub struct Publisher {
    /// The server's publisher id, for subscribers to name: the node's `X-Publisher-Id`,
    /// or the Janus VideoRoom feed id.
    pub id: String,
    /// The WHIP resource URL (with Janus: the handle's URL).
    pub location: String,
    pub answer: Answer,
    hangup: Hangup,
    transport: Transport,
    state: Arc<Mutex<State>>,
    tasks: Tasks,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("id", &self.id)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Publisher {
    pub(super) async fn start(
        base_url: &str,
        room: &str,
        opts: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let offer = PublishOffer::new(opts).await?;
        let signaling = Signaling::new(opts.token.clone()).with_region(opts.region.clone());
        let url = Signaling::url(base_url, &["whip", room])?;
        let posted = signaling.post_offer(url, offer.sdp.clone()).await?;
        let hangup = Hangup::Whip {
            signaling,
            location: posted.location.clone(),
        };
        Self::connect(
            offer,
            &posted.answer,
            posted.publisher_id.unwrap_or_default(),
            posted.location,
            hangup,
            opts,
        )
        .await
    }

    /// Brings up the session `offer` started, given the server's answer: ICE, DTLS,
    /// then media on the extensions and payload types the answer accepted.
    pub(super) async fn connect(
        offer: PublishOffer,
        answer_sdp: &str,
        id: String,
        location: String,
        hangup: Hangup,
        opts: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let PublishOffer {
            creds,
            bound,
            audio_ssrc,
            video_ssrcs,
            ..
        } = offer;
        let answer = Answer::parse(answer_sdp)?;
        let established = Transport::establish(
            bound,
            &answer,
            &creds,
            Roles::offerer(&answer),
            opts.timeout,
            opts.dtls_retransmit,
        )
        .await?;
        let keys = established.keys;

        let ext_for = |mid: &str, rid: Option<&str>| {
            let section = answer.section(mid);
            let id = |uri: &str, ours: u8| {
                section
                    .and_then(|s| s.extmap_id(uri))
                    .filter(|&id| id == ours)
            };
            StreamExtensions {
                mid: id(URI_MID, EXT_MID).map(|i| (i, mid.as_bytes().to_vec())),
                rid: rid.and_then(|r| id(URI_RID, EXT_RID).map(|i| (i, r.as_bytes().to_vec()))),
                transport_cc: id(URI_TRANSPORT_CC, EXT_TRANSPORT_CC),
                audio_level: (mid == MID_AUDIO)
                    .then(|| id(URI_AUDIO_LEVEL, EXT_AUDIO_LEVEL))
                    .flatten(),
            }
        };
        let accepted = |mid: &str| answer.section(mid).is_some_and(|s| !s.is_rejected());
        let mut stats = PublisherStats::default();
        let audio = match audio_ssrc {
            Some(ssrc) if accepted(MID_AUDIO) => {
                let pt = answer
                    .section(MID_AUDIO)
                    .and_then(|s| s.payload_type("opus"))
                    .unwrap_or(PT_OPUS);
                stats.streams.push(SentStream {
                    ssrc,
                    kind: "audio",
                    ..SentStream::default()
                });
                Some(RtpStream::new(ssrc, pt, ext_for(MID_AUDIO, None)))
            }
            _ => None,
        };
        let mut video = Vec::new();
        if accepted(MID_VIDEO) {
            let pt = answer
                .section(MID_VIDEO)
                .and_then(|s| s.payload_type("VP8"))
                .unwrap_or(PT_VP8);
            for (i, &ssrc) in video_ssrcs.iter().enumerate() {
                let rid = opts.simulcast.then(|| SIMULCAST_RIDS[i]);
                video.push(RtpStream::new(ssrc, pt, ext_for(MID_VIDEO, rid)));
                stats.streams.push(SentStream {
                    ssrc,
                    kind: "video",
                    rid: rid.map(str::to_owned),
                    ..SentStream::default()
                });
            }
        }
        for s in audio.iter().chain(&video) {
            if let Some(st) = stats.streams.iter_mut().find(|x| x.ssrc == s.ssrc) {
                st.next_seq = s.seq;
            }
        }
        let srtp = |k: &sluice_dataplane::router::SrtpKeys| {
            SrtpContext::new(k.profile, &k.key, &k.salt)
                .map_err(|e| ClientError::Srtp(e.to_string()))
        };
        let state = Arc::new(Mutex::new(State {
            outbound: srtp(&keys.outbound)?,
            audio,
            picture_ids: vec![rand::random::<u16>() & 0x7fff; video.len()],
            video,
            transport_seq: 0,
            history: HashMap::new(),
            stats,
        }));
        let transport = established.transport;
        let inbound = srtp(&keys.inbound)?;
        // Retransmissions and reports come from background tasks; a channel hands them to
        // one sender task on the media socket.
        let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(1024);
        let tasks = vec![
            tokio::spawn(feedback_loop(
                established.media,
                inbound,
                Arc::clone(&state),
                out_tx.clone(),
            )),
            tokio::spawn(report_loop(Arc::clone(&state), out_tx, opts.rtcp_interval)),
        ];
        let mut publisher = Self {
            id,
            location,
            answer,
            hangup,
            transport,
            state,
            tasks: tasks.into(),
        };
        publisher.tasks.push(publisher.spawn_sender(out_rx));
        Ok(publisher)
    }

    fn spawn_sender(&self, mut rx: mpsc::Receiver<Vec<u8>>) -> JoinHandle<()> {
        let socket = self.transport.socket_handle();
        let remote = self.transport.remote();
        tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                let _ = socket.send_to(&d, remote).await;
            }
        })
    }

    /// The SSRCs: audio first (if any), then video layers lowest first.
    pub fn ssrcs(&self) -> Vec<u32> {
        let st = lock(&self.state);
        st.audio.iter().chain(&st.video).map(|s| s.ssrc).collect()
    }

    pub fn audio_ssrc(&self) -> Option<u32> {
        lock(&self.state).audio.as_ref().map(|s| s.ssrc)
    }

    pub fn video_ssrcs(&self) -> Vec<u32> {
        lock(&self.state).video.iter().map(|s| s.ssrc).collect()
    }

    /// The level the following audio packets carry in the RFC 6464 extension, in -dBov
    /// (0 loudest, 127 silence, the default): what a microphone would measure.
    pub fn set_audio_level(&self, dbov: u8) {
        if let Some(a) = lock(&self.state).audio.as_mut() {
            a.audio_level = dbov.min(127);
        }
    }

    /// Sends `datagram` as is from this publisher's address, for tests that inject what
    /// a broken or hostile client would send.
    pub async fn send_raw(&self, datagram: &[u8]) -> Result<(), ClientError> {
        self.transport.send(datagram).await
    }

    /// Sends one audio packet (20 ms of "Opus": the bytes are sent as given).
    pub async fn send_audio(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        let packet = {
            let mut st = lock(&self.state);
            let twcc = next_transport_seq(&mut st);
            let overhead = st.outbound.profile().rtp_overhead();
            let audio = st
                .audio
                .as_mut()
                .ok_or_else(|| ClientError::Options("no audio negotiated".into()))?;
            let ssrc = audio.ssrc;
            let plain = audio.packet(payload, false, AUDIO_TS_STEP, twcc, overhead);
            let next_seq = audio.seq;
            let protected = st.protect(&plain)?;
            st.remember(ssrc, plain);
            if let Some(s) = st.stream_stats(ssrc) {
                s.packets += 1;
                s.payload_bytes += payload.len() as u64;
                s.next_seq = next_seq;
            }
            protected
        };
        self.transport.send(&packet).await
    }

    /// Sends one video frame in one packet on simulcast `layer` (0 = "q", lowest; 0 when
    /// not simulcasting). `data` follows our VP8 payload descriptor and frame header.
    pub async fn send_video(
        &mut self,
        layer: usize,
        data: &[u8],
        keyframe: bool,
    ) -> Result<(), ClientError> {
        self.send_video_frame(layer, &[data], keyframe)
            .await
            .map(drop)
    }

    /// Sends one video frame on simulcast `layer` as one packet per chunk, packetized
    /// as RFC 7741 asks: one timestamp and picture ID, the start bit on the first packet,
    /// the marker on the last. Returns the packets sent.
    pub async fn send_video_frame(
        &mut self,
        layer: usize,
        chunks: &[&[u8]],
        keyframe: bool,
    ) -> Result<usize, ClientError> {
        let packets = {
            let mut st = lock(&self.state);
            let overhead = st.outbound.profile().rtp_overhead();
            let pid = st
                .picture_ids
                .get_mut(layer)
                .ok_or_else(|| ClientError::Options(format!("no video layer {layer}")))?;
            let picture_id = *pid;
            *pid = (*pid + 1) & 0x7fff;
            let mut packets = Vec::with_capacity(chunks.len());
            for (i, chunk) in chunks.iter().enumerate() {
                let last = i + 1 == chunks.len();
                let payload = if i == 0 {
                    vp8_payload(picture_id, keyframe, layer, chunk)
                } else {
                    vp8_continuation(picture_id, chunk)
                };
                let twcc = next_transport_seq(&mut st);
                let stream = st
                    .video
                    .get_mut(layer)
                    .ok_or_else(|| ClientError::Options(format!("no video layer {layer}")))?;
                let ssrc = stream.ssrc;
                let step = if last { VIDEO_TS_STEP } else { 0 };
                let plain = stream.packet(&payload, last, step, twcc, overhead);
                let next_seq = stream.seq;
                let protected = st.protect(&plain)?;
                st.remember(ssrc, plain);
                if let Some(s) = st.stream_stats(ssrc) {
                    s.packets += 1;
                    s.payload_bytes += chunk.len() as u64;
                    s.keyframes += u64::from(keyframe && i == 0);
                    s.next_seq = next_seq;
                }
                packets.push(protected);
            }
            packets
        };
        for p in &packets {
            self.transport.send(p).await?;
        }
        Ok(packets.len())
    }

    pub fn stats(&self) -> PublisherStats {
        let mut s = lock(&self.state).stats.clone();
        s.ice = self.transport.ice_stats();
        s.ice_state = Some(self.transport.ice_state());
        s.dropped_datagrams = self.transport.dropped_datagrams();
        s.mapped_address = self.transport.mapped_address();
        s
    }

    /// The node ended DTLS (or the transport died).
    pub fn is_closed(&self) -> bool {
        self.transport.dtls_closed()
    }

    /// Ends the session at the server (WHIP: DELETE the resource; Janus: detach the
    /// handle), then sends close_notify.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let result = self.hangup.send().await;
        self.tasks.abort_all();
        self.transport.close().await;
        result
    }
}

fn next_transport_seq(st: &mut State) -> u16 {
    let s = st.transport_seq;
    st.transport_seq = s.wrapping_add(1);
    s
}

/// SRTCP from the node: counted; NACKs answered by resending from the history.
async fn feedback_loop(
    mut media: mpsc::Receiver<Bytes>,
    mut inbound: SrtpContext,
    state: Arc<Mutex<State>>,
    out: mpsc::Sender<Vec<u8>>,
) {
    while let Some(d) = media.recv().await {
        if classify(&d) != PacketKind::Rtcp {
            continue;
        }
        let mut buf = d.to_vec();
        let Ok(n) = inbound.unprotect_rtcp(&mut buf) else {
            lock(&state).stats.srtcp_errors += 1;
            continue;
        };
        let resend = {
            let mut st = lock(&state);
            let nacks = st.stats.rtcp.count(&buf[..n]);
            let mut resend = Vec::new();
            for (ssrc, lost) in nacks {
                let plains: Vec<Vec<u8>> = st
                    .history
                    .get(&ssrc)
                    .map(|h| {
                        h.iter()
                            .filter(|p| {
                                p.get(2..4).is_some_and(|s| {
                                    lost.contains(&u16::from_be_bytes([s[0], s[1]]))
                                })
                            })
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                for p in plains {
                    if let Ok(protected) = st.protect(&p) {
                        st.stats.retransmitted += 1;
                        resend.push(protected);
                    }
                }
            }
            resend
        };
        for p in resend {
            let _ = out.try_send(p);
        }
    }
}

/// A sender report per stream that has sent something, every `interval`.
async fn report_loop(
    state: Arc<Mutex<State>>,
    out: mpsc::Sender<Vec<u8>>,
    interval: std::time::Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    loop {
        tick.tick().await;
        let packet = {
            let mut st = lock(&state);
            let ntp = ntp_now();
            let senders: Vec<(u32, u32, u32, u32)> = st
                .audio
                .iter()
                .chain(&st.video)
                .filter_map(|s| {
                    let sent = st.stats.streams.iter().find(|x| x.ssrc == s.ssrc)?;
                    (sent.packets > 0).then_some((
                        s.ssrc,
                        s.timestamp,
                        sent.packets as u32,
                        sent.payload_bytes as u32,
                    ))
                })
                .collect();
            if senders.is_empty() {
                continue;
            }
            let mut buf = vec![0u8; 1200];
            let mut w = RtcpWriter::new(&mut buf);
            for (ssrc, ts, packets, octets) in senders {
                if w.sender_report(ssrc, ntp, ts, packets, octets, &[])
                    .is_err()
                {
                    break;
                }
            }
            let n = w.finish();
            buf.truncate(n);
            buf.resize(n + st.outbound.profile().rtcp_overhead(), 0);
            match st.outbound.protect_rtcp(&mut buf, n) {
                Ok(m) => {
                    buf.truncate(m);
                    buf
                }
                Err(_) => continue,
            }
        };
        if out.send(packet).await.is_err() {
            return;
        }
    }
}
