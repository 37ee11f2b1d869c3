//! A running node's workers: start, talk to, observe and stop them.

use super::affinity::pin;
use super::config::{DriverConfig, DriverKind};
use super::core::Core;
use super::mmsg::MmsgIo;
use super::probe::probe_uring;
use super::shared::{Shared, Waker};
use super::stats::{WorkerStats, clock_ns};
use super::steer;
use super::uring::UringIo;
use crate::engine::{LinkPacket, Micros, PacketHandler, WorkerId};
use crossbeam_channel::{Receiver, Sender};
use socket2::Socket;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::thread::JoinHandleExt;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::thread::{self, JoinHandle};

/// The driver that actually runs, and why it is not io_uring when `Auto` fell back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveDriver {
    /// `Uring` or `Mmsg`, never `Auto`.
    pub kind: DriverKind,
    pub fallback_reason: Option<String>,
}

/// The workers of one node, all serving one UDP port.
pub struct Workers<H: PacketHandler> {
    shared: Arc<Shared<H::Handoff>>,
    commands: Vec<Sender<H::Command>>,
    threads: Vec<JoinHandle<H>>,
    local_addr: SocketAddr,
    active: ActiveDriver,
    links: Receiver<LinkPacket>,
}

impl<H: PacketHandler> fmt::Debug for Workers<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workers")
            .field("local_addr", &self.local_addr)
            .field("workers", &self.shared.workers)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

fn choose(kind: DriverKind) -> io::Result<ActiveDriver> {
    match kind {
        DriverKind::Mmsg => Ok(ActiveDriver {
            kind: DriverKind::Mmsg,
            fallback_reason: None,
        }),
        DriverKind::Uring => match probe_uring() {
            Ok(()) => Ok(ActiveDriver {
                kind: DriverKind::Uring,
                fallback_reason: None,
            }),
            Err(why) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring driver requested but unavailable: {why}"),
            )),
        },
        DriverKind::Auto => Ok(match probe_uring() {
            Ok(()) => ActiveDriver {
                kind: DriverKind::Uring,
                fallback_reason: None,
            },
            Err(why) => {
                tracing::warn!(
                    "io_uring unavailable ({why}); running the recvmmsg/sendmmsg driver"
                );
                ActiveDriver {
                    kind: DriverKind::Mmsg,
                    fallback_reason: Some(why),
                }
            }
        }),
    }
}

/// How a worker's start went. A ring that could not be set up is told apart from other
/// failures: under `DriverKind::Auto` the node runs recvmmsg instead (commonly
/// RLIMIT_MEMLOCK, which io_uring charges per user and a probe's small ring passes).
enum Started {
    Ready,
    RingFailed(io::Error),
    Failed(io::Error),
}

type Ready = Sender<(WorkerId, Started)>;

/// io_uring charges rings and buffer rings to RLIMIT_MEMLOCK: ENOMEM there is that limit,
/// which the operator can raise.
fn memlock_hint(e: &io::Error) -> &'static str {
    if e.raw_os_error() == Some(libc::ENOMEM) {
        " (io_uring counts its rings against RLIMIT_MEMLOCK: raise it, e.g. \
         LimitMEMLOCK=infinity; see docs/tuning.md#memory-lock-limit)"
    } else {
        ""
    }
}

/// The I/O a worker set up, before it is told which one the node runs.
enum Io {
    Uring(Box<UringIo>),
    Mmsg(Box<MmsgIo>),
    None,
}

fn worker_main<H: PacketHandler>(
    core: Core<H>,
    socket: Socket,
    cfg: DriverConfig,
    kind: DriverKind,
    ready: Ready,
    go: Receiver<DriverKind>,
) -> H {
    let id = core.id;
    // SAFETY: plain syscall.
    core.stats().tid.store(unsafe { libc::gettid() }, Relaxed);
    if let Some(cores) = cfg.pin_cores.as_ref().filter(|c| !c.is_empty())
        && let Err(e) = pin(cores[id % cores.len()])
    {
        let _ = ready.send((id, Started::Failed(e)));
        return core.handler;
    }
    if let Some(hook) = &cfg.on_worker_start {
        hook(id);
    }
    let v6 = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .is_some_and(|a| a.is_ipv6());
    let io = match kind {
        DriverKind::Mmsg => Io::Mmsg(Box::new(MmsgIo::new(&cfg, v6))),
        _ => match UringIo::new(&cfg, v6) {
            Ok(io) => Io::Uring(Box::new(io)),
            Err(e) => {
                let _ = ready.send((id, Started::RingFailed(e)));
                Io::None
            }
        },
    };
    if !matches!(io, Io::None) {
        let _ = ready.send((id, Started::Ready));
    }
    // Every worker runs the same driver: a ring set up here is dropped (on this thread,
    // which owns it) when another worker's could not be and the node falls back.
    match (go.recv(), io) {
        (Ok(DriverKind::Uring), Io::Uring(io)) => io.run(core, socket),
        (Ok(DriverKind::Mmsg), io) => {
            let io = match io {
                Io::Mmsg(io) => *io,
                unused => {
                    drop(unused);
                    MmsgIo::new(&cfg, v6)
                }
            };
            io.run(core, socket)
        }
        // Told to stop (the start failed), or told to run a ring this worker lacks,
        // which `start` never does.
        _ => core.handler,
    }
}

impl<H: PacketHandler> Workers<H> {
    /// Binds the port, starts one thread per worker with the handler `make_handler(id,
    /// workers)` gives it, and returns once every worker is ready to receive (or the first
    /// error, after stopping the others).
    pub fn start(
        cfg: DriverConfig,
        mut make_handler: impl FnMut(WorkerId, usize) -> H,
    ) -> io::Result<Self> {
        if cfg.workers == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "workers must be >= 1",
            ));
        }
        let active = choose(cfg.kind)?;
        let (sockets, local_addr) = steer::bind_group(&cfg)?;
        let n = sockets.len();
        let wakers = (0..n)
            .map(|_| Waker::new())
            .collect::<io::Result<Vec<_>>>()?;
        let (link_tx, links) = crossbeam_channel::bounded(cfg.link_queue.max(1));
        let shared = Arc::new(Shared::new(wakers, cfg.handoff_queue, link_tx));
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(n);
        let mut go = Vec::with_capacity(n);
        let mut workers = Self {
            shared: shared.clone(),
            commands: Vec::with_capacity(n),
            threads: Vec::with_capacity(n),
            local_addr,
            active,
            links,
        };
        for (id, socket) in sockets.into_iter().enumerate() {
            let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
            let (go_tx, go_rx) = crossbeam_channel::bounded(1);
            let core = Core::new(id, make_handler(id, n), shared.clone(), cmd_rx, &cfg);
            let (cfg, kind, ready) = (cfg.clone(), workers.active.kind, ready_tx.clone());
            let spawned = thread::Builder::new()
                .name(format!("sluice-w{id}"))
                .spawn(move || worker_main(core, socket, cfg, kind, ready, go_rx));
            match spawned {
                Ok(t) => {
                    workers.threads.push(t);
                    workers.commands.push(cmd_tx);
                    go.push(go_tx);
                }
                Err(e) => {
                    drop(go);
                    let _ = workers.stop_and_join();
                    return Err(e);
                }
            }
        }
        drop(ready_tx);
        let mut first_err = None;
        let mut ring_err = None;
        for _ in 0..n {
            match ready_rx.recv() {
                Ok((_, Started::Ready)) => {}
                Ok((id, Started::RingFailed(e))) => {
                    ring_err.get_or_insert((id, e));
                }
                Ok((id, Started::Failed(e))) => {
                    first_err.get_or_insert(io::Error::new(
                        e.kind(),
                        format!("worker {id} failed to start: {e}"),
                    ));
                }
                Err(_) => {
                    first_err.get_or_insert(io::Error::other("a worker exited during start"));
                }
            }
        }
        if let Some((id, e)) = ring_err {
            if cfg.kind == DriverKind::Auto && first_err.is_none() {
                let why = format!(
                    "setting up worker {id}'s io_uring ring failed: {e}{}",
                    memlock_hint(&e)
                );
                tracing::warn!("{why}; running the recvmmsg/sendmmsg driver");
                workers.active = ActiveDriver {
                    kind: DriverKind::Mmsg,
                    fallback_reason: Some(why),
                };
            } else {
                first_err.get_or_insert(io::Error::new(
                    e.kind(),
                    format!(
                        "worker {id} failed to start: setting up its io_uring ring: {e}{}",
                        memlock_hint(&e)
                    ),
                ));
            }
        }
        if let Some(e) = first_err {
            // Dropping the go channels tells the waiting workers to stop.
            drop(go);
            let _ = workers.stop_and_join();
            return Err(e);
        }
        for tx in &go {
            let _ = tx.send(workers.active.kind);
        }
        Ok(workers)
    }

    /// The shared media port's address (with the port the kernel picked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn workers(&self) -> usize {
        self.shared.workers
    }

    /// The worker whose socket receives `remote`'s datagrams (see [`super::worker_for`]).
    pub fn worker_for(&self, remote: SocketAddr) -> WorkerId {
        steer::worker_for(remote, self.shared.workers)
    }

    /// Queues a command for `worker` and wakes it. Gives the command back if the worker
    /// does not exist or has exited.
    pub fn command(&self, worker: WorkerId, cmd: H::Command) -> Result<(), H::Command> {
        let Some(tx) = self.commands.get(worker) else {
            return Err(cmd);
        };
        tx.send(cmd).map_err(|e| e.into_inner())?;
        self.shared.wakers[worker].wake();
        Ok(())
    }

    /// A snapshot of `worker`'s counters.
    pub fn stats(&self, worker: WorkerId) -> WorkerStats {
        self.shared.stats[worker].snapshot()
    }

    /// CPU time `worker`'s thread has used so far, from its thread CPU clock.
    pub fn cpu_ns(&self, worker: WorkerId) -> io::Result<u64> {
        let t = self
            .threads
            .get(worker)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such worker"))?;
        let mut clock: libc::clockid_t = 0;
        // SAFETY: the thread is not joined (we hold its handle), so its pthread_t is valid.
        let rc = unsafe { libc::pthread_getcpuclockid(t.as_pthread_t(), &mut clock) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        clock_ns(clock)
    }

    /// Which driver runs, and why it fell back if it did.
    pub fn kind(&self) -> &ActiveDriver {
        &self.active
    }

    /// The workers' clock (µs since start), the one handlers get as `now`.
    pub fn now(&self) -> Micros {
        self.shared.now()
    }

    /// The channel of packets handlers address to other nodes. Until this is first
    /// called, link packets are dropped and counted (`link_drops`) rather than queued for
    /// nobody; after it, a full channel drops and counts.
    pub fn links(&self) -> Receiver<LinkPacket> {
        self.shared.links_wanted.store(true, Relaxed);
        self.links.clone()
    }

    /// Stops every worker, joins its thread (which closes its socket and ring) and returns
    /// the handlers in worker order; `Err` with the first panic if a worker panicked.
    pub fn shutdown(mut self) -> thread::Result<Vec<H>> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> thread::Result<Vec<H>> {
        self.shared.stop.store(true, SeqCst);
        for w in &self.shared.wakers {
            w.wake();
        }
        let mut handlers = Vec::with_capacity(self.threads.len());
        let mut panic = None;
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(h) => handlers.push(h),
                Err(p) => {
                    panic.get_or_insert(p);
                }
            }
        }
        self.commands.clear();
        match panic {
            Some(p) => Err(p),
            None => Ok(handlers),
        }
    }
}

impl<H: PacketHandler> Drop for Workers<H> {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            let _ = self.stop_and_join();
        }
    }
}
