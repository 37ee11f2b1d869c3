//! The active speaker of each room, from the loudness of this node's publishers' audio
//! (the router condenses each track's RFC 6464 levels into one report per
//! [`sluice_dataplane::router::SPEECH_INTERVAL`]). The link shaper keeps the speaker's
//! video at the best layers a link allows.
//!
//! Each node judges the publishers it hosts: those are the tracks its links carry, so
//! that is whose video its shaper orders. A room whose loudest voice is on another node
//! still has a local speaker here only if someone here speaks up.
//!
//! - A track's **score** is a moving average of its loudness above a noise floor; a
//!   track that stops reporting (Opus DTX sends nothing in silence) decays as silent.
//! - The **first** publisher to reach [`SpeakerConfig::min_score`] becomes the speaker.
//! - A **challenger** takes over only when its score beats the speaker's by
//!   [`SpeakerConfig::switch_margin_percent`] for [`SpeakerConfig::switch_hold`], so a
//!   cough or crosstalk does not flip the layers of a link.
//! - When everyone falls silent, the last speaker **stays** (what people expect in a
//!   call: the last one who spoke is still shown large).
//!
//! Sans-IO: [`SpeakerDetector::on_level`] per report, [`SpeakerDetector::handle_timeout`]
//! when [`SpeakerDetector::poll_timeout`] says, changes from
//! [`SpeakerDetector::poll_change`].

use sluice_dataplane::engine::Micros;
use sluice_dataplane::router::TrackId;
use std::collections::{HashMap, VecDeque};

#[derive(Debug, Clone)]
pub struct SpeakerConfig {
    /// How often rooms are judged.
    pub tick: Micros,
    /// Loudness (127 minus -dBov) at or below which audio counts as silence: room tone
    /// and a muted microphone's comfort noise sit under it.
    pub floor: u8,
    /// Weight of a new report in a track's score, percent.
    pub smoothing_percent: u32,
    /// A track with no report for this long is treated as silent.
    pub silence_after: Micros,
    /// Score a publisher needs to count as speaking at all.
    pub min_score: f64,
    /// A challenger must beat the speaker's score by this share...
    pub switch_margin_percent: u32,
    /// ...continuously for this long.
    pub switch_hold: Micros,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        Self {
            tick: 200_000,
            // -60 dBov.
            floor: 67,
            smoothing_percent: 30,
            silence_after: 600_000,
            min_score: 5.0,
            switch_margin_percent: 50,
            switch_hold: 600_000,
        }
    }
}

/// A room's speaker changed: `previous` no longer is, `current` now is (`None` when the
/// speaker's audio ended and nobody speaks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerChange {
    pub room: String,
    pub previous: Option<String>,
    pub current: Option<String>,
}

#[derive(Debug)]
struct AudioTrack {
    room: String,
    publisher: String,
    score: f64,
    last_report: Option<Micros>,
}

#[derive(Debug, Default)]
struct Room {
    speaker: Option<String>,
    /// Who is louder than the speaker, since when.
    challenger: Option<(String, Micros)>,
}

#[derive(Debug, Default)]
pub struct SpeakerDetector {
    config: SpeakerConfig,
    tracks: HashMap<TrackId, AudioTrack>,
    rooms: HashMap<String, Room>,
    changes: VecDeque<SpeakerChange>,
    next_tick: Option<Micros>,
}

impl SpeakerDetector {
    pub fn new(config: SpeakerConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// A local publisher's audio track, whose loudness reports will come.
    pub fn add_track(&mut self, track: TrackId, room: &str, publisher: &str) {
        self.tracks.insert(
            track,
            AudioTrack {
                room: room.to_owned(),
                publisher: publisher.to_owned(),
                score: 0.0,
                last_report: None,
            },
        );
        self.rooms.entry(room.to_owned()).or_default();
    }

    /// The track ended. A speaker with no audio left stops being one at once.
    pub fn remove_track(&mut self, track: TrackId) {
        let Some(t) = self.tracks.remove(&track) else {
            return;
        };
        let still_heard = self
            .tracks
            .values()
            .any(|o| o.room == t.room && o.publisher == t.publisher);
        let room_left = !self.tracks.values().any(|o| o.room == t.room);
        if let Some(room) = self.rooms.get_mut(&t.room) {
            if room
                .challenger
                .as_ref()
                .is_some_and(|(c, _)| *c == t.publisher && !still_heard)
            {
                room.challenger = None;
            }
            if !still_heard && room.speaker.as_deref() == Some(t.publisher.as_str()) {
                room.speaker = None;
                self.changes.push_back(SpeakerChange {
                    room: t.room.clone(),
                    previous: Some(t.publisher),
                    current: None,
                });
            }
        }
        if room_left {
            self.rooms.remove(&t.room);
        }
    }

    /// One loudness report (0 silence, 127 loudest) of a track; unknown tracks are
    /// ignored.
    pub fn on_level(&mut self, now: Micros, track: TrackId, loudness: u8) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        let activity = f64::from(loudness.saturating_sub(self.config.floor));
        let w = f64::from(self.config.smoothing_percent.min(100)) / 100.0;
        t.score = t.score * (1.0 - w) + activity * w;
        t.last_report = Some(now);
        self.next_tick.get_or_insert(now + self.config.tick);
    }

    /// The speaker of `room`, if anyone has spoken.
    pub fn speaker(&self, room: &str) -> Option<&str> {
        self.rooms.get(room)?.speaker.as_deref()
    }

    pub fn poll_timeout(&self) -> Option<Micros> {
        self.next_tick
    }

    pub fn poll_change(&mut self) -> Option<SpeakerChange> {
        self.changes.pop_front()
    }

    /// Decays silent tracks and judges every room.
    pub fn handle_timeout(&mut self, now: Micros) {
        match self.next_tick {
            Some(due) if now >= due => {}
            _ => return,
        }
        self.next_tick = (!self.tracks.is_empty()).then_some(now + self.config.tick);
        let keep = 1.0 - f64::from(self.config.smoothing_percent.min(100)) / 100.0;
        for t in self.tracks.values_mut() {
            let silent = t
                .last_report
                .is_none_or(|at| now.saturating_sub(at) >= self.config.silence_after);
            if silent {
                t.score *= keep;
            }
        }
        // Loudest publisher per room (a publisher's loudest track, if it has several).
        let mut loudest: HashMap<&str, (&str, f64)> = HashMap::new();
        let mut scores: HashMap<(&str, &str), f64> = HashMap::new();
        for t in self.tracks.values() {
            let s = scores.entry((&t.room, &t.publisher)).or_default();
            *s = s.max(t.score);
            let best = loudest.entry(&t.room).or_insert((&t.publisher, t.score));
            if t.score > best.1 {
                *best = (&t.publisher, t.score);
            }
        }
        for (name, room) in &mut self.rooms {
            let Some(&(best, best_score)) = loudest.get(name.as_str()) else {
                continue;
            };
            if best_score < self.config.min_score {
                room.challenger = None;
                continue;
            }
            let current = room.speaker.as_deref();
            if current == Some(best) {
                room.challenger = None;
                continue;
            }
            let speaker_score = current
                .and_then(|p| scores.get(&(name.as_str(), p)))
                .copied()
                .unwrap_or(0.0);
            let margin = 1.0 + f64::from(self.config.switch_margin_percent) / 100.0;
            let takes_over = match current {
                None => true,
                Some(_) if best_score > speaker_score * margin => {
                    let since = match &room.challenger {
                        Some((c, since)) if c == best => *since,
                        _ => {
                            room.challenger = Some((best.to_owned(), now));
                            now
                        }
                    };
                    now.saturating_sub(since) >= self.config.switch_hold
                }
                Some(_) => {
                    room.challenger = None;
                    false
                }
            };
            if takes_over {
                let previous = room.speaker.replace(best.to_owned());
                room.challenger = None;
                self.changes.push_back(SpeakerChange {
                    room: name.clone(),
                    previous,
                    current: Some(best.to_owned()),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: &str = "r";
    const A: TrackId = 1;
    const B: TrackId = 2;

    /// Reports every 200 ms for `ms` milliseconds: `(track, loudness)`; a track left out
    /// sends nothing (DTX).
    fn talk(d: &mut SpeakerDetector, now: &mut Micros, ms: u64, levels: &[(TrackId, u8)]) {
        for _ in 0..ms / 200 {
            *now += 200_000;
            for &(t, l) in levels {
                d.on_level(*now, t, l);
            }
            d.handle_timeout(*now);
        }
    }

    fn changes(d: &mut SpeakerDetector) -> Vec<(Option<String>, Option<String>)> {
        std::iter::from_fn(|| d.poll_change())
            .map(|c| (c.previous, c.current))
            .collect()
    }

    fn two() -> SpeakerDetector {
        let mut d = SpeakerDetector::new(SpeakerConfig::default());
        d.add_track(A, ROOM, "alice");
        d.add_track(B, ROOM, "bob");
        d
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn the_first_voice_becomes_the_speaker_and_stays_through_silence() {
        let mut d = two();
        let mut now = 0;
        // Room tone (-70 dBov) on both: nobody speaks.
        talk(&mut d, &mut now, 2_000, &[(A, 57), (B, 57)]);
        assert_eq!(d.speaker(ROOM), None);
        assert!(changes(&mut d).is_empty());
        // Bob at -25 dBov.
        talk(&mut d, &mut now, 1_000, &[(A, 57), (B, 102)]);
        assert_eq!(d.speaker(ROOM), Some("bob"));
        assert_eq!(changes(&mut d), vec![(None, some("bob"))]);
        // Everyone silent, then DTX (no reports at all): bob stays.
        talk(&mut d, &mut now, 2_000, &[(A, 57), (B, 57)]);
        talk(&mut d, &mut now, 5_000, &[]);
        assert_eq!(d.speaker(ROOM), Some("bob"));
        assert!(changes(&mut d).is_empty());
    }

    #[test]
    fn a_louder_voice_takes_over_only_when_it_holds() {
        let mut d = two();
        let mut now = 0;
        talk(&mut d, &mut now, 2_000, &[(A, 100), (B, 57)]);
        assert_eq!(changes(&mut d), vec![(None, some("alice"))]);
        // A 200 ms shout from bob while alice talks: no switch.
        talk(&mut d, &mut now, 200, &[(A, 100), (B, 120)]);
        talk(&mut d, &mut now, 1_000, &[(A, 100), (B, 57)]);
        assert_eq!(d.speaker(ROOM), Some("alice"));
        // Both talk at the same level: no flapping.
        talk(&mut d, &mut now, 3_000, &[(A, 100), (B, 100)]);
        assert_eq!(d.speaker(ROOM), Some("alice"));
        assert!(changes(&mut d).is_empty());
        // Alice stops; bob goes on: bob takes over once his lead has held.
        talk(&mut d, &mut now, 3_000, &[(A, 57), (B, 100)]);
        assert_eq!(d.speaker(ROOM), Some("bob"));
        assert_eq!(changes(&mut d), vec![(some("alice"), some("bob"))]);
    }

    #[test]
    fn a_silent_dtx_speaker_is_overtaken() {
        let mut d = two();
        let mut now = 0;
        talk(&mut d, &mut now, 2_000, &[(A, 100)]);
        // Alice's track goes quiet in DTX (no reports); bob speaks.
        talk(&mut d, &mut now, 3_000, &[(B, 100)]);
        assert_eq!(d.speaker(ROOM), Some("bob"));
        assert_eq!(
            changes(&mut d),
            vec![(None, some("alice")), (some("alice"), some("bob"))]
        );
    }

    #[test]
    fn rooms_are_judged_apart_and_an_ended_speaker_is_dropped() {
        let mut d = two();
        d.add_track(3, "other", "carol");
        let mut now = 0;
        talk(&mut d, &mut now, 2_000, &[(A, 100), (3, 90)]);
        assert_eq!(d.speaker(ROOM), Some("alice"));
        assert_eq!(d.speaker("other"), Some("carol"));
        let _ = changes(&mut d);
        d.remove_track(A);
        assert_eq!(d.speaker(ROOM), None);
        assert_eq!(changes(&mut d), vec![(some("alice"), None)]);
        // Reports of unknown tracks change nothing.
        talk(&mut d, &mut now, 2_000, &[(99, 127)]);
        assert_eq!(d.speaker(ROOM), None);
        d.remove_track(3);
        d.remove_track(B);
        assert!(d.rooms.is_empty() && d.tracks.is_empty());
    }
}
