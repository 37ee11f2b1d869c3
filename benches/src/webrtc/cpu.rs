//! CPU time of whole processes: the server under test by pid, and the load generator
//! itself (both from /proc, as the node's own load report reads it).

pub use sluice_control::node::process_cpu_of as process_cpu;

/// Restricts this process's calling thread, and threads it starts later, to `cpu`.
pub fn pin_process(cpu: usize) -> std::io::Result<()> {
    crate::dataplane::cpu::pin_current_thread(cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn own_cpu_time_grows_with_work() {
        let before = process_cpu(None).unwrap();
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(process_cpu(None).unwrap() > before);
        assert!(process_cpu(Some(std::process::id())).is_some());
        assert!(process_cpu(Some(u32::MAX)).is_none());
    }
}
