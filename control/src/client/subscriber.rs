//! A WHEP subscriber: receives and decrypts what the node forwards, tracks every SSRC's
//! sequence continuity, keeps payloads for verification, sends receiver reports and
//! NACKs, and asks for keyframes on request.

use super::answer::Answer;
use super::hangup::Hangup;
use super::http::Signaling;
use super::ice::{IceState, IceStats};
use super::offer::{OfferDirection, OfferSpec, URI_MID, URI_RID};
use super::rtp::vp8_data;
use super::stats::{Arrival, RtcpCounts, SeqTracker, StreamStats};
use super::tasks::Tasks;
use super::transport::{self, Roles, Transport};
use super::{ClientError, ClientOptions, Credentials, ObservedPacket, PacketObserver};
use bytes::Bytes;
use sluice_dataplane::demux::{PacketKind, classify};
use sluice_dataplane::rtcp::{ReportBlock, RtcpWriter};
use sluice_dataplane::rtp::{ExtensionIds, RtpPacket};
use sluice_dataplane::srtp::SrtpContext;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// NACK each missing packet at most this often, at most this many per stream per report.
const NACK_TRIES: u8 = 3;
const NACK_LIMIT: usize = 64;
/// Report blocks per receiver report (the RTCP count field is 5 bits).
const MAX_BLOCKS: usize = 31;

/// One received packet, after SRTP and (for RTX) unwrapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedPacket {
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload_type: u8,
    /// The RTP payload (for VP8: descriptor included; see [`super::vp8_data`]).
    pub payload: Vec<u8>,
    /// Arrived as an RTX retransmission.
    pub rtx: bool,
    /// In order, or late (it filled a gap). Duplicates and wild packets are not kept.
    pub arrival: Arrival,
}

#[derive(Debug, Clone, Default)]
pub struct SubscriberStats {
    /// One entry per media SSRC received, ordered by SSRC.
    pub streams: Vec<StreamStats>,
    /// RTCP the node sent (sender reports, SDES, BYE...).
    pub rtcp: RtcpCounts,
    /// SRTP/SRTCP packets that failed to authenticate or decrypt.
    pub srtp_errors: u64,
    /// Decrypted packets that were not valid RTP.
    pub rtp_errors: u64,
    /// RTX packets whose stream we could not tell (no FID group in the answer).
    pub rtx_unmapped: u64,
    pub nacks_sent: u64,
    pub plis_sent: u64,
    pub reports_sent: u64,
    pub ice: IceStats,
    pub ice_state: Option<IceState>,
    pub dropped_datagrams: u64,
    /// Our address as the node saw it (from its ICE responses).
    pub mapped_address: Option<std::net::SocketAddr>,
}

impl SubscriberStats {
    pub fn stream(&self, ssrc: u32) -> Option<&StreamStats> {
        self.streams.iter().find(|s| s.ssrc == ssrc)
    }

    /// Distinct media packets received over all streams.
    pub fn packets(&self) -> u64 {
        self.streams.iter().map(|s| s.packets).sum()
    }
}

struct State {
    inbound: SrtpContext,
    outbound: SrtpContext,
    rtcp_ssrc: u32,
    ext: ExtensionIds,
    /// RTX payload type -> the payload type it repairs.
    rtx_pt: HashMap<u8, u8>,
    /// RTX SSRC -> media SSRC (from `a=ssrc-group:FID`).
    rtx_ssrc: HashMap<u32, u32>,
    streams: BTreeMap<u32, SeqTracker>,
    payloads: HashMap<u32, Vec<ReceivedPacket>>,
    keep_payloads: usize,
    observer: Option<PacketObserver>,
    remb: Option<u64>,
    stats: SubscriberStats,
    /// Per stream: the middle 32 bits of the last sender report's NTP time and when it
    /// arrived, echoed in our report blocks so the node can measure the round trip.
    last_sr: HashMap<u32, (u32, Instant)>,
    /// Per stream: (expected, received) at the previous report, for the fraction lost
    /// over the interval (RFC 3550 A.3).
    at_last_report: HashMap<u32, (i64, u64)>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    fn on_rtp(&mut self, buf: &mut [u8]) {
        let Ok(n) = self.inbound.unprotect_rtp(buf) else {
            self.stats.srtp_errors += 1;
            return;
        };
        let Ok(pkt) = RtpPacket::parse(&buf[..n]) else {
            self.stats.rtp_errors += 1;
            return;
        };
        let (mut ssrc, mut seq, mut pt, mut payload, mut rtx) = (
            pkt.ssrc(),
            pkt.sequence_number(),
            pkt.payload_type(),
            pkt.payload(),
            false,
        );
        if let Some(&apt) = self.rtx_pt.get(&pt) {
            // RFC 4588: the original sequence number leads the payload.
            let (Some(&media), Some(osn)) = (self.rtx_ssrc.get(&ssrc), payload.get(..2)) else {
                self.stats.rtx_unmapped += 1;
                return;
            };
            (ssrc, seq, pt, rtx) = (media, u16::from_be_bytes([osn[0], osn[1]]), apt, true);
            payload = &payload[2..];
        }
        let ext = pkt.known_extensions(&self.ext).ok();
        let tracker = self
            .streams
            .entry(ssrc)
            .or_insert_with(|| SeqTracker::new(ssrc));
        let arrival = tracker.receive(seq);
        if matches!(arrival, Arrival::Duplicate | Arrival::Wild) {
            return;
        }
        let s = &mut tracker.stats;
        s.payload_type = pt;
        s.payload_bytes += payload.len() as u64;
        s.rtx += u64::from(rtx);
        if let Some(e) = ext {
            if let Some(mid) = e.mid {
                s.mid = Some(String::from_utf8_lossy(mid).into_owned());
            }
            if let Some(rid) = e.rid {
                s.rid = Some(String::from_utf8_lossy(rid).into_owned());
            }
        }
        if vp8_data(payload).is_some_and(|(key, _, _)| key) {
            s.keyframes += 1;
        }
        if let Some(observer) = &self.observer {
            (observer.0)(&ObservedPacket {
                ssrc,
                seq,
                payload_type: pt,
                timestamp: pkt.timestamp(),
                marker: pkt.marker(),
                payload,
            });
        }
        let kept = self.payloads.entry(ssrc).or_default();
        if kept.len() < self.keep_payloads {
            kept.push(ReceivedPacket {
                seq,
                timestamp: pkt.timestamp(),
                marker: pkt.marker(),
                payload_type: pt,
                payload: payload.to_vec(),
                rtx,
                arrival,
            });
        }
    }

    fn on_rtcp(&mut self, buf: &mut [u8]) {
        match self.inbound.unprotect_rtcp(buf) {
            Ok(n) => {
                self.stats.rtcp.count(&buf[..n]);
                let now = Instant::now();
                for p in sluice_dataplane::rtcp::parse_compound(&buf[..n]).flatten() {
                    if let sluice_dataplane::rtcp::RtcpPacket::SenderReport(sr) = p {
                        self.last_sr
                            .insert(sr.ssrc, ((sr.ntp_time >> 16) as u32, now));
                    }
                }
            }
            Err(_) => self.stats.srtp_errors += 1,
        }
    }

    /// A receiver report for every stream, NACKs for what is missing, and a PLI for
    /// `pli`; protected, ready to send.
    fn report(&mut self, nack: bool, pli: Option<u32>) -> Option<Vec<u8>> {
        let now = Instant::now();
        let blocks: Vec<ReportBlock> = self
            .streams
            .values()
            .take(MAX_BLOCKS)
            .map(|t| {
                let ssrc = t.stats.ssrc;
                let expected = t.cumulative_lost() + t.stats.packets as i64;
                let (prev_expected, prev_received) = self
                    .at_last_report
                    .insert(ssrc, (expected, t.stats.packets))
                    .unwrap_or((0, 0));
                let expected_interval = expected - prev_expected;
                let lost_interval =
                    expected_interval - t.stats.packets.saturating_sub(prev_received) as i64;
                let fraction_lost = if expected_interval > 0 && lost_interval > 0 {
                    ((lost_interval << 8) / expected_interval).min(255) as u8
                } else {
                    0
                };
                let (last_sr, delay_since_last_sr) = match self.last_sr.get(&ssrc) {
                    // The delay in units of 1/65536 s.
                    Some(&(mid, at)) => (
                        mid,
                        ((now - at).as_micros() as u64 * 65_536 / 1_000_000) as u32,
                    ),
                    None => (0, 0),
                };
                ReportBlock {
                    ssrc,
                    fraction_lost,
                    cumulative_lost: t.cumulative_lost().clamp(-0x80_0000, 0x7f_ffff) as i32,
                    extended_highest_seq: t.extended_highest(),
                    // Not measured: the client does not keep arrival times.
                    jitter: 0,
                    last_sr,
                    delay_since_last_sr,
                }
            })
            .collect();
        let mut buf = vec![0u8; 1400];
        let mut w = RtcpWriter::new(&mut buf);
        w.receiver_report(self.rtcp_ssrc, &blocks).ok()?;
        if nack {
            for t in self.streams.values_mut() {
                let lost = t.nack_list(NACK_TRIES, NACK_LIMIT);
                if !lost.is_empty() && w.nack(self.rtcp_ssrc, t.stats.ssrc, lost).is_ok() {
                    self.stats.nacks_sent += 1;
                }
            }
        }
        if let Some(media) = pli
            && w.pli(self.rtcp_ssrc, media).is_ok()
        {
            self.stats.plis_sent += 1;
        }
        if let Some(bitrate) = self.remb {
            let ssrcs: Vec<u32> = self.streams.keys().copied().take(MAX_BLOCKS).collect();
            // Before any stream arrives a REMB naming none still states the budget.
            let _ = w.remb(self.rtcp_ssrc, bitrate, &ssrcs);
        }
        let n = w.finish();
        buf.truncate(n);
        buf.resize(n + self.outbound.profile().rtcp_overhead(), 0);
        let m = self.outbound.protect_rtcp(&mut buf, n).ok()?;
        buf.truncate(m);
        self.stats.reports_sent += 1;
        Some(buf)
    }
}

/// A subscription. Dropping it stops receiving without telling the server; call
/// [`Subscriber::close`] to end it there too.
pub struct Subscriber {
    /// The WHEP resource URL (with Janus: the handle's URL).
    pub location: String,
    /// The server's session description: its answer to our offer (WHEP), or the offer
    /// we answered (Janus).
    pub answer: Answer,
    hangup: Hangup,
    transport: Transport,
    state: Arc<Mutex<State>>,
    tasks: Tasks,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Subscriber {
    pub(super) async fn start(
        base_url: &str,
        room: &str,
        publisher_id: Option<&str>,
        opts: &ClientOptions,
    ) -> Result<Self, ClientError> {
        if !opts.audio && !opts.video {
            return Err(ClientError::Options(
                "subscribe needs audio or video".into(),
            ));
        }
        let creds = Credentials::generate(opts)?;
        let bound = transport::bind(opts.bind).await?;
        let offer = OfferSpec {
            ice_ufrag: creds.ufrag.clone(),
            ice_pwd: creds.pwd.clone(),
            fingerprint_sha256: creds.announced_fingerprint(opts),
            direction: OfferDirection::RecvOnly,
            candidate: bound.local,
            cname: creds.cname.clone(),
            audio: opts.audio.then_some(0),
            video: opts.video.then_some(0),
            simulcast: false,
        };
        let signaling = Signaling::new(opts.token.clone()).with_region(opts.region.clone());
        let url = match publisher_id {
            Some(p) => Signaling::url(base_url, &["whep", room, p])?,
            None => Signaling::url(base_url, &["whep", room])?,
        };
        let posted = signaling.post_offer(url, offer.to_sdp()).await?;
        let answer = Answer::parse(&posted.answer)?;
        let roles = Roles::offerer(&answer);
        let hangup = Hangup::Whip {
            signaling,
            location: posted.location.clone(),
        };
        Self::connect(creds, bound, answer, roles, posted.location, hangup, opts).await
    }

    /// Brings up a session whose offer/answer is done: `remote` is the server's side
    /// (its answer to our offer, or its offer we answered), `roles` ours.
    pub(super) async fn connect(
        creds: Credentials,
        bound: transport::Bound,
        remote: Answer,
        roles: Roles,
        location: String,
        hangup: Hangup,
        opts: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let answer = remote;
        let established = Transport::establish(
            bound,
            &answer,
            &creds,
            roles,
            opts.timeout,
            opts.dtls_retransmit,
        )
        .await?;
        let keys = established.keys;
        let srtp = |k: &sluice_dataplane::router::SrtpKeys| {
            SrtpContext::new(k.profile, &k.key, &k.salt)
                .map_err(|e| ClientError::Srtp(e.to_string()))
        };
        // With BUNDLE every section uses one id per URI (we offered one; Janus's offers
        // number them once for all sections too).
        let ext_id = |uri: &str| {
            answer
                .media
                .iter()
                .find_map(|s| s.extmap_id(uri))
                .unwrap_or(0)
        };
        let ext = ExtensionIds {
            mid: ext_id(URI_MID),
            rid: ext_id(URI_RID),
            ..ExtensionIds::default()
        };
        let mut rtx_pt = HashMap::new();
        let mut rtx_ssrc = HashMap::new();
        for m in &answer.media {
            rtx_pt.extend(m.rtx.iter().copied());
            rtx_ssrc.extend(m.fid_groups.iter().map(|&(media, rtx)| (rtx, media)));
        }
        let state = Arc::new(Mutex::new(State {
            inbound: srtp(&keys.inbound)?,
            outbound: srtp(&keys.outbound)?,
            rtcp_ssrc: rand::random(),
            ext,
            rtx_pt,
            rtx_ssrc,
            streams: BTreeMap::new(),
            payloads: HashMap::new(),
            keep_payloads: opts.keep_payloads,
            observer: opts.observer.clone(),
            remb: opts.remb,
            stats: SubscriberStats::default(),
            last_sr: HashMap::new(),
            at_last_report: HashMap::new(),
        }));
        let transport = established.transport;
        let tasks = vec![
            tokio::spawn(receive_loop(established.media, Arc::clone(&state))),
            tokio::spawn(report_loop(
                Arc::clone(&state),
                transport.socket_handle(),
                transport.remote(),
                opts.rtcp_interval,
                opts.nack,
            )),
        ];
        Ok(Self {
            location,
            answer,
            hangup,
            transport,
            state,
            tasks: tasks.into(),
        })
    }

    pub fn stats(&self) -> SubscriberStats {
        let st = lock(&self.state);
        let mut s = st.stats.clone();
        s.streams = st.streams.values().map(|t| t.stats.clone()).collect();
        drop(st);
        s.ice = self.transport.ice_stats();
        s.ice_state = Some(self.transport.ice_state());
        s.dropped_datagrams = self.transport.dropped_datagrams();
        s.mapped_address = self.transport.mapped_address();
        s
    }

    /// The packets kept for `ssrc` (up to `keep_payloads`), in arrival order.
    pub fn packets(&self, ssrc: u32) -> Vec<ReceivedPacket> {
        lock(&self.state)
            .payloads
            .get(&ssrc)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `done` holds for the stats, polling every 10 ms; on timeout returns
    /// [`ClientError::WaitTimeout`] with the last stats in its message.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&SubscriberStats) -> bool,
    ) -> Result<SubscriberStats, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let s = self.stats();
            if done(&s) {
                return Ok(s);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::WaitTimeout(format!("{s:?}")));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends a PLI for `media_ssrc` (with a receiver report, as RTCP requires).
    pub async fn request_keyframe(&self, media_ssrc: u32) -> Result<(), ClientError> {
        let packet = lock(&self.state).report(false, Some(media_ssrc));
        match packet {
            Some(p) => self.transport.send(&p).await,
            None => Err(ClientError::Srtp("could not build the PLI".into())),
        }
    }

    /// The node ended DTLS (or the transport died).
    pub fn is_closed(&self) -> bool {
        self.transport.dtls_closed()
    }

    /// Ends the session at the server (WHEP: DELETE the resource; Janus: detach the
    /// handle), then sends close_notify.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let result = self.hangup.send().await;
        self.tasks.abort_all();
        self.transport.close().await;
        result
    }
}

async fn receive_loop(mut media: tokio::sync::mpsc::Receiver<Bytes>, state: Arc<Mutex<State>>) {
    while let Some(d) = media.recv().await {
        let mut buf = d.to_vec();
        let mut st = lock(&state);
        match classify(&buf) {
            PacketKind::Rtp => st.on_rtp(&mut buf),
            PacketKind::Rtcp => st.on_rtcp(&mut buf),
            _ => {}
        }
    }
}

async fn report_loop(
    state: Arc<Mutex<State>>,
    socket: Arc<tokio::net::UdpSocket>,
    remote: std::net::SocketAddr,
    interval: Duration,
    nack: bool,
) {
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    loop {
        tick.tick().await;
        let packet = {
            let mut st = lock(&state);
            if st.streams.is_empty() {
                continue;
            }
            st.report(nack, None)
        };
        if let Some(p) = packet {
            let _ = socket.send_to(&p, remote).await;
        }
    }
}
