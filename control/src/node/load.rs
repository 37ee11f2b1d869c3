//! What this node tells the cluster about its load, for placement: sessions, CPU and
//! each link's RTT and loss. Published through the state crate's load gossip (which
//! rides SWIM messages) every [`LOAD_INTERVAL`]; the gossip sends only material changes.

use crate::cluster::LinkHandle;
use sluice_state::{LinkQuality, LoadSample, NodeId};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const LOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Linux reports process CPU time in clock ticks of 1/100 s on every architecture we
/// run on (`getconf CLK_TCK`).
const CLOCK_TICKS_PER_SEC: u64 = 100;

/// CPU time of this process so far, from `/proc/self/stat` (user + system).
pub fn process_cpu() -> Option<Duration> {
    process_cpu_of(None)
}

/// CPU time (user + system) of process `pid` so far (`None`: this one), from its
/// `/proc/<pid>/stat`, at 10 ms resolution. Threads that already exited are included.
pub fn process_cpu_of(pid: Option<u32>) -> Option<Duration> {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_owned(),
        |p| format!("/proc/{p}/stat"),
    );
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces; fields resume after its closing parenthesis.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis(
        (utime + stime) * 1000 / CLOCK_TICKS_PER_SEC,
    ))
}

#[derive(Debug)]
pub struct LoadMeter {
    cores: u32,
    last_cpu: Option<(Instant, Duration)>,
    /// Per peer: (sent, lost) packets at the last sample, for loss over the interval.
    last_link: HashMap<u32, (u64, u64)>,
    /// The last sample made, for this node's own placement score.
    pub last: LoadSample,
}

impl Default for LoadMeter {
    fn default() -> Self {
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            last_cpu: None,
            last_link: HashMap::new(),
            last: LoadSample::default(),
        }
    }
}

impl LoadMeter {
    /// A sample now: CPU over the time since the previous one, as a share of every core.
    pub fn sample(
        &mut self,
        sessions: usize,
        draining: bool,
        links: &[(u32, LinkHandle)],
    ) -> LoadSample {
        let now = Instant::now();
        let cpu = process_cpu();
        let cpu_permille = match (self.last_cpu, cpu) {
            (Some((at, before)), Some(cpu)) => {
                let wall = now.duration_since(at).as_micros().max(1) * u128::from(self.cores);
                (cpu.saturating_sub(before).as_micros() * 1000 / wall).min(1000) as u16
            }
            _ => 0,
        };
        if let Some(cpu) = cpu {
            self.last_cpu = Some((now, cpu));
        }
        self.last_link
            .retain(|n, _| links.iter().any(|(m, _)| m == n));
        let links = links
            .iter()
            .map(|(node, handle)| {
                let s = handle.stats();
                let (sent0, lost0) = self
                    .last_link
                    .insert(*node, (s.sent_packets, s.lost_packets))
                    .unwrap_or((0, 0));
                let sent = s.sent_packets.saturating_sub(sent0);
                let lost = s.lost_packets.saturating_sub(lost0);
                LinkQuality {
                    peer: NodeId(u64::from(*node)),
                    rtt_ms: s.rtt.as_millis().min(u128::from(u16::MAX)) as u16,
                    loss_permille: (lost * 1000).checked_div(sent).unwrap_or(0).min(1000) as u16,
                }
            })
            .collect();
        self.last = LoadSample {
            cpu_permille,
            sessions: sessions.min(u32::MAX as usize) as u32,
            egress_bps: 0,
            links,
            draining,
        };
        self.last.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_cpu_reads_and_grows() {
        let before = process_cpu().expect("/proc/self/stat is readable");
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(process_cpu().unwrap() >= before);
    }
}
