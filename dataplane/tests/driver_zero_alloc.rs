//! The drivers' steady-state loop allocates nothing, under both drivers.
//!
//! A counting global allocator counts only on threads marked through
//! `DriverConfig::on_worker_start`, i.e. the worker threads, and per node (tests run in
//! parallel, and one node's start-up must not land in another's window); the test
//! thread's own sockets and vectors do not count. After a warm-up (slabs, msghdrs and queues reach
//! their working size), thousands more datagrams are forwarded, handed across workers,
//! and timers fire, and the worker threads' allocation count must not move.

use sluice_dataplane::driver::{DriverConfig, DriverKind, Workers, probe_uring};
use sluice_dataplane::engine::{Micros, NullForwarder, Output, PacketHandler, WorkerId};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

struct Counting;

/// Allocations by the worker threads of node `i` (0: threads of no node).
static WORKER_ALLOCS: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];
static NEXT_NODE: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static NODE: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    let node = NODE.try_with(Cell::get).unwrap_or(0);
    WORKER_ALLOCS[node % 16].fetch_add(1, Relaxed);
}

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn kinds() -> Vec<DriverKind> {
    let mut k = vec![DriverKind::Mmsg];
    match probe_uring() {
        Ok(()) => k.push(DriverKind::Uring),
        Err(why) => eprintln!("io_uring driver not tested here: {why}"),
    }
    k
}

/// A configuration whose worker threads count into `WORKER_ALLOCS[node]`.
fn config(kind: DriverKind, gso: bool) -> (DriverConfig, usize) {
    let node = NEXT_NODE.fetch_add(1, Relaxed);
    assert!(node < 16);
    let cfg = DriverConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        kind,
        gso,
        batch: 32,
        ring_buffers: 256,
        egress_capacity: 256,
        on_worker_start: Some(Arc::new(move |_| NODE.with(|n| n.set(node)))),
        ..DriverConfig::default()
    };
    (cfg, node)
}

fn socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("still not true after ~10 s: {what}");
}

/// Sends `windows` windows of 16 datagrams from `clients`; waits for `per_datagram`
/// copies of each at `sink`.
fn traffic(clients: &[UdpSocket], node: SocketAddr, sink: &UdpSocket, windows: u32, per: usize) {
    let mut buf = [0u8; 2048];
    for w in 0..windows {
        for k in 0..16u32 {
            let c = &clients[(k as usize) % clients.len()];
            let seq = w * 16 + k;
            let len = 40 + (seq as usize * 53) % 1160;
            buf[..4].copy_from_slice(&seq.to_be_bytes());
            c.send_to(&buf[..len], node).unwrap();
        }
        for _ in 0..16 * per {
            sink.recv(&mut buf).expect("datagram forwarded");
        }
    }
}

fn assert_steady_state_allocates_nothing<H: PacketHandler>(
    label: &str,
    node_tag: usize,
    w: Workers<H>,
    sink: &UdpSocket,
    per: usize,
) {
    // Four clients steered to each worker.
    let mut clients: Vec<UdpSocket> = Vec::new();
    let mut per_worker = [0; 2];
    while per_worker != [4, 4] {
        let c = socket();
        let k = w.worker_for(c.local_addr().unwrap());
        if per_worker[k] < 4 {
            per_worker[k] += 1;
            clients.push(c);
        }
    }
    let node = w.local_addr();
    traffic(&clients, node, sink, 100, per);
    let tx = |w: &Workers<H>| w.stats(0).tx_packets + w.stats(1).tx_packets;
    eventually("warm-up sends counted", || tx(&w) == 1600 * per as u64);

    let before = WORKER_ALLOCS[node_tag].load(Relaxed);
    traffic(&clients, node, sink, 400, per);
    eventually("steady-state sends counted", || tx(&w) == 8000 * per as u64);
    let allocs = WORKER_ALLOCS[node_tag].load(Relaxed) - before;
    let (a, b) = (w.stats(0), w.stats(1));
    assert!(
        a.rx_packets > 0 && b.rx_packets > 0,
        "{label}: both workers busy"
    );
    assert_eq!(
        allocs, 0,
        "{label}: worker threads allocated in steady state"
    );
    w.shutdown().expect("clean shutdown");
}

#[test]
fn null_forwarder_loop_allocates_nothing() {
    for kind in kinds() {
        for gso in [false, true] {
            let sink = socket();
            let sinks = vec![sink.local_addr().unwrap(); 2];
            let (cfg, tag) = config(kind, gso);
            let w = Workers::start(cfg, |_, _| NullForwarder::new(sinks.clone())).unwrap();
            let label = format!("{kind:?} gso={gso}");
            assert_steady_state_allocates_nothing(&label, tag, w, &sink, 2);
        }
    }
}

/// Hands each datagram (copied into a fixed array) to the other worker, which sends it;
/// a 1 ms timer ticks meanwhile.
struct Bounce {
    id: WorkerId,
    sink: SocketAddr,
    next_tick: Micros,
}

impl PacketHandler for Bounce {
    type Command = ();
    type Handoff = (u16, [u8; 1200]);

    fn handle_datagram(
        &mut self,
        _: Micros,
        _: SocketAddr,
        buf: &mut [u8],
        out: &mut Output<Self::Handoff>,
    ) {
        let mut copy = [0u8; 1200];
        copy[..buf.len()].copy_from_slice(buf);
        out.handoffs.push((1 - self.id, (buf.len() as u16, copy)));
    }

    fn handle_handoff(
        &mut self,
        _: Micros,
        (len, p): Self::Handoff,
        out: &mut Output<Self::Handoff>,
    ) {
        out.egress.push_copy(self.sink, &p[..usize::from(len)]);
    }

    fn handle_command(&mut self, _: Micros, _: (), _: &mut Output<Self::Handoff>) {}

    fn handle_timeout(&mut self, now: Micros, _: &mut Output<Self::Handoff>) {
        self.next_tick = now + 1_000;
    }

    fn poll_timeout(&self) -> Option<Micros> {
        Some(self.next_tick)
    }
}

#[test]
fn handoff_and_timer_paths_allocate_nothing() {
    for kind in kinds() {
        let sink = socket();
        let sink_addr = sink.local_addr().unwrap();
        let (cfg, tag) = config(kind, false);
        let w = Workers::start(cfg, |id, _| Bounce {
            id,
            sink: sink_addr,
            next_tick: 0,
        })
        .unwrap();
        assert_steady_state_allocates_nothing(&format!("{kind:?} handoff"), tag, w, &sink, 1);
    }
}
