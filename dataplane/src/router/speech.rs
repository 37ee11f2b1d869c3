//! How loud a local publisher's audio is, from the RFC 6464 audio level its packets
//! carry. The router only condenses the levels; who the room's active speaker is gets
//! decided in the control plane, which knows rooms and publishers
//! (`sluice_control::cascade::speaker`).
//!
//! Per packet: an add and a compare, no allocation. Once per [`SPEECH_INTERVAL`] of a
//! track's packets the interval's mean comes out as a
//! [`super::UpstreamEvent::AudioLevel`]. A track that stops sending (Opus DTX in
//! silence) reports nothing: the control plane reads silence from the gap.

use super::Micros;

/// How much audio one loudness report sums up.
pub const SPEECH_INTERVAL: Micros = 200_000;

/// The RFC 6464 level of silence, in -dBov.
const SILENT: u32 = 127;

#[derive(Debug, Default)]
pub struct SpeechMeter {
    since: Option<Micros>,
    level_sum: u32,
    packets: u32,
}

impl SpeechMeter {
    /// Adds one packet's level (-dBov, 0 loudest, 127 silence). When an interval ended
    /// before this packet, returns that interval's loudness: 127 minus its mean level,
    /// so 0 is silence and louder is more.
    pub fn on_packet(&mut self, now: Micros, level: u8) -> Option<u8> {
        let since = *self.since.get_or_insert(now);
        let mut report = None;
        if now.saturating_sub(since) >= SPEECH_INTERVAL {
            report = self
                .level_sum
                .checked_div(self.packets)
                .map(|mean| (SILENT - mean.min(SILENT)) as u8);
            self.since = Some(now);
            self.level_sum = 0;
            self.packets = 0;
        }
        self.level_sum += u32::from(level).min(SILENT);
        self.packets += 1;
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_mean_loudness_once_per_interval() {
        let mut m = SpeechMeter::default();
        let mut reports = Vec::new();
        // One second of 20 ms packets alternating -20 and -40 dBov.
        for i in 0..50u64 {
            let level = if i % 2 == 0 { 20 } else { 40 };
            reports.extend(m.on_packet(i * 20_000, level));
        }
        // Intervals end at 200, 400, 600 and 800 ms; the last is still open.
        assert_eq!(reports, vec![97; 4]);
    }

    #[test]
    fn silence_and_out_of_range_levels() {
        let mut m = SpeechMeter::default();
        assert_eq!(m.on_packet(0, 127), None);
        assert_eq!(m.on_packet(10_000, 255), None);
        assert_eq!(m.on_packet(SPEECH_INTERVAL, 0), Some(0));
        // A gap (DTX) ends the interval at the next packet; nothing is made up for it.
        assert_eq!(m.on_packet(5 * SPEECH_INTERVAL, 10), Some(127));
        assert_eq!(m.on_packet(5 * SPEECH_INTERVAL + 1, 10), None);
    }
}
