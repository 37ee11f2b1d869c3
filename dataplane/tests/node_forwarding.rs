//! The router on real drivers: SRTP from a publisher socket through two workers to
//! subscriber sockets on both, every packet decrypted and checked, under each driver
//! this machine offers. Nothing asserts on time; timeouts only turn a hang into a failure.

use sluice_dataplane::driver::{DriverConfig, DriverKind, probe_uring, worker_for};
use sluice_dataplane::node::MediaNode;
use sluice_dataplane::router::{
    Codec, LayerConfig, RouterConfig, SessionConfig, SrtpKeys, SubscribeConfig, TrackConfig,
};
use sluice_dataplane::rtcp::RtcpWriter;
use sluice_dataplane::rtp::{ExtensionIds, RtpPacket};
use sluice_dataplane::srtp::{Profile, SrtpContext};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
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

/// A client socket that the node steers to `worker`.
fn client_on(worker: usize) -> UdpSocket {
    loop {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        if worker_for(s.local_addr().unwrap(), WORKERS) == worker {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            // The whole run is sent before it is read: make room for it (forced, as root;
            // otherwise as much as rmem_max allows).
            let val: libc::c_int = 16 << 20;
            // SAFETY: setsockopt with a live c_int of the stated size.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    (&val as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
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
        let sock = client_on(worker);
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
        sock.connect(node.local_addr()).unwrap();
        Self {
            id,
            sock,
            tx: SrtpContext::new(PROFILE, &up.key, &up.salt).unwrap(),
            rx: SrtpContext::new(PROFILE, &down.key, &down.salt).unwrap(),
        }
    }

    fn send_rtp(&mut self, seq: u16, body: &[u8]) {
        let mut p = vec![0x80, 111, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0x0a];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 960).to_be_bytes());
        p.extend_from_slice(body);
        let len = p.len();
        p.resize(len + 32, 0);
        let n = self.tx.protect_rtp(&mut p, len).unwrap();
        self.sock.send(&p[..n]).unwrap();
    }

    fn send_nack(&mut self, media_ssrc: u32, lost: &[u16]) {
        let mut b = vec![0u8; 256];
        let mut w = RtcpWriter::new(&mut b[..200]);
        w.nack(self.id as u32, media_ssrc, lost.iter().copied())
            .unwrap();
        let n = w.finish();
        let n = self.tx.protect_rtcp(&mut b, n).unwrap();
        self.sock.send(&b[..n]).unwrap();
    }

    /// The next RTP packet for this client, decrypted: (ssrc, seq, pt, payload). RTCP
    /// the node originates (reports, feedback) is skipped.
    fn recv_rtp(&mut self) -> (u32, u16, u8, Vec<u8>) {
        self.try_recv_rtp().expect("a packet before the timeout")
    }

    fn try_recv_rtp(&mut self) -> Option<(u32, u16, u8, Vec<u8>)> {
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
            let payload = p.payload().to_vec();
            return Some((p.ssrc(), p.sequence_number(), p.payload_type(), payload));
        }
    }
}

fn index(payload: &[u8]) -> u32 {
    u32::from_be_bytes(payload[..4].try_into().unwrap())
}

fn body(i: u32) -> Vec<u8> {
    let mut b = i.to_be_bytes().to_vec();
    b.extend((0..200u32).map(|k| (k ^ i) as u8));
    b
}

#[test]
fn srtp_fans_out_across_workers_with_every_packet_verified() {
    for kind in kinds() {
        let driver = DriverConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            workers: WORKERS,
            kind,
            ..DriverConfig::default()
        };
        let mut node = MediaNode::start(driver, RouterConfig::default()).unwrap();
        let mut publisher = Client::new(1, 0, &mut node);
        // Two subscribers on the publisher's worker, two on the other one.
        let mut subs: Vec<Client> = [0, 0, 1, 1]
            .into_iter()
            .enumerate()
            .map(|(i, w)| Client::new(10 + i as u64, w, &mut node))
            .collect();
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
        for (i, s) in subs.iter().enumerate() {
            node.subscribe(SubscribeConfig {
                session: s.id,
                track: 7,
                ssrc: 0x5000 + i as u32,
                payload_type: 100 + i as u8,
                rtx: Some((0x6000 + i as u32, 120)),
                initial_seq: 1000 * i as u16,
                initial_ts: 0,
                layer: 0,
                pinned: true,
                ext_remap: None,
            })
            .unwrap();
        }

        // Commands and media travel separate paths: send until every subscriber has seen
        // a packet, so the measured run starts with every subscription in place.
        let mut seq = 0u16;
        let deadline = Instant::now() + Duration::from_secs(10);
        // Per subscriber: (last output seq, last publisher index) seen.
        let mut seen: Vec<Option<(u16, u32)>> = vec![None; subs.len()];
        while seen.iter().any(Option::is_none) {
            assert!(
                Instant::now() < deadline,
                "{kind:?}: subscriptions never became live"
            );
            publisher.send_rtp(seq, &body(u32::from(seq)));
            seq += 1;
            for (i, s) in subs.iter_mut().enumerate() {
                s.sock
                    .set_read_timeout(Some(Duration::from_millis(20)))
                    .unwrap();
                while let Some((_, sseq, _, payload)) = s.try_recv_rtp() {
                    seen[i] = Some((sseq, index(&payload)));
                }
            }
        }
        for s in &subs {
            s.sock
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
        }

        // The measured run: every subscriber gets every packet after its first, decrypted
        // with its own keys, on its own SSRC and payload type, numbered without a gap and
        // with the publisher's payload intact.
        const N: u16 = 2000;
        let start = seq;
        for k in 0..N {
            publisher.send_rtp(start + k, &body(u32::from(start + k)));
            if k % 25 == 24 {
                // Stay far below the socket buffers: this checks correctness, not speed.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let end = u32::from(start + N - 1);
        for (i, s) in subs.iter_mut().enumerate() {
            let (mut prev_seq, mut prev_index) = seen[i].unwrap();
            while prev_index < end {
                let Some((ssrc, sseq, pt, payload)) = s.try_recv_rtp() else {
                    panic!(
                        "{kind:?} sub {i}: nothing after publisher packet {prev_index} (last {end})"
                    );
                };
                assert_eq!((ssrc, pt), (0x5000 + i as u32, 100 + i as u8), "{kind:?}");
                assert_eq!(
                    sseq,
                    prev_seq.wrapping_add(1),
                    "{kind:?} sub {i}: sequence gap"
                );
                assert_eq!(
                    index(&payload),
                    prev_index + 1,
                    "{kind:?} sub {i}: lost packet"
                );
                assert_eq!(payload, body(prev_index + 1), "{kind:?} sub {i}: payload");
                (prev_seq, prev_index) = (sseq, prev_index + 1);
            }
            seen[i] = Some((prev_seq, prev_index));
        }

        // A NACK from a subscriber on the other worker is answered from that worker's
        // cache, as RTX carrying the original sequence number and payload.
        let (lost_seq, lost_index) = seen[3].unwrap();
        subs[3].send_nack(0x5003, &[lost_seq]);
        let (ssrc, _, pt, payload) = subs[3].recv_rtp();
        assert_eq!((ssrc, pt), (0x6003, 120), "{kind:?}: RTX stream");
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), lost_seq);
        assert_eq!(payload[2..], body(lost_index)[..]);

        let routers = node.shutdown().unwrap();
        let forwarded: u64 = routers.iter().map(|r| r.stats().rtp_out).sum();
        assert!(forwarded >= u64::from(N) * 4, "{kind:?}: {forwarded}");
        assert_eq!(routers[1].stats().retransmits, 1, "{kind:?}");
        assert!(routers.iter().all(|r| r.stats().drop_srtp_auth == 0));
    }
}
