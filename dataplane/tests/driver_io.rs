//! The drivers end to end over real loopback sockets, each test run under every driver
//! this machine offers (io_uring when `probe_uring` says yes, recvmmsg always).
//!
//! Senders keep a bounded window in flight and wait for it to arrive, so no socket buffer
//! can overflow: every datagram is counted and compared. Nothing here asserts on time;
//! a receive timeout only turns a hang into a failure.

use bytes::Bytes;
use sluice_dataplane::driver::{
    DriverConfig, DriverKind, Workers, probe_uring, thread_cpu_ns, worker_for,
};
use sluice_dataplane::engine::{
    LinkPacket, Micros, NullCommand, NullForwarder, Output, PacketHandler, WorkerId,
};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

fn kinds() -> Vec<DriverKind> {
    let mut k = vec![DriverKind::Mmsg];
    match probe_uring() {
        Ok(()) => k.push(DriverKind::Uring),
        Err(why) => eprintln!("io_uring driver not tested here: {why}"),
    }
    k
}

fn config(kind: DriverKind, workers: usize) -> DriverConfig {
    DriverConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        workers,
        kind,
        batch: 32,
        ring_buffers: 256,
        egress_capacity: 256,
        socket_buffer: 1 << 20,
        ..DriverConfig::default()
    }
}

/// A UDP socket with a large receive buffer (forced where permitted).
fn udp(addr: &str) -> UdpSocket {
    let addr: SocketAddr = addr.parse().unwrap();
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).unwrap();
    let val: libc::c_int = 8 << 20;
    // SAFETY: setsockopt with a live c_int.
    let forced = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&val as *const libc::c_int).cast(),
            4,
        )
    } == 0;
    if !forced {
        let _ = s.set_recv_buffer_size(8 << 20);
    }
    s.bind(&addr.into()).unwrap();
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 4096];
    let (n, from) = s
        .recv_from(&mut buf)
        .expect("a datagram (timed out: the driver lost or never sent it)");
    (buf[..n].to_vec(), from)
}

/// Payload `seq` of client `c`: a header naming both, then a pattern, `len` bytes long.
fn payload(c: u8, seq: u32, len: usize) -> Vec<u8> {
    let mut p = vec![c];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend((5..len).map(|i| (i as u32 ^ seq) as u8));
    p
}

/// Waits for `cond`: counters are bumped after the datagrams that they count have left,
/// so a test that has seen the datagrams may still be a moment early for the counters.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("still not true after ~10 s: {what}");
}

/// This network namespace's UDP sockets: (local address, inode).
fn udp_sockets() -> Vec<(SocketAddr, u64)> {
    // /proc/net/udp{,6} print each address as 32-bit words in host order, in hex.
    let words = |hex: &str| -> Option<Vec<u8>> {
        (0..hex.len() / 8)
            .map(|i| u32::from_str_radix(&hex[8 * i..8 * i + 8], 16).ok())
            .map(|w| w.map(u32::to_ne_bytes))
            .collect::<Option<Vec<_>>>()
            .map(|w| w.concat())
    };
    let mut out = Vec::new();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(inode)) = (f.get(1), f.get(9)) else {
                continue;
            };
            let Some((ip, port)) = local.split_once(':') else {
                continue;
            };
            let ip: Option<std::net::IpAddr> = match words(ip) {
                Some(b) if b.len() == 4 => Some(<[u8; 4]>::try_from(b).unwrap().into()),
                Some(b) if b.len() == 16 => Some(<[u8; 16]>::try_from(b).unwrap().into()),
                _ => None,
            };
            if let (Some(ip), Ok(port), Ok(inode)) =
                (ip, u16::from_str_radix(port, 16), inode.parse::<u64>())
            {
                out.push((SocketAddr::new(ip, port), inode));
            }
        }
    }
    out
}

/// Stops the node and checks that it left nothing behind: every worker thread gone and
/// every worker socket closed when `shutdown` returns. (Sockets are followed by inode,
/// not by binding the port again: a parallel test's ephemeral bind may take the port the
/// moment it is free.)
fn finish<H: PacketHandler>(w: Workers<H>) -> Vec<H> {
    let addr = w.local_addr();
    // Reading the table while other tests open and close sockets can miss a line; read
    // until it is consistent.
    let mut ours: Vec<u64> = Vec::new();
    eventually("one socket per worker on the port", || {
        ours = udp_sockets()
            .into_iter()
            .filter(|&(a, _)| a == addr)
            .map(|(_, inode)| inode)
            .collect();
        ours.len() == w.workers()
    });
    let tids: Vec<i32> = (0..w.workers()).map(|i| w.stats(i).tid).collect();
    assert!(tids.iter().all(|&t| t > 0));
    let handlers = w.shutdown().expect("no worker panicked");
    let open: Vec<(SocketAddr, u64)> = udp_sockets()
        .into_iter()
        .filter(|(_, inode)| ours.contains(inode))
        .collect();
    assert!(open.is_empty(), "worker sockets still open: {open:?}");
    for tid in tids {
        // Joined threads finished their code; the kernel reaps the task a moment later.
        eventually(&format!("worker thread {tid} gone"), || {
            !std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
        });
    }
    handlers
}

#[test]
fn null_forwarder_delivers_every_datagram_intact_and_in_order() {
    for kind in kinds() {
        let sinks = [udp("127.0.0.1:0"), udp("127.0.0.1:0")];
        let sink_addrs: Vec<SocketAddr> = sinks.iter().map(|s| s.local_addr().unwrap()).collect();
        let w = Workers::start(config(kind, 2), |_, _| {
            NullForwarder::new(sink_addrs.clone())
        })
        .unwrap();
        assert_eq!(w.kind().kind, kind);
        let node = w.local_addr();
        let clients: Vec<UdpSocket> = (0..8).map(|_| udp("127.0.0.1:0")).collect();
        let (windows, window) = (40u32, 16u32);
        let mut sent: HashMap<u8, Vec<Vec<u8>>> = HashMap::new();
        let mut got: [HashMap<u8, Vec<Vec<u8>>>; 2] = [HashMap::new(), HashMap::new()];
        for win in 0..windows {
            for k in 0..window {
                let seq = win * window + k;
                let c = (seq % 8) as u8;
                let p = payload(c, seq, 20 + (seq as usize * 37) % 1180);
                clients[usize::from(c)].send_to(&p, node).unwrap();
                sent.entry(c).or_default().push(p);
            }
            for (sink, got) in sinks.iter().zip(got.iter_mut()) {
                for _ in 0..window {
                    let (p, from) = recv(sink);
                    assert_eq!(from, node, "egress leaves from the shared port");
                    got.entry(p[0]).or_default().push(p);
                }
            }
        }
        // Per client (one worker each, by steering) order is kept, and so is every byte.
        for g in &got {
            assert_eq!(g, &sent, "{kind:?}");
        }
        let total = u64::from(windows * window);
        eventually("every datagram counted", || {
            let (rx, tx) = (0..2)
                .map(|i| w.stats(i))
                .fold((0, 0), |(r, t), s| (r + s.rx_packets, t + s.tx_packets));
            (rx, tx) == (total, 2 * total)
        });
        for i in 0..2 {
            let s = w.stats(i);
            assert!(s.running);
            assert_eq!(
                (s.tx_errors, s.rx_errors, s.rx_truncated, s.tx_unroutable),
                (0, 0, 0, 0)
            );
        }
        let forwarded: u64 = finish(w).iter().map(NullForwarder::forwarded).sum();
        assert_eq!(forwarded, 2 * total);
    }
}

/// Hands every datagram to the next worker, which sends it to the sink with two bytes
/// appended: the worker that received it and the one that sent it.
struct Relay {
    id: WorkerId,
    workers: usize,
    sink: SocketAddr,
}

impl PacketHandler for Relay {
    type Command = ();
    type Handoff = (u8, Bytes);

    fn handle_datagram(
        &mut self,
        _: Micros,
        _: SocketAddr,
        buf: &mut [u8],
        out: &mut Output<(u8, Bytes)>,
    ) {
        let to = (self.id + 1) % self.workers;
        out.handoffs
            .push((to, (self.id as u8, Bytes::copy_from_slice(buf))));
    }

    fn handle_handoff(&mut self, _: Micros, (from, p): (u8, Bytes), out: &mut Output<(u8, Bytes)>) {
        out.egress.push(self.sink, |slot| {
            slot[..p.len()].copy_from_slice(&p);
            slot[p.len()] = from;
            slot[p.len() + 1] = self.id as u8;
            Some(p.len() + 2)
        });
    }

    fn handle_command(&mut self, _: Micros, _: (), _: &mut Output<(u8, Bytes)>) {}
    fn handle_timeout(&mut self, _: Micros, _: &mut Output<(u8, Bytes)>) {}
    fn poll_timeout(&self) -> Option<Micros> {
        None
    }
}

/// Client sockets whose datagrams the node steers to `worker`.
fn clients_for(worker: WorkerId, workers: usize, count: usize) -> Vec<UdpSocket> {
    let mut out = Vec::new();
    while out.len() < count {
        let s = udp("127.0.0.1:0");
        if worker_for(s.local_addr().unwrap(), workers) == worker {
            out.push(s);
        }
    }
    out
}

#[test]
fn handoff_crosses_workers_and_wakes_the_idle_one() {
    for kind in kinds() {
        let sink = udp("127.0.0.1:0");
        let sink_addr = sink.local_addr().unwrap();
        let w = Workers::start(config(kind, 2), |id, n| Relay {
            id,
            workers: n,
            sink: sink_addr,
        })
        .unwrap();
        let node = w.local_addr();
        for receiver in [0usize, 1] {
            // Only `receiver` gets datagrams; the other worker has no socket traffic and
            // no timer, so it sends only if the handoff wakes it.
            let clients = clients_for(receiver, 2, 4);
            let before = w.stats(1 - receiver).wakeups;
            for round in 0..50u32 {
                let mut sent = Vec::new();
                for (c, s) in clients.iter().enumerate() {
                    let p = payload(c as u8, round, 100 + round as usize);
                    s.send_to(&p, node).unwrap();
                    sent.push(p);
                }
                let mut got: Vec<Vec<u8>> = (0..clients.len()).map(|_| recv(&sink).0).collect();
                got.sort();
                sent.sort();
                for (g, s) in got.iter().zip(&sent) {
                    assert_eq!(&g[..g.len() - 2], &s[..], "{kind:?}");
                    assert_eq!(g[g.len() - 2..], [receiver as u8, 1 - receiver as u8]);
                }
            }
            assert!(
                w.stats(1 - receiver).wakeups > before,
                "{kind:?}: woken by eventfd"
            );
        }
        eventually("every handoff counted on both sides", || {
            let (a, b) = (w.stats(0), w.stats(1));
            a.handoffs_out == b.handoffs_in
                && b.handoffs_out == a.handoffs_in
                && a.handoffs_out + b.handoffs_out == 400
        });
        let (a, b) = (w.stats(0), w.stats(1));
        assert_eq!(a.handoff_queue_full + b.handoff_queue_full, 0);
        finish(w);
    }
}

#[test]
fn commands_reach_their_worker() {
    for kind in kinds() {
        let sink = udp("127.0.0.1:0");
        let sink_addr = sink.local_addr().unwrap();
        let w = Workers::start(config(kind, 2), |_, _| NullForwarder::new(vec![])).unwrap();
        let node = w.local_addr();
        for worker in 0..2 {
            assert!(
                w.command(worker, NullCommand::SetSinks(vec![sink_addr]))
                    .is_ok()
            );
        }
        assert!(w.command(2, NullCommand::SetSinks(vec![])).is_err());
        for worker in 0..2 {
            // Once counted, the command is applied before any datagram sent after this.
            eventually("command handled", || w.stats(worker).commands == 1);
        }
        for worker in 0..2 {
            let client = &clients_for(worker, 2, 1)[0];
            client.send_to(b"after the command", node).unwrap();
            assert_eq!(recv(&sink).0, b"after the command");
        }
        finish(w);
    }
}

/// Sends `limit` numbered datagrams to the sink, one per timer expiry `period` apart.
struct Ticker {
    next: Option<Micros>,
    period: Micros,
    fired: u8,
    limit: u8,
    sink: SocketAddr,
}

impl PacketHandler for Ticker {
    type Command = ();
    type Handoff = ();
    fn handle_datagram(&mut self, _: Micros, _: SocketAddr, _: &mut [u8], _: &mut Output<()>) {}
    fn handle_handoff(&mut self, _: Micros, _: (), _: &mut Output<()>) {}
    fn handle_command(&mut self, _: Micros, _: (), _: &mut Output<()>) {}
    fn handle_timeout(&mut self, now: Micros, out: &mut Output<()>) {
        assert!(self.next.is_some_and(|n| n <= now), "called only when due");
        out.egress.push_copy(self.sink, &[self.fired]);
        self.fired += 1;
        self.next = (self.fired < self.limit).then_some(now + self.period);
    }
    fn poll_timeout(&self) -> Option<Micros> {
        self.next
    }
}

#[test]
fn timers_fire_in_order_and_stop_when_the_handler_says() {
    for kind in kinds() {
        let sink = udp("127.0.0.1:0");
        let sink_addr = sink.local_addr().unwrap();
        let w = Workers::start(config(kind, 1), |_, _| Ticker {
            next: Some(2_000),
            period: 3_000,
            fired: 0,
            limit: 5,
            sink: sink_addr,
        })
        .unwrap();
        for i in 0..5u8 {
            assert_eq!(recv(&sink).0, [i], "{kind:?}");
        }
        let h = finish(w);
        assert_eq!(h[0].fired, 5);
    }
}

#[test]
fn gso_and_zerocopy_on_and_off_deliver_identical_datagrams() {
    let run = |kind: DriverKind, gso: bool, zerocopy: bool| {
        let a = udp("127.0.0.1:0");
        let b = udp("127.0.0.1:0");
        let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        // Three equal copies to `a` per datagram (one GSO send), one to `b` in between.
        let w = Workers::start(
            DriverConfig {
                gso,
                zerocopy,
                ..config(kind, 1)
            },
            |_, _| NullForwarder::new(vec![aa, ba, aa, aa]),
        )
        .unwrap();
        let client = udp("127.0.0.1:0");
        let node = w.local_addr();
        let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
        for win in 0..10u32 {
            for k in 0..16u32 {
                let seq = win * 16 + k;
                let len = [1200, 1200, 1200, 700, 64, 1][seq as usize % 6];
                client.send_to(&payload(0, seq, len), node).unwrap();
            }
            got_a.extend((0..48).map(|_| recv(&a).0));
            got_b.extend((0..16).map(|_| recv(&b).0));
        }
        eventually("sends counted", || w.stats(0).tx_packets == 640);
        let s = w.stats(0);
        assert_eq!(s.tx_errors, 0);
        finish(w);
        (got_a, got_b, s.gso_segments)
    };
    for kind in kinds() {
        let (a0, b0, seg0) = run(kind, false, false);
        assert_eq!(seg0, 0);
        assert_eq!(a0.len(), 480);
        // Zerocopy is an io_uring option (and caps GSO sends at 8 segments).
        let zc = if kind == DriverKind::Uring {
            &[false, true][..]
        } else {
            &[false][..]
        };
        for &zerocopy in zc {
            for gso in [false, true] {
                let (a1, b1, seg1) = run(kind, gso, zerocopy);
                let what = format!("{kind:?} gso={gso} zerocopy={zerocopy}");
                if gso {
                    assert!(seg1 >= 3 * 160, "{what}: GSO used ({seg1} segments)");
                }
                assert_eq!(a0, a1, "{what}");
                assert_eq!(b0, b1, "{what}");
            }
        }
    }
}

/// Answers each datagram with the id of the worker that received it.
struct WhoAmI(WorkerId);

impl PacketHandler for WhoAmI {
    type Command = ();
    type Handoff = ();
    fn handle_datagram(&mut self, _: Micros, from: SocketAddr, _: &mut [u8], out: &mut Output<()>) {
        out.egress.push_copy(from, &[self.0 as u8]);
    }
    fn handle_handoff(&mut self, _: Micros, _: (), _: &mut Output<()>) {}
    fn handle_command(&mut self, _: Micros, _: (), _: &mut Output<()>) {}
    fn handle_timeout(&mut self, _: Micros, _: &mut Output<()>) {}
    fn poll_timeout(&self) -> Option<Micros> {
        None
    }
}

fn check_steering(kind: DriverKind, bind: &str, client_bind: &str, clients: usize) {
    let workers = 4;
    let w = Workers::start(
        DriverConfig {
            bind: bind.parse().unwrap(),
            ..config(kind, workers)
        },
        |id, _| WhoAmI(id),
    )
    .unwrap();
    let mut node = w.local_addr();
    if node.ip().is_unspecified() {
        node.set_ip(client_bind.parse::<SocketAddr>().unwrap().ip());
    }
    let mut hits = [0usize; 4];
    for _ in 0..clients {
        let c = udp(client_bind);
        c.send_to(b"?", node).unwrap();
        let (reply, _) = recv(&c);
        let me = c.local_addr().unwrap();
        assert_eq!(
            usize::from(reply[0]),
            w.worker_for(me),
            "{kind:?} {bind}: {me} landed elsewhere"
        );
        hits[usize::from(reply[0])] += 1;
    }
    assert!(hits.iter().all(|&h| h > 0), "{kind:?} {bind}: {hits:?}");
    finish(w);
}

#[test]
fn steering_matches_worker_for() {
    let v6 = UdpSocket::bind("[::1]:0").is_ok();
    for kind in kinds() {
        check_steering(kind, "127.0.0.1:0", "127.0.0.1:0", 64);
        if v6 {
            check_steering(kind, "[::1]:0", "[::1]:0", 48);
            // A dual-stack node: IPv4 peers arrive v4-mapped, steered by the v4 rule.
            check_steering(kind, "[::]:0", "127.0.0.1:0", 32);
        } else {
            eprintln!("no ::1 here; IPv6 steering not tested");
        }
    }
}

/// Sends every datagram to the links.
struct Linker;

impl PacketHandler for Linker {
    type Command = ();
    type Handoff = ();
    fn handle_datagram(&mut self, _: Micros, _: SocketAddr, buf: &mut [u8], out: &mut Output<()>) {
        out.links.push(LinkPacket {
            node: 7,
            track: 1,
            layer: 0,
            keyframe: false,
            packet: Bytes::copy_from_slice(buf),
        });
    }
    fn handle_handoff(&mut self, _: Micros, _: (), _: &mut Output<()>) {}
    fn handle_command(&mut self, _: Micros, _: (), _: &mut Output<()>) {}
    fn handle_timeout(&mut self, _: Micros, _: &mut Output<()>) {}
    fn poll_timeout(&self) -> Option<Micros> {
        None
    }
}

#[test]
fn link_packets_are_dropped_until_someone_listens() {
    for kind in kinds() {
        let w = Workers::start(config(kind, 1), |_, _| Linker).unwrap();
        let client = udp("127.0.0.1:0");
        client.send_to(b"early", w.local_addr()).unwrap();
        eventually("early link packet dropped", || w.stats(0).link_drops == 1);
        let links = w.links();
        client.send_to(b"late", w.local_addr()).unwrap();
        let p = links.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!((p.node, &p.packet[..]), (7, &b"late"[..]));
        eventually("link packet counted", || w.stats(0).link_packets == 1);
        assert_eq!(w.stats(0).link_drops, 1);
        finish(w);
    }
}

#[test]
fn auto_reports_what_runs() {
    let w = Workers::start(config(DriverKind::Auto, 1), |_, _| NullForwarder::default()).unwrap();
    match probe_uring() {
        Ok(()) => assert_eq!(w.kind().kind, DriverKind::Uring),
        Err(why) => {
            assert_eq!(w.kind().kind, DriverKind::Mmsg);
            assert_eq!(w.kind().fallback_reason.as_deref(), Some(why.as_str()));
        }
    }
    let tid = w.stats(0).tid;
    assert!(thread_cpu_ns(tid).is_ok());
    assert!(w.cpu_ns(0).is_ok());
    finish(w);
}

/// Worker CPU per forwarded 1200-byte datagram for each send mode. Knobs: `PACKETS`
/// (ingress datagrams, default 200000), `WINDOW` (sent back to back before the sinks
/// drain them, default 256), `FANOUT` (distinct sinks per datagram, default 1). Run with
/// `cargo test --release -p sluice-dataplane --test driver_io -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, not a test"]
fn measure_send_modes() {
    let knob = |name: &str, default: u32| -> u32 {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let (packets, window, fanout) = (
        knob("PACKETS", 200_000),
        knob("WINDOW", 256),
        knob("FANOUT", 1) as usize,
    );
    let mut modes = vec![
        (DriverKind::Mmsg, false, false),
        (DriverKind::Mmsg, true, false),
    ];
    if probe_uring().is_ok() {
        modes.extend([
            (DriverKind::Uring, false, false),
            (DriverKind::Uring, false, true),
            (DriverKind::Uring, true, false),
            (DriverKind::Uring, true, true),
        ]);
    }
    let only = std::env::var("ONLY").unwrap_or_default();
    println!("{packets} x 1200 B, window {window}, fan-out {fanout}");
    for (kind, gso, zerocopy) in modes {
        let name = format!("{kind:?} gso={gso} zerocopy={zerocopy}");
        if !name.contains(&only) {
            continue;
        }
        let sinks: Vec<UdpSocket> = (0..fanout).map(|_| udp("127.0.0.1:0")).collect();
        let addrs: Vec<SocketAddr> = sinks.iter().map(|s| s.local_addr().unwrap()).collect();
        let w = Workers::start(
            DriverConfig {
                gso,
                zerocopy,
                batch: 64,
                socket_buffer: 16 << 20,
                egress_capacity: 64 * fanout,
                ..config(kind, 1)
            },
            |_, _| NullForwarder::new(addrs.clone()),
        )
        .unwrap();
        let client = udp("127.0.0.1:0");
        let node = w.local_addr();
        let p = payload(1, 0, 1200);
        let cpu0 = w.cpu_ns(0).unwrap();
        let mut buf = [0u8; 2048];
        let rounds = packets / window;
        for _ in 0..rounds {
            for _ in 0..window {
                client.send_to(&p, node).unwrap();
            }
            for sink in &sinks {
                for _ in 0..window {
                    if let Err(e) = sink.recv(&mut buf) {
                        panic!("{kind:?} gso={gso} zc={zerocopy}: {e}; {:?}", w.stats(0));
                    }
                }
            }
        }
        let cpu = w.cpu_ns(0).unwrap() - cpu0;
        let s = w.stats(0);
        let forwarded = f64::from(rounds * window) * fanout as f64;
        println!(
            "{name}: {:.0} ns worker CPU per forwarded datagram, \
             {:.1} received per turn, {:.1} datagrams per GSO send",
            cpu as f64 / forwarded,
            s.rx_packets as f64 / s.loops.max(1) as f64,
            s.gso_segments as f64 / s.gso_sends.max(1) as f64,
        );
        finish(w);
    }
}

#[test]
fn pinned_workers_run_on_their_core() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for kind in kinds() {
        let w = Workers::start(
            DriverConfig {
                pin_cores: Some(vec![cores - 1, 0]),
                ..config(kind, 2)
            },
            |_, _| NullForwarder::default(),
        )
        .unwrap();
        for (worker, core) in [(0, cores - 1), (1, 0)] {
            let status =
                std::fs::read_to_string(format!("/proc/self/task/{}/status", w.stats(worker).tid))
                    .unwrap();
            let allowed = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .unwrap()
                .trim()
                .to_owned();
            assert_eq!(allowed, core.to_string(), "{kind:?} worker {worker}");
        }
        finish(w);
    }
}

/// Forwards to the sink, but holds the first datagram until the test opens the gate.
struct Gated {
    gate: crossbeam_channel::Receiver<()>,
    held: bool,
    sink: SocketAddr,
}

impl PacketHandler for Gated {
    type Command = ();
    type Handoff = ();
    fn handle_datagram(&mut self, _: Micros, _: SocketAddr, buf: &mut [u8], out: &mut Output<()>) {
        if !self.held {
            self.held = true;
            self.gate.recv().unwrap();
        }
        out.egress.push_copy(self.sink, buf);
    }
    fn handle_handoff(&mut self, _: Micros, _: (), _: &mut Output<()>) {}
    fn handle_command(&mut self, _: Micros, _: (), _: &mut Output<()>) {}
    fn handle_timeout(&mut self, _: Micros, _: &mut Output<()>) {}
    fn poll_timeout(&self) -> Option<Micros> {
        None
    }
}

#[test]
fn running_out_of_receive_buffers_loses_nothing() {
    for kind in kinds() {
        let sink = udp("127.0.0.1:0");
        let sink_addr = sink.local_addr().unwrap();
        let (open, gate) = crossbeam_channel::bounded(1);
        // Four provided buffers; 60 datagrams arrive while the worker is stuck in its
        // handler, so the multishot receive runs dry and must be re-armed.
        let w = Workers::start(
            DriverConfig {
                ring_buffers: 4,
                ..config(kind, 1)
            },
            |_, _| Gated {
                gate: gate.clone(),
                held: false,
                sink: sink_addr,
            },
        )
        .unwrap();
        let client = udp("127.0.0.1:0");
        let node = w.local_addr();
        client.send_to(&payload(0, 0, 300), node).unwrap();
        eventually("first datagram in the handler", || {
            w.stats(0).rx_packets == 1
        });
        for seq in 1..60 {
            client.send_to(&payload(0, seq, 300), node).unwrap();
        }
        open.send(()).unwrap();
        for seq in 0..60 {
            assert_eq!(recv(&sink).0, payload(0, seq, 300), "{kind:?}");
        }
        if kind == DriverKind::Uring {
            assert!(w.stats(0).rx_no_buffers > 0, "the buffer ring ran dry");
        }
        finish(w);
    }
}

/// Worker 0 hands every datagram to worker 1, which holds the first handoff until the
/// test opens the gate and sends the rest on.
struct Stuck {
    id: WorkerId,
    gate: crossbeam_channel::Receiver<()>,
    held: bool,
    sink: SocketAddr,
}

impl PacketHandler for Stuck {
    type Command = ();
    type Handoff = u32;
    fn handle_datagram(&mut self, _: Micros, _: SocketAddr, buf: &mut [u8], out: &mut Output<u32>) {
        out.handoffs
            .push((1, u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]])));
    }
    fn handle_handoff(&mut self, _: Micros, seq: u32, out: &mut Output<u32>) {
        assert_eq!(self.id, 1);
        if !self.held {
            self.held = true;
            self.gate.recv().unwrap();
        }
        out.egress.push_copy(self.sink, &seq.to_be_bytes());
    }
    fn handle_command(&mut self, _: Micros, _: (), _: &mut Output<u32>) {}
    fn handle_timeout(&mut self, _: Micros, _: &mut Output<u32>) {}
    fn poll_timeout(&self) -> Option<Micros> {
        None
    }
}

#[test]
fn a_full_handoff_queue_drops_and_counts_without_blocking_the_sender() {
    for kind in kinds() {
        let sink = udp("127.0.0.1:0");
        let sink_addr = sink.local_addr().unwrap();
        let (open, gate) = crossbeam_channel::bounded(1);
        let w = Workers::start(
            DriverConfig {
                handoff_queue: 2,
                ..config(kind, 2)
            },
            |id, _| Stuck {
                id,
                gate: gate.clone(),
                held: false,
                sink: sink_addr,
            },
        )
        .unwrap();
        let client = &clients_for(0, 2, 1)[0];
        let node = w.local_addr();
        for seq in 0..40 {
            client.send_to(&payload(0, seq, 50), node).unwrap();
        }
        // Worker 0 gets through all 40 although worker 1 is stuck.
        eventually("every handoff pushed or dropped", || {
            let s = w.stats(0);
            s.handoffs_out + s.handoff_queue_full == 40
        });
        open.send(()).unwrap();
        let pushed = w.stats(0).handoffs_out;
        assert!((2..=3).contains(&pushed), "{kind:?}: {pushed}");
        // What got through arrives in order, starting with the first two (queued while
        // worker 1 had not yet taken anything, or was taking the first).
        let got: Vec<u32> = (0..pushed)
            .map(|_| u32::from_be_bytes(recv(&sink).0[..4].try_into().unwrap()))
            .collect();
        assert_eq!(got[..2], [0, 1], "{kind:?}");
        assert!(got.windows(2).all(|p| p[0] < p[1]), "{kind:?}: {got:?}");
        eventually("handoffs handled", || w.stats(1).handoffs_in == pushed);
        finish(w);
    }
}

/// Makes io_uring_setup fail with EPERM on this thread and every thread it starts later,
/// as a container's seccomp profile would.
fn forbid_io_uring_here() {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let mut filter = [
        // seccomp_data.nr
        op(BPF_LD | BPF_W | BPF_ABS, 0, 0, 0),
        op(
            BPF_JMP | BPF_JEQ | BPF_K,
            0,
            1,
            libc::SYS_io_uring_setup as u32,
        ),
        op(
            BPF_RET | BPF_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        op(BPF_RET | BPF_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: plain prctls; `prog` outlives the call (the kernel copies it).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog
            ),
            0,
            "seccomp: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[test]
fn auto_falls_back_to_recvmmsg_when_io_uring_is_forbidden() {
    // A thread of its own: the filter stays with it and the threads it starts.
    std::thread::spawn(|| {
        forbid_io_uring_here();
        assert!(
            Workers::start(config(DriverKind::Uring, 1), |_, _| NullForwarder::default(
            ))
            .unwrap_err()
            .to_string()
            .contains("EPERM")
        );
        let sink = udp("127.0.0.1:0");
        let sink_addr = sink.local_addr().unwrap();
        let w = Workers::start(config(DriverKind::Auto, 2), |_, _| {
            NullForwarder::new(vec![sink_addr])
        })
        .unwrap();
        assert_eq!(w.kind().kind, DriverKind::Mmsg);
        let why = w.kind().fallback_reason.clone().unwrap();
        assert!(why.contains("EPERM"), "{why}");
        eprintln!("fallback reason: {why}");
        let client = udp("127.0.0.1:0");
        client.send_to(b"still forwarded", w.local_addr()).unwrap();
        assert_eq!(recv(&sink).0, b"still forwarded");
        finish(w);
    })
    .join()
    .unwrap();
}
