//! Which cores this process may run on, and pinning a worker to one of them.
//!
//! Core ids come from the process's allowed set (cgroup cpuset, `taskset`, systemd's
//! `CPUAffinity=`), never `0..n`: a node confined to cores 4-7 must pin its workers there,
//! where `sched_setaffinity` to core 0 would fail with EINVAL.

use std::io;
use std::mem::size_of;

const SET_BITS: usize = 8 * size_of::<libc::cpu_set_t>();

/// The cores the calling thread may run on, ascending. At start-up that is the process's
/// allowed set; call it before any worker pins itself.
pub fn allowed_cores() -> io::Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is the empty set; the kernel fills at most its size.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        set
    };
    // SAFETY: CPU_ISSET reads within the set for every index below SET_BITS.
    let cores: Vec<usize> = (0..SET_BITS)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect();
    if cores.is_empty() {
        return Err(io::Error::other("sched_getaffinity returned an empty set"));
    }
    Ok(cores)
}

/// Restricts the calling thread to `core`.
pub(crate) fn pin(core: usize) -> io::Result<()> {
    if core >= SET_BITS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("core {core} out of range"),
        ));
    }
    // SAFETY: a zeroed cpu_set_t is the empty set; `core` is in range (checked above).
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("pinning to core {core}: {e}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_threads_allowed_set() {
        // On a thread of its own, so that narrowing its set leaves the test harness alone.
        std::thread::spawn(|| {
            let all = allowed_cores().unwrap();
            let last = *all.last().unwrap();
            pin(last).unwrap();
            assert_eq!(allowed_cores().unwrap(), vec![last]);
            let outside = (0..SET_BITS).find(|c| !all.contains(c)).unwrap();
            // A core outside the allowed set is refused, with the core in the message.
            let err = pin(outside).unwrap_err();
            assert!(
                err.to_string().contains(&format!("core {outside}")),
                "{err}"
            );
            assert_eq!(allowed_cores().unwrap(), vec![last]);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn out_of_range_core_is_an_error() {
        assert_eq!(
            pin(SET_BITS).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
