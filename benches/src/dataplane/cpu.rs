//! Clocks, per-thread CPU time and CPU pinning (Linux).

use std::io;

/// CLOCK_MONOTONIC in nanoseconds: the clock both ends of a loopback run share, so a
/// sender's timestamp and a receiver's reading subtract into a one-way latency.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CPU time the calling thread has used, in nanoseconds.
pub fn current_thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock ids used here always exist.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The kernel thread id of the calling thread.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// CPU time (user + system) thread `tid` of this process has used, in nanoseconds:
/// `/proc/self/task/<tid>/schedstat` (nanosecond resolution), or the clock-tick counts
/// of `/proc/self/task/<tid>/stat` where the kernel has no schedstat.
pub fn thread_cpu_ns(tid: i32) -> io::Result<u64> {
    if let Ok(s) = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        && let Some(ns) = s.split_whitespace().next().and_then(|v| v.parse().ok())
    {
        return Ok(ns);
    }
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))?;
    // The command name (field 2) may hold spaces; fields after its closing parenthesis
    // start at field 3, so utime and stime (fields 14, 15) are the 12th and 13th.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("malformed stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> io::Result<u64> {
        f.get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| io::Error::other("malformed stat"))
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok((ticks(11)? + ticks(12)?) * 1_000_000_000 / hz)
}

/// Time thread `tid` spent waiting on a run queue (runnable, but another task had its
/// CPU), in nanoseconds: the second field of its schedstat; `None` without schedstat.
pub fn thread_wait_ns(tid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Busy time of `cpu` since boot (every `/proc/stat` column but idle and iowait), in
/// nanoseconds, at clock-tick resolution.
pub fn cpu_busy_ns(cpu: usize) -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: u64 = f
        .iter()
        .take(8)
        .enumerate()
        .filter(|&(i, _)| i != 3 && i != 4)
        .map(|(_, v)| v)
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(busy * 1_000_000_000 / hz)
}

/// Waits (up to `limit`) until each of `cpus` is less than `max_busy` busy over a
/// 250 ms sample, so a measurement does not start while other work runs there. Returns
/// how long it waited and whether the cores were quiet in the end.
pub fn wait_for_quiet(cpus: &[usize], max_busy: f64, limit: std::time::Duration) -> (f64, bool) {
    let start = std::time::Instant::now();
    let sample = std::time::Duration::from_millis(250);
    loop {
        let before: Vec<Option<u64>> = cpus.iter().map(|&c| cpu_busy_ns(c)).collect();
        std::thread::sleep(sample);
        let quiet = cpus
            .iter()
            .zip(&before)
            .all(|(&c, b)| match (b, cpu_busy_ns(c)) {
                (Some(b), Some(a)) => ((a - b) as f64) < max_busy * sample.as_nanos() as f64,
                _ => true,
            });
        let waited = start.elapsed();
        if quiet || waited >= limit {
            return (waited.saturating_sub(sample).as_secs_f64(), quiet);
        }
    }
}

/// Pins the calling thread to one CPU.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET writes inside it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// CPUs this process may run on.
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The 1-minute load average, to warn when other work shares the machine.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_thread_cpu_time_moves() {
        let tid = gettid();
        let a = thread_cpu_ns(tid).unwrap();
        let start = monotonic_ns();
        let mut x = 0u64;
        while monotonic_ns() - start < 20_000_000 {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        std::hint::black_box(x);
        let b = thread_cpu_ns(tid).unwrap();
        assert!(b > a, "{a} -> {b}");
        assert!(current_thread_cpu_ns() > 0);
    }
}
