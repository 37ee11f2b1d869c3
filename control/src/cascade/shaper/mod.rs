//! The media-aware bandwidth manager of the links: what crosses a link is kept within
//! what the link can carry by leaving out whole layers, least important first, instead
//! of letting the link's send buffer drop packets at random.
//!
//! Per peer node it meters the offered rate of every (track, layer) from the link
//! packets it sees, sent or not, takes the link's estimate ([`estimate`]) and decides per
//! layer, in this order: audio (always sent), every video track's base layer, then the
//! upper layers from the lowest up, the active speaker's before the others'.
//!
//! - **Down at once**: when the link is saturated (media backs up in its send buffer)
//!   the estimate is what it carries, and every layer that no longer fits 90% of it is
//!   shed on the spot; a layer whose lower layer is shed goes with it. While media
//!   flows without backing up, what is being sent is proof that the link carries it: a
//!   controller's model below that (an app-limited link has seen no more) sheds nothing.
//! - **Up with hysteresis**: a shed layer returns after it has fitted with headroom
//!   for [`ShaperConfig::up_hold`].
//! - **Probing**: an app-limited link's model only knows what was sent, so a layer
//!   waiting above it would wait for ever. Every [`ShaperConfig::probe_interval`] the
//!   first waiting layer is restored on trial; if the link saturates it is shed again
//!   and the interval doubles (up to [`ShaperConfig::probe_max_interval`]); if it
//!   holds for [`ShaperConfig::probe_time`] it stays.
//!
//! The far node needs no message: its router chooses only layers that keep arriving,
//! so its subscribers move down when a layer stops coming, and up when it is back.
//!
//! Which tracks are audio: what the driver says ([`Shaper::set_track_kind`]), else a
//! guess from the packets — a single-layer track that never starts a keyframe and
//! whose packets are small.
//!
//! Sans-IO: the media thread calls [`Shaper::handle_packet`] per link packet,
//! [`Shaper::handle_estimate`] with each link reading and [`Shaper::handle_timeout`]
//! when [`Shaper::poll_timeout`] says. Per packet: two hash lookups, a meter add and a
//! flag read, no allocation once a layer is known.

pub mod estimate;

#[cfg(test)]
mod tests;

pub use estimate::{LinkEstimate, LinkEstimator, LinkSample};
/// The router's one-second bucketed meter: metering a layer costs the same here.
pub use sluice_dataplane::router::RateMeter;

use sluice_dataplane::engine::Micros;
use sluice_dataplane::router::TrackId;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

/// What a track carries, as far as the priorities go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    Audio,
    Video,
}

/// What the cascade driver tells the media thread's shaper about a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShaperCommand {
    Kind { track: TrackId, kind: TrackKind },
    Speaker { track: TrackId, speaker: bool },
    Forget { track: TrackId },
}

/// Whether one link packet goes on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Send,
    /// Its layer is shed on this link.
    Drop,
}

#[derive(Debug, Clone)]
pub struct ShaperConfig {
    /// How often every link's layers are decided again.
    pub tick: Micros,
    /// Share of the link estimate media may fill; the rest is for control messages,
    /// state gossip and the estimate's error.
    pub budget_percent: u64,
    /// A shed layer comes back only while it fits this share of the budget...
    pub up_headroom_percent: u64,
    /// ...continuously for this long.
    pub up_hold: Micros,
    /// Bytes a link packet costs beyond its RTP bytes: the link frame header and QUIC's
    /// packet overhead (the estimate counts QUIC packets).
    pub packet_overhead: usize,
    /// A layer with no packet for this long is forgotten.
    pub idle_timeout: Micros,
    /// How often a waiting layer is tried when it does not fit the estimate, at first
    /// and after a trial that held...
    pub probe_interval: Micros,
    /// ...and at most, after trials that failed (each doubles the interval).
    pub probe_max_interval: Micros,
    /// How long a trial must go without saturating the link to succeed.
    pub probe_time: Micros,
    /// Largest mean packet of a track guessed to be audio.
    pub audio_max_mean_packet: u64,
}

impl Default for ShaperConfig {
    fn default() -> Self {
        Self {
            tick: 100_000,
            budget_percent: 90,
            up_headroom_percent: 85,
            up_hold: 3_000_000,
            packet_overhead: sluice_dataplane::link::HEADER_LEN + 38,
            idle_timeout: 5_000_000,
            probe_interval: 5_000_000,
            probe_max_interval: 64_000_000,
            probe_time: 2_000_000,
            audio_max_mean_packet: 320,
        }
    }
}

/// What the shaper did, over all links.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShaperStats {
    pub packets_sent: u64,
    pub bytes_sent: u64,
    /// Packets left out because their layer was shed.
    pub packets_shed: u64,
    pub bytes_shed: u64,
    /// Audio packets left out: stays 0 (audio is never shed); counted so a test can
    /// say so.
    pub audio_shed: u64,
    /// Times a layer was shed, and brought back.
    pub layers_shed: u64,
    pub layers_restored: u64,
    /// Trials of a layer above the estimate, and those that held.
    pub probes: u64,
    pub probes_held: u64,
    /// Video tracks marked as an active speaker's now.
    pub speaker_tracks: u64,
}

/// One (track, layer) toward one node, as the shaper sees it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerView {
    pub track: TrackId,
    pub layer: u8,
    pub kind: TrackKind,
    pub sending: bool,
    /// Offered rate with link overhead, bits per second.
    pub rate: u64,
}

#[derive(Debug)]
struct Layer {
    meter: RateMeter,
    on: bool,
    up_since: Option<Micros>,
    last_packet_at: Micros,
    packets: u64,
    rtp_bytes: u64,
    keyframes: bool,
    /// The kind as of the last decision (what `handle_packet` counts audio by).
    audio: bool,
}

impl Layer {
    fn new(now: Micros) -> Self {
        Self {
            meter: RateMeter::default(),
            on: true,
            up_since: None,
            last_packet_at: now,
            packets: 0,
            rtp_bytes: 0,
            keyframes: false,
            audio: false,
        }
    }
}

#[derive(Debug, Default)]
struct Link {
    estimate: LinkEstimate,
    layers: HashMap<(TrackId, u8), Layer>,
    /// The layer on trial, since when.
    probe: Option<(TrackId, u8, Micros)>,
    next_probe_at: Option<Micros>,
    probe_backoff: Micros,
    /// Decision order, rebuilt every tick in place.
    order: Vec<(Priority, TrackId, u8)>,
}

/// Sort key: lower goes first.
type Priority = (u8, u8, u8);

#[derive(Debug, Default, Clone, Copy)]
struct Hint {
    kind: Option<TrackKind>,
    speaker: bool,
}

/// The bandwidth manager of every link of a node; see the module docs.
#[derive(Debug)]
pub struct Shaper {
    config: ShaperConfig,
    links: HashMap<u32, Link>,
    hints: HashMap<TrackId, Hint>,
    next_tick: Option<Micros>,
    stats: ShaperStats,
}

impl Shaper {
    pub fn new(config: ShaperConfig) -> Self {
        Self {
            config,
            links: HashMap::new(),
            hints: HashMap::new(),
            next_tick: None,
            stats: ShaperStats::default(),
        }
    }

    pub fn config(&self) -> &ShaperConfig {
        &self.config
    }

    pub fn stats(&self) -> ShaperStats {
        ShaperStats {
            speaker_tracks: self.hints.values().filter(|h| h.speaker).count() as u64,
            ..self.stats
        }
    }

    pub fn apply(&mut self, cmd: ShaperCommand) {
        match cmd {
            ShaperCommand::Kind { track, kind } => self.set_track_kind(track, kind),
            ShaperCommand::Speaker { track, speaker } => self.set_speaker(track, speaker),
            ShaperCommand::Forget { track } => self.forget_track(track),
        }
    }

    /// Says what a track carries (the driver knows from the track's descriptor).
    pub fn set_track_kind(&mut self, track: TrackId, kind: TrackKind) {
        self.hints.entry(track).or_default().kind = Some(kind);
    }

    /// Marks a video track as the room's active speaker's (or no longer): its upper
    /// layers go before every other track's.
    pub fn set_speaker(&mut self, track: TrackId, speaker: bool) {
        self.hints.entry(track).or_default().speaker = speaker;
    }

    /// Forgets what was said about a track (it ended).
    pub fn forget_track(&mut self, track: TrackId) {
        self.hints.remove(&track);
    }

    /// Forgets a node's link (it closed).
    pub fn remove_node(&mut self, node: u32) {
        self.links.remove(&node);
    }

    /// Nodes the shaper holds state for.
    pub fn nodes(&self) -> impl Iterator<Item = u32> + '_ {
        self.links.keys().copied()
    }

    /// A new estimate for the link to `node` (a rate of `None`: unknown, send
    /// everything). Decides that link's layers at once, so a saturated link sheds
    /// without waiting for the tick.
    pub fn handle_estimate(&mut self, now: Micros, node: u32, estimate: LinkEstimate) {
        let link = self.links.entry(node).or_default();
        link.estimate = estimate;
        decide(now, link, &self.hints, &self.config, &mut self.stats);
    }

    /// One link packet of `rtp_len` RTP bytes for `node`: whether it goes out.
    pub fn handle_packet(
        &mut self,
        now: Micros,
        node: u32,
        track: TrackId,
        layer: u8,
        keyframe: bool,
        rtp_len: usize,
    ) -> Verdict {
        if self.next_tick.is_none() {
            self.next_tick = Some(now + self.config.tick);
        }
        let link = self.links.entry(node).or_default();
        let l = match link.layers.entry((track, layer)) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(Layer::new(now)),
        };
        let wire = rtp_len + self.config.packet_overhead;
        l.meter.add(now, wire);
        l.last_packet_at = now;
        l.packets += 1;
        l.rtp_bytes += rtp_len as u64;
        l.keyframes |= keyframe;
        if l.on {
            self.stats.packets_sent += 1;
            self.stats.bytes_sent += wire as u64;
            Verdict::Send
        } else {
            self.stats.packets_shed += 1;
            self.stats.bytes_shed += wire as u64;
            if l.audio {
                self.stats.audio_shed += 1;
            }
            Verdict::Drop
        }
    }

    /// When [`Self::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Micros> {
        self.next_tick
    }

    /// Forgets idle layers and decides every link's layers again.
    pub fn handle_timeout(&mut self, now: Micros) {
        let Some(due) = self.next_tick else {
            return;
        };
        if now < due {
            return;
        }
        self.next_tick = Some(now + self.config.tick);
        let idle = self.config.idle_timeout;
        for link in self.links.values_mut() {
            link.layers
                .retain(|_, l| now.saturating_sub(l.last_packet_at) < idle);
            decide(now, link, &self.hints, &self.config, &mut self.stats);
        }
    }

    /// Offered media toward `node` (with link overhead), bits per second.
    pub fn offered(&self, now: Micros, node: u32) -> u64 {
        self.links
            .get(&node)
            .map_or(0, |l| l.layers.values().map(|x| x.meter.rate(now)).sum())
    }

    /// The part of [`Self::offered`] whose layers are being sent.
    pub fn sending(&self, now: Micros, node: u32) -> u64 {
        self.links.get(&node).map_or(0, |l| {
            l.layers
                .values()
                .filter(|x| x.on)
                .map(|x| x.meter.rate(now))
                .sum()
        })
    }

    /// The estimate last given for `node`.
    pub fn estimate(&self, node: u32) -> Option<LinkEstimate> {
        self.links.get(&node).map(|l| l.estimate)
    }

    /// One layer toward `node`, as of the last decision.
    pub fn layer(&self, now: Micros, node: u32, track: TrackId, layer: u8) -> Option<LayerView> {
        let link = self.links.get(&node)?;
        let l = link.layers.get(&(track, layer))?;
        Some(LayerView {
            track,
            layer,
            kind: kind_of(&self.hints, link, &self.config, track, layer),
            sending: l.on,
            rate: l.meter.rate(now),
        })
    }

    /// Every layer toward `node`, in no particular order.
    pub fn layers(&self, now: Micros, node: u32) -> Vec<LayerView> {
        let Some(link) = self.links.get(&node) else {
            return Vec::new();
        };
        link.layers
            .keys()
            .filter_map(|&(t, l)| self.layer(now, node, t, l))
            .collect()
    }
}

/// A track's kind: what the driver said, else the guess (module docs).
fn kind_of(
    hints: &HashMap<TrackId, Hint>,
    link: &Link,
    config: &ShaperConfig,
    track: TrackId,
    layer: u8,
) -> TrackKind {
    if let Some(kind) = hints.get(&track).and_then(|h| h.kind) {
        return kind;
    }
    let Some(base) = link.layers.get(&(track, 0)) else {
        return TrackKind::Video;
    };
    let single = layer == 0 && !link.layers.contains_key(&(track, 1));
    let small = base.packets > 0 && base.rtp_bytes / base.packets <= config.audio_max_mean_packet;
    if single && small && !base.keyframes {
        TrackKind::Audio
    } else {
        TrackKind::Video
    }
}

/// Decides one link's layers: the budget is filled in priority order; see the module
/// docs for the rules.
fn decide(
    now: Micros,
    link: &mut Link,
    hints: &HashMap<TrackId, Hint>,
    config: &ShaperConfig,
    stats: &mut ShaperStats,
) {
    let mut order = std::mem::take(&mut link.order);
    order.clear();
    for &(track, layer) in link.layers.keys() {
        let audio = kind_of(hints, link, config, track, layer) == TrackKind::Audio;
        let speaker = hints.get(&track).is_some_and(|h| h.speaker);
        let class = match (audio, layer) {
            (true, _) => 0,
            (false, 0) => 1,
            (false, _) => 2,
        };
        order.push(((class, u8::from(!speaker), layer), track, layer));
    }
    order.sort_unstable();

    let Some(rate) = link.estimate.rate else {
        // Unknown link: everything goes, nothing waits to come back.
        for &((class, ..), track, layer) in &order {
            if let Some(l) = link.layers.get_mut(&(track, layer)) {
                restore_if_off(l, stats);
                l.audio = class == 0;
            }
        }
        link.probe = None;
        link.order = order;
        return;
    };
    let saturated = link.estimate.saturated;
    let budget = rate / 100 * config.budget_percent;
    let up_budget = budget / 100 * config.up_headroom_percent;
    let mut used = 0u64;
    let mut shed_now = false;
    let mut waiting = None;
    for &((class, ..), track, layer) in &order {
        let below_shed = layer > 0
            && class != 0
            && link
                .layers
                .get(&(track, layer - 1))
                .is_some_and(|below| !below.on);
        let Some(l) = link.layers.get_mut(&(track, layer)) else {
            continue;
        };
        l.audio = class == 0;
        let rate = l.meter.rate(now);
        if class == 0 {
            restore_if_off(l, stats);
            used += rate;
        } else if below_shed {
            shed_if_on(l, stats);
        } else if l.on {
            // Unsaturated, the link carries what is sent: it stays, whatever the
            // model says.
            if !saturated || used + rate <= budget {
                used += rate;
            } else {
                shed_if_on(l, stats);
                shed_now = true;
            }
        } else if used + rate <= up_budget {
            let since = *l.up_since.get_or_insert(now);
            if now.saturating_sub(since) >= config.up_hold {
                restore_if_off(l, stats);
                used += rate;
            }
        } else {
            l.up_since = None;
            if waiting.is_none() {
                waiting = Some((track, layer));
            }
        }
    }
    link.order = order;
    probe(now, link, config, stats, saturated || shed_now, waiting);
}

/// Ends a trial that saturated the link or held long enough, and starts one when due.
fn probe(
    now: Micros,
    link: &mut Link,
    config: &ShaperConfig,
    stats: &mut ShaperStats,
    congested: bool,
    waiting: Option<(TrackId, u8)>,
) {
    if link.probe_backoff == 0 {
        link.probe_backoff = config.probe_interval;
    }
    if let Some((track, layer, since)) = link.probe {
        let on = link.layers.get(&(track, layer)).is_some_and(|l| l.on);
        if congested || !on {
            // Failed: this link cannot take it now; try less often.
            if let Some(l) = link.layers.get_mut(&(track, layer)) {
                shed_if_on(l, stats);
            }
            link.probe = None;
            link.probe_backoff = (link.probe_backoff * 2).min(config.probe_max_interval);
            link.next_probe_at = Some(now + link.probe_backoff);
        } else if now.saturating_sub(since) >= config.probe_time {
            stats.probes_held += 1;
            link.probe = None;
            link.probe_backoff = config.probe_interval;
            link.next_probe_at = Some(now + config.probe_interval);
        }
        return;
    }
    if congested {
        link.next_probe_at = Some(now + link.probe_backoff);
        return;
    }
    let due = *link.next_probe_at.get_or_insert(now + link.probe_backoff);
    let Some((track, layer)) = waiting else {
        return;
    };
    if now < due {
        return;
    }
    if let Some(l) = link.layers.get_mut(&(track, layer)) {
        restore_if_off(l, stats);
        stats.probes += 1;
        link.probe = Some((track, layer, now));
    }
}

fn shed_if_on(l: &mut Layer, stats: &mut ShaperStats) {
    if l.on {
        l.on = false;
        stats.layers_shed += 1;
    }
    l.up_since = None;
}

fn restore_if_off(l: &mut Layer, stats: &mut ShaperStats) {
    if !l.on {
        l.on = true;
        stats.layers_restored += 1;
    }
    l.up_since = None;
}
