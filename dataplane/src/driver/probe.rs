//! Can this process use the io_uring driver? Creating a ring is not enough: a seccomp
//! profile may allow io_uring_setup and still refuse what we need, and multishot receive
//! (6.0) and buffer rings (5.19) are younger than io_uring itself. So the probe does what
//! a worker does, once: registers a buffer ring, arms a multishot RecvMsg on a loopback
//! socket and receives one datagram through it.

use super::bufring::BufRing;
use super::uring::build_ring;
use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, register::Probe};
use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

/// Why io_uring_setup failed, in words an operator can act on.
fn explain_setup(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSYS) => {
            "io_uring_setup: ENOSYS (kernel built without io_uring, or a seccomp profile \
             such as a container default blocks it)"
                .to_owned()
        }
        Some(libc::EPERM) => {
            let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unreadable".to_owned());
            format!(
                "io_uring_setup: EPERM (kernel.io_uring_disabled = {sysctl}; 2 disables it \
                 for everyone, 1 for processes outside kernel.io_uring_group; or a seccomp \
                 profile denies it)"
            )
        }
        Some(libc::ENOMEM) => {
            "io_uring_setup: ENOMEM (io_uring charges its rings to RLIMIT_MEMLOCK, per \
             user, unless the process has CAP_IPC_LOCK: raise the limit, e.g. \
             LimitMEMLOCK=infinity; see docs/tuning.md#memory-lock-limit)"
                .to_owned()
        }
        _ => format!("io_uring_setup: {e}"),
    }
}

/// `Ok` when the io_uring driver can run here; otherwise why not.
///
/// Runs on a short-lived thread of its own: tearing a ring down can leave task work
/// queued for the thread that owned it, which would interrupt that thread's next blocking
/// syscall (EINTR) — the caller's, if the probe ran there.
pub fn probe_uring() -> Result<(), String> {
    std::thread::Builder::new()
        .name("sluice-probe".to_owned())
        .spawn(probe_here)
        .map_err(|e| format!("spawning the probe thread: {e}"))?
        .join()
        .map_err(|_| "the io_uring probe panicked".to_owned())?
}

fn probe_here() -> Result<(), String> {
    let mut ring = build_ring(8, 16).map_err(|e| explain_setup(&e))?;
    if !ring.params().is_feature_ext_arg() {
        return Err("kernel lacks IORING_FEAT_EXT_ARG (needs 5.11)".to_owned());
    }
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("IORING_REGISTER_PROBE: {e}"))?;
    for (code, name) in [
        (opcode::RecvMsg::CODE, "RECVMSG"),
        (opcode::SendMsg::CODE, "SENDMSG"),
        (opcode::Read::CODE, "READ"),
    ] {
        if !probe.is_supported(code) {
            return Err(format!("io_uring opcode {name} unsupported"));
        }
    }
    let mut bufs = BufRing::new(2, 256, 0).map_err(|e| format!("buffer ring memory: {e}"))?;
    bufs.register(&ring.submitter())
        .map_err(|e| format!("registering a provided-buffer ring (needs 5.19): {e}"))?;

    // Loopback being unusable is not io_uring's fault: the checks above then suffice.
    let Ok((rx, tx)) = UdpSocket::bind("127.0.0.1:0").and_then(|rx| {
        let tx = UdpSocket::bind("127.0.0.1:0")?;
        Ok((rx, tx))
    }) else {
        return Ok(());
    };
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_namelen = super::sockaddr::NAME_LEN;
    let sqe = opcode::RecvMsgMulti::new(Fd(rx.as_raw_fd()), &msg, 0)
        .build()
        .user_data(1);
    // SAFETY: `msg` and the buffer ring outlive the request (cancelled below).
    unsafe { ring.submission().push(&sqe) }.map_err(|_| "submission queue full".to_owned())?;
    ring.submit()
        .map_err(|e| format!("submitting RECVMSG: {e}"))?;
    let result = (|| {
        let target = rx.local_addr().map_err(|e| e.to_string())?;
        tx.send_to(b"probe", target).map_err(|e| e.to_string())?;
        let ts = Timespec::new().sec(1);
        let args = SubmitArgs::new().timespec(&ts);
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
            Err(e) => return Err(format!("waiting for a completion: {e}")),
        }
        let Some(cqe) = ring.completion().next() else {
            return Err("multishot RECVMSG delivered nothing within 1 s".to_owned());
        };
        if cqe.result() < 0 {
            return Err(format!(
                "multishot RECVMSG failed: {} (needs 6.0)",
                io::Error::from_raw_os_error(-cqe.result())
            ));
        }
        if cqueue::buffer_select(cqe.flags()).is_none() || !cqueue::more(cqe.flags()) {
            return Err("RECVMSG did not stay multishot with a provided buffer".to_owned());
        }
        Ok(())
    })();
    let _ = ring
        .submitter()
        .register_sync_cancel(Some(Timespec::new().sec(1)), CancelBuilder::any());
    drop(ring);
    drop(bufs);
    result
}
