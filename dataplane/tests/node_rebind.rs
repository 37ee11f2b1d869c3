//! A session re-nominated to another remote address (a browser switching candidate
//! pairs), on real drivers: the new address steers to the other worker, which passes the
//! session's RTP and RTCP on to the worker holding it. Every packet is decrypted and
//! checked. Timeouts only turn a hang into a failure.

use sluice_dataplane::driver::{DriverConfig, DriverKind, probe_uring, worker_for};
use sluice_dataplane::node::MediaNode;
use sluice_dataplane::router::{
    Codec, LayerConfig, RouterConfig, RouterStats, SessionConfig, SrtpKeys, SubscribeConfig,
    TrackConfig,
};
use sluice_dataplane::rtcp::RtcpWriter;
use sluice_dataplane::rtp::{ExtensionIds, RtpPacket};
use sluice_dataplane::srtp::{Profile, SrtpContext};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

const PROFILE: Profile = Profile::AeadAes128Gcm;
const WORKERS: usize = 2;

fn kinds() -> Vec<DriverKind> {
    let mut k = vec![DriverKind::Mmsg];
    match probe_uring() {
        Ok(()) => k.push(DriverKind::Uring),
        Err(why) => eprintln!("io_uring driver not tested here: {why}"),
    }
    k
}

fn keys(seed: u8) -> SrtpKeys {
    SrtpKeys {
        profile: PROFILE,
        key: vec![seed; 16],
        salt: vec![seed.wrapping_mul(3); 12],
    }
}

/// A client socket that the node steers to `worker`, connected to the node.
fn socket_on(worker: usize, node: &MediaNode) -> UdpSocket {
    loop {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        if worker_for(s.local_addr().unwrap(), WORKERS) == worker {
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            s.connect(node.local_addr()).unwrap();
            return s;
        }
    }
}

struct Client {
    id: u64,
    sock: UdpSocket,
    tx: SrtpContext,
    rx: SrtpContext,
}

impl Client {
    fn new(id: u64, worker: usize, node: &mut MediaNode) -> Self {
        let sock = socket_on(worker, node);
        let (up, down) = (keys(id as u8), keys(!(id as u8)));
        let placed = node
            .add_session(SessionConfig {
                id,
                remote: sock.local_addr().unwrap(),
                inbound: up.clone(),
                outbound: down.clone(),
                extensions: ExtensionIds::default(),
                rtcp_ssrc: id as u32,
            })
            .unwrap();
        assert_eq!(placed, worker);
        Self {
            id,
            sock,
            tx: SrtpContext::new(PROFILE, &up.key, &up.salt).unwrap(),
            rx: SrtpContext::new(PROFILE, &down.key, &down.salt).unwrap(),
        }
    }

    /// The client now sends and receives on `sock`, with the same keys and counters.
    fn rebind(&mut self, sock: UdpSocket, node: &mut MediaNode) -> UdpSocket {
        node.rebind_session(self.id, sock.local_addr().unwrap())
            .unwrap();
        std::mem::replace(&mut self.sock, sock)
    }

    fn rtp(&mut self, seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 111, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0x0a];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 960).to_be_bytes());
        p.extend_from_slice(&body(seq));
        let len = p.len();
        p.resize(len + 32, 0);
        let n = self.tx.protect_rtp(&mut p, len).unwrap();
        p.truncate(n);
        p
    }

    fn send_rtp(&mut self, seq: u16) {
        let p = self.rtp(seq);
        self.sock.send(&p).unwrap();
    }

    fn send_nack(&mut self, media_ssrc: u32, lost: u16) {
        let mut b = vec![0u8; 256];
        let mut w = RtcpWriter::new(&mut b[..200]);
        w.nack(self.id as u32, media_ssrc, [lost]).unwrap();
        let n = w.finish();
        let n = self.tx.protect_rtcp(&mut b, n).unwrap();
        self.sock.send(&b[..n]).unwrap();
    }

    /// The next RTP packet, decrypted: (ssrc, seq, payload). Node RTCP is skipped.
    fn recv_rtp(&mut self) -> Option<(u32, u16, Vec<u8>)> {
        let mut buf = [0u8; 2048];
        // Node RTCP (reports every second) must not keep a lost packet's wait alive.
        let deadline = Instant::now() + self.sock.read_timeout().unwrap().unwrap();
        loop {
            if Instant::now() > deadline {
                return None;
            }
            let n = self.sock.recv(&mut buf).ok()?;
            if (192..=223).contains(&buf[1]) {
                continue;
            }
            let n = self
                .rx
                .unprotect_rtp(&mut buf[..n])
                .expect("authentic SRTP");
            let p = RtpPacket::parse(&buf[..n]).unwrap();
            return Some((p.ssrc(), p.sequence_number(), p.payload().to_vec()));
        }
    }
}

fn body(seq: u16) -> Vec<u8> {
    let mut b = seq.to_be_bytes().to_vec();
    b.extend((0..200u16).map(|k| (k ^ seq) as u8));
    b
}

/// Sends from the publisher until the subscriber gets a packet (commands and media take
/// separate paths, so a rebind is live only once media shows it); returns the last
/// (publisher seq, subscriber seq) seen.
fn until_flowing(publisher: &mut Client, sub: &mut Client, seq: &mut u16) -> (u16, u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "media never arrived");
        publisher.send_rtp(*seq);
        *seq += 1;
        let mut last = None;
        while let Some((_, sseq, payload)) = sub.recv_rtp() {
            last = Some((u16::from_be_bytes([payload[0], payload[1]]), sseq));
        }
        if let Some(l) = last {
            return l;
        }
    }
}

/// Calls `poke` until `f` of `worker`'s counters passes what it was before: a command
/// sent earlier may reach the worker after a datagram sent later.
fn poke_until_counted(
    node: &MediaNode,
    worker: usize,
    f: impl Fn(&RouterStats) -> u64,
    mut poke: impl FnMut(),
) {
    let before = f(&node.router_stats()[worker]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        poke();
        std::thread::sleep(Duration::from_millis(5));
        if f(&node.router_stats()[worker]) > before {
            return;
        }
        assert!(Instant::now() < deadline, "counter stuck at {before}");
    }
}

#[test]
fn rebound_session_on_another_worker_keeps_every_packet() {
    for kind in kinds() {
        let driver = DriverConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            workers: WORKERS,
            kind,
            ..DriverConfig::default()
        };
        let mut node = MediaNode::start(driver, RouterConfig::default()).unwrap();
        let mut publisher = Client::new(1, 0, &mut node);
        let mut sub = Client::new(2, 0, &mut node);
        node.add_track(TrackConfig {
            id: 7,
            publisher: 1,
            home: 0,
            codec: Codec::Opus,
            clock_rate: 48_000,
            payload_type: 111,
            rtx_payload_type: None,
            layers: vec![LayerConfig {
                ssrc: Some(0x0a0a),
                ..LayerConfig::default()
            }],
        })
        .unwrap();
        node.subscribe(SubscribeConfig {
            session: 2,
            track: 7,
            ssrc: 0x5000,
            payload_type: 100,
            rtx: Some((0x6000, 120)),
            initial_seq: 0,
            initial_ts: 0,
            layer: 0,
            pinned: true,
            ext_remap: None,
        })
        .unwrap();
        let mut seq = 0;
        until_flowing(&mut publisher, &mut sub, &mut seq);

        // Both move to addresses the node steers to worker 1; their sessions stay on 0.
        let old_pub = publisher.rebind(socket_on(1, &node), &mut node);
        let _old_sub = sub.rebind(socket_on(1, &node), &mut node);
        let (mut prev_index, mut prev_seq) = until_flowing(&mut publisher, &mut sub, &mut seq);

        // Every packet from here on arrives, in order and intact. Sent in small bursts
        // and read as it goes: this checks correctness, not the socket buffers.
        const N: u16 = 500;
        sub.sock
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        for _ in 0..N / 10 {
            for _ in 0..10 {
                publisher.send_rtp(seq);
                seq += 1;
            }
            while prev_index < seq - 1 {
                let (ssrc, sseq, payload) = sub
                    .recv_rtp()
                    .unwrap_or_else(|| panic!("{kind:?}: nothing after {prev_index}"));
                assert_eq!(ssrc, 0x5000, "{kind:?}");
                assert_eq!(sseq, prev_seq.wrapping_add(1), "{kind:?}: sequence gap");
                assert_eq!(payload, body(prev_index + 1), "{kind:?}: lost or altered");
                (prev_index, prev_seq) = (prev_index + 1, sseq);
            }
        }
        let stats = node.router_stats();
        assert!(stats[1].remote_handoffs_out >= u64::from(N), "{kind:?}");
        assert!(stats[0].remote_handoffs_in >= u64::from(N), "{kind:?}");

        // RTCP from the new subscriber address is forwarded too: its NACK comes back as
        // RTX to that address.
        sub.send_nack(0x5000, prev_seq);
        let (ssrc, _, payload) = sub.recv_rtp().expect("RTX");
        assert_eq!(ssrc, 0x6000, "{kind:?}");
        assert_eq!(payload[2..], body(prev_index)[..], "{kind:?}");

        // The old publisher address is nobody's any more.
        poke_until_counted(
            &node,
            0,
            |s| s.drop_unknown_session,
            || {
                let stale = publisher.rtp(seq);
                seq += 1;
                old_pub.send(&stale).unwrap();
            },
        );

        // Removing the session ends the forwarding on worker 1.
        node.remove_session(1).unwrap();
        poke_until_counted(
            &node,
            1,
            |s| s.drop_unknown_session,
            || {
                publisher.send_rtp(seq);
                seq += 1;
            },
        );

        let routers = node.shutdown().unwrap();
        assert!(routers.iter().all(|r| r.stats().drop_srtp_auth == 0));
    }
}
