//! The shaper on virtual time: synthetic audio and three-layer video toward one node,
//! with estimates handed in as a link would produce them.

use super::*;

const NODE: u32 = 7;
const AUDIO: TrackId = 1;
const VIDEO: TrackId = 2;
const OTHER: TrackId = 3;
/// 10 ms steps.
const STEP: Micros = 10_000;

/// Packets sent and shed per (track, layer) over a run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Tally {
    sent: HashMap<(TrackId, u8), u64>,
    shed: HashMap<(TrackId, u8), u64>,
}

impl Tally {
    fn sent(&self, t: TrackId, l: u8) -> u64 {
        self.sent.get(&(t, l)).copied().unwrap_or(0)
    }
    fn shed(&self, t: TrackId, l: u8) -> u64 {
        self.shed.get(&(t, l)).copied().unwrap_or(0)
    }
}

/// One source: a track layer emitting `per_step` packets of `size` bytes every
/// `every` steps.
#[derive(Debug, Clone, Copy)]
struct Source {
    track: TrackId,
    layer: u8,
    every: u64,
    per_step: u64,
    size: usize,
}

/// Audio (50 packets/s of 100 B, ~60 kbit/s on the wire) and a video track with three
/// layers: ~110 kbit/s, ~840 kbit/s and ~1.84 Mbit/s on the wire.
fn call(video: TrackId) -> Vec<Source> {
    vec![
        Source {
            track: AUDIO,
            layer: 0,
            every: 2,
            per_step: 1,
            size: 100,
        },
        Source {
            track: video,
            layer: 0,
            every: 3,
            per_step: 1,
            size: 400,
        },
        Source {
            track: video,
            layer: 1,
            every: 1,
            per_step: 1,
            size: 1000,
        },
        Source {
            track: video,
            layer: 2,
            every: 1,
            per_step: 2,
            size: 1100,
        },
    ]
}

struct Sim {
    shaper: Shaper,
    now: Micros,
    step: u64,
}

impl Sim {
    fn new() -> Self {
        Self {
            shaper: Shaper::new(ShaperConfig::default()),
            now: 10_000_000,
            step: 0,
        }
    }

    /// Runs `steps` steps of `sources`; keyframes every 100th step.
    fn run(&mut self, sources: &[Source], steps: u64) -> Tally {
        let mut t = Tally::default();
        for _ in 0..steps {
            for s in sources {
                if !self.step.is_multiple_of(s.every) {
                    continue;
                }
                for k in 0..s.per_step {
                    let key = s.track != AUDIO && self.step.is_multiple_of(100) && k == 0;
                    let v = self
                        .shaper
                        .handle_packet(self.now, NODE, s.track, s.layer, key, s.size);
                    let m = match v {
                        Verdict::Send => &mut t.sent,
                        Verdict::Drop => &mut t.shed,
                    };
                    *m.entry((s.track, s.layer)).or_default() += 1;
                }
            }
            self.step += 1;
            self.now += STEP;
            if self.shaper.poll_timeout().is_some_and(|d| d <= self.now) {
                self.shaper.handle_timeout(self.now);
            }
        }
        t
    }

    /// The link backs up, carrying `bps`.
    fn saturated(&mut self, bps: u64) {
        self.shaper.handle_estimate(
            self.now,
            NODE,
            LinkEstimate {
                rate: Some(bps),
                saturated: true,
            },
        );
    }

    /// The link's model says `bps`, and nothing backs up.
    fn flowing(&mut self, bps: u64) {
        self.shaper.handle_estimate(
            self.now,
            NODE,
            LinkEstimate {
                rate: Some(bps),
                saturated: false,
            },
        );
    }

    fn sending(&self, track: TrackId, layer: u8) -> bool {
        self.shaper
            .layer(self.now, NODE, track, layer)
            .expect("layer known")
            .sending
    }
}

#[test]
fn without_an_estimate_everything_goes() {
    let mut sim = Sim::new();
    let t = sim.run(&call(VIDEO), 300);
    assert!(t.shed.is_empty(), "{t:?}");
    assert_eq!(t.sent(AUDIO, 0), 150);
    assert_eq!(t.sent(VIDEO, 2), 600);
    // The meter sees what was offered: ~1.84 Mbit/s for the top layer.
    let r = sim.shaper.layer(sim.now, NODE, VIDEO, 2).unwrap().rate;
    assert!((1_700_000..2_000_000).contains(&r), "{r}");
}

#[test]
fn a_saturated_link_sheds_upper_layers_whole_and_keeps_audio_and_base() {
    let mut sim = Sim::new();
    sim.run(&call(VIDEO), 200);
    // 1.5 Mbit/s: audio, base and the middle layer fit 90% of it, the top layer does not.
    sim.saturated(1_500_000);
    let t = sim.run(&call(VIDEO), 300);
    assert_eq!((t.shed(AUDIO, 0), t.sent(AUDIO, 0)), (0, 150));
    assert_eq!((t.shed(VIDEO, 0), t.sent(VIDEO, 0)), (0, 100));
    assert_eq!((t.shed(VIDEO, 1), t.sent(VIDEO, 1)), (0, 300));
    // Shed from the very next packet on: not one of the top layer's packets went.
    assert_eq!((t.shed(VIDEO, 2), t.sent(VIDEO, 2)), (600, 0));

    // 600 kbit/s: the middle layer goes too, audio and base stay.
    sim.saturated(600_000);
    let t = sim.run(&call(VIDEO), 300);
    assert_eq!((t.shed(AUDIO, 0), t.shed(VIDEO, 0)), (0, 0));
    assert_eq!((t.sent(VIDEO, 1), t.sent(VIDEO, 2)), (0, 0));

    // 40 kbit/s, less than audio alone: audio still goes, all video is shed.
    sim.saturated(40_000);
    let t = sim.run(&call(VIDEO), 300);
    assert_eq!((t.shed(AUDIO, 0), t.sent(AUDIO, 0)), (0, 150));
    assert_eq!(t.sent(VIDEO, 0) + t.sent(VIDEO, 1) + t.sent(VIDEO, 2), 0);
    let s = sim.shaper.stats();
    assert_eq!(s.audio_shed, 0);
    assert_eq!(s.layers_shed, 3);
    assert_eq!(s.layers_restored, 0);
    // What is sent fits the estimate whenever the estimate holds audio and base.
    sim.saturated(600_000);
    sim.run(&call(VIDEO), 400);
    assert!(sim.shaper.sending(sim.now, NODE) <= 600_000 * 9 / 10);
    assert!(sim.shaper.offered(sim.now, NODE) > 2_500_000);
}

#[test]
fn shed_layers_come_back_one_by_one_after_the_hold() {
    let mut sim = Sim::new();
    sim.run(&call(VIDEO), 200);
    sim.saturated(600_000);
    sim.run(&call(VIDEO), 50);
    assert!(!sim.sending(VIDEO, 1) && !sim.sending(VIDEO, 2));

    sim.flowing(10_000_000);
    // Two and a half seconds: nothing back yet.
    sim.run(&call(VIDEO), 250);
    assert!(!sim.sending(VIDEO, 1));
    // A dip below what the middle layer needs restarts the hold.
    sim.saturated(600_000);
    sim.run(&call(VIDEO), 10);
    sim.flowing(10_000_000);
    sim.run(&call(VIDEO), 250);
    assert!(!sim.sending(VIDEO, 1), "the hold restarted with the dip");
    sim.run(&call(VIDEO), 60);
    assert!(sim.sending(VIDEO, 1));
    // The top layer starts its own hold only once the one below it is back.
    assert!(!sim.sending(VIDEO, 2));
    let t = sim.run(&call(VIDEO), 310);
    assert!(sim.sending(VIDEO, 2));
    assert!(t.sent(VIDEO, 2) > 0 && t.shed(VIDEO, 2) > 0);
    assert_eq!(sim.shaper.stats().layers_restored, 2);
    // Back to sending everything.
    let t = sim.run(&call(VIDEO), 100);
    assert!(t.shed.is_empty(), "{t:?}");
}

#[test]
fn a_layer_goes_with_the_layer_below_it() {
    // Layer 1 is large, layer 2 small (not how simulcast usually is, but SVC-like
    // dependencies must hold whatever the sizes).
    let mut sources = call(VIDEO);
    sources[2].per_step = 2;
    sources[3].per_step = 1;
    sources[3].every = 10;
    sources[3].size = 200;
    let mut sim = Sim::new();
    sim.run(&sources, 200);
    // Fits audio + base + the small top layer, not the big middle one.
    sim.saturated(700_000);
    let t = sim.run(&sources, 300);
    assert_eq!(t.sent(VIDEO, 1), 0);
    assert_eq!(t.sent(VIDEO, 2), 0, "{t:?}");
    assert!(t.sent(VIDEO, 0) > 0);
}

#[test]
fn the_active_speakers_upper_layers_go_first() {
    let mut sources = call(VIDEO);
    sources.extend(call(OTHER).into_iter().skip(1));
    for speaker in [OTHER, VIDEO] {
        let mut sim = Sim::new();
        sim.shaper.set_speaker(speaker, true);
        sim.run(&sources, 200);
        // Audio, both bases and one middle layer fit.
        sim.saturated(1_500_000);
        let t = sim.run(&sources, 300);
        let quiet = if speaker == VIDEO { OTHER } else { VIDEO };
        assert_eq!(t.shed(speaker, 1), 0, "{t:?}");
        assert_eq!(t.sent(quiet, 1), 0, "{t:?}");
        assert_eq!((t.shed(VIDEO, 0), t.shed(OTHER, 0)), (0, 0));
    }
}

#[test]
fn audio_is_guessed_from_the_packets_or_told() {
    let mut sim = Sim::new();
    sim.run(&call(VIDEO), 100);
    let kind = |sim: &Sim, t, l| sim.shaper.layer(sim.now, NODE, t, l).unwrap().kind;
    assert_eq!(kind(&sim, AUDIO, 0), TrackKind::Audio);
    assert_eq!(kind(&sim, VIDEO, 0), TrackKind::Video);
    assert_eq!(kind(&sim, VIDEO, 2), TrackKind::Video);
    // A small single-layer track the driver says is video is video: it is shed.
    sim.shaper.set_track_kind(AUDIO, TrackKind::Video);
    sim.saturated(10_000);
    let t = sim.run(&call(VIDEO), 100);
    assert_eq!(t.sent(AUDIO, 0), 0);
    // And told audio, a big single-layer track is never shed.
    let big = [Source {
        track: OTHER,
        layer: 0,
        every: 1,
        per_step: 1,
        size: 1200,
    }];
    sim.shaper.apply(ShaperCommand::Kind {
        track: OTHER,
        kind: TrackKind::Audio,
    });
    let t = sim.run(&big, 100);
    assert_eq!(t.shed(OTHER, 0), 0);
    sim.shaper.forget_track(OTHER);
    sim.run(&big, 20);
    assert_eq!(kind(&sim, OTHER, 0), TrackKind::Video);
}

#[test]
fn idle_layers_and_closed_links_are_forgotten() {
    let mut sim = Sim::new();
    sim.run(&call(VIDEO), 100);
    assert_eq!(sim.shaper.layers(sim.now, NODE).len(), 4);
    // Only audio keeps going for six seconds.
    sim.run(&call(VIDEO)[..1], 600);
    let left: Vec<_> = sim
        .shaper
        .layers(sim.now, NODE)
        .iter()
        .map(|v| (v.track, v.layer))
        .collect();
    assert_eq!(left, [(AUDIO, 0)]);
    sim.shaper.remove_node(NODE);
    assert_eq!(sim.shaper.nodes().count(), 0);
    assert_eq!(sim.shaper.offered(sim.now, NODE), 0);
}

#[test]
fn an_unsaturated_link_keeps_what_it_carries_whatever_the_model_says() {
    let mut sim = Sim::new();
    sim.run(&call(VIDEO), 200);
    // An app-limited controller's model has seen less than is sent: no backlog, so
    // the link carries it all.
    sim.flowing(1_000_000);
    let t = sim.run(&call(VIDEO), 300);
    assert!(t.shed.is_empty(), "{t:?}");
    assert_eq!(sim.shaper.stats().layers_shed, 0);
}

#[test]
fn a_waiting_layer_is_tried_and_kept_when_the_link_takes_it() {
    let mut sim = Sim::new();
    sim.run(&call(VIDEO), 200);
    sim.saturated(1_500_000);
    sim.run(&call(VIDEO), 10);
    assert!(!sim.sending(VIDEO, 2));
    // The backlog is gone but the model stays where it was (nothing more was sent).
    sim.flowing(1_500_000);
    sim.run(&call(VIDEO), 450);
    assert!(!sim.sending(VIDEO, 2), "no trial before the interval");
    sim.run(&call(VIDEO), 60);
    assert!(sim.sending(VIDEO, 2), "on trial after 5 s");
    assert_eq!(sim.shaper.stats().probes, 1);
    // It holds for the trial time without a backlog: it stays.
    let t = sim.run(&call(VIDEO), 300);
    assert_eq!(t.shed(VIDEO, 2), 0);
    let s = sim.shaper.stats();
    assert_eq!((s.probes, s.probes_held), (1, 1));
    assert!(sim.sending(VIDEO, 2));
}

#[test]
fn a_trial_that_backs_the_link_up_is_shed_and_the_next_waits_twice_as_long() {
    let mut sim = Sim::new();
    sim.run(&call(VIDEO), 200);
    sim.saturated(1_500_000);
    sim.run(&call(VIDEO), 10);
    sim.flowing(1_500_000);
    sim.run(&call(VIDEO), 510);
    assert!(sim.sending(VIDEO, 2), "on trial");
    // The link cannot take it: it backs up.
    sim.saturated(1_500_000);
    assert!(!sim.sending(VIDEO, 2), "shed at once");
    assert!(sim.sending(VIDEO, 1), "the layers that fit stay");
    sim.run(&call(VIDEO), 10);
    sim.flowing(1_500_000);
    // The next trial comes 10 s after the failure, not 5.
    sim.run(&call(VIDEO), 950);
    assert!(!sim.sending(VIDEO, 2));
    sim.run(&call(VIDEO), 100);
    assert!(sim.sending(VIDEO, 2));
    let s = sim.shaper.stats();
    assert_eq!((s.probes, s.probes_held), (2, 0));
    assert_eq!(s.audio_shed, 0);
}
