//! Real sockets on loopback: three nodes on their own threads, UDP for datagrams and
//! TCP (length-prefixed, one connection per message) for stream messages. They join,
//! share a room, lose one node, and converge.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use sluice_state::auth::ClusterKey;
use sluice_state::transport::MAX_STREAM_MESSAGE;
use sluice_state::{Node, NodeConfig, NodeId, NodeIdentity, RoomSnapshot, Transport};

enum Cmd {
    Join(String, String),
    Snapshot(Sender<(Vec<NodeId>, Option<RoomSnapshot>)>),
    Stop,
}

struct Sockets {
    udp: UdpSocket,
}

impl Transport for Sockets {
    fn send_datagram(&mut self, to: SocketAddr, data: &[u8]) {
        let _ = self.udp.send_to(data, to);
    }
    fn send_stream(&mut self, to: SocketAddr, data: &[u8]) {
        // Streams are rare (large syncs); a connection per message keeps the test small.
        if let Ok(mut s) = TcpStream::connect_timeout(&to, Duration::from_millis(200)) {
            let _ = s.write_all(&(data.len() as u32).to_be_bytes());
            let _ = s.write_all(data);
        }
    }
}

fn spawn_node(
    id: u64,
    udp: UdpSocket,
    tcp: TcpListener,
    seeds: Vec<SocketAddr>,
) -> (Sender<Cmd>, thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<Cmd>();
    let (stream_tx, stream_rx) = mpsc::channel::<Vec<u8>>();
    let addr = udp.local_addr().unwrap();
    tcp.set_nonblocking(false).unwrap();
    thread::spawn(move || {
        for conn in tcp.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut len = [0u8; 4];
            if conn.read_exact(&mut len).is_err() {
                continue;
            }
            let len = u32::from_be_bytes(len) as usize;
            if len > MAX_STREAM_MESSAGE {
                continue;
            }
            let mut buf = vec![0u8; len];
            if conn.read_exact(&mut buf).is_ok() && stream_tx.send(buf).is_err() {
                break;
            }
        }
    });
    let handle = thread::spawn(move || run_node(id, addr, udp, seeds, rx, stream_rx));
    (tx, handle)
}

fn run_node(
    id: u64,
    addr: SocketAddr,
    udp: UdpSocket,
    seeds: Vec<SocketAddr>,
    cmds: Receiver<Cmd>,
    streams: Receiver<Vec<u8>>,
) {
    let start = Instant::now();
    let identity = NodeIdentity::new(NodeId(id), "local", addr, addr, 100);
    let mut config = NodeConfig::new(identity, Box::new(ClusterKey::new(b"loopback-test-key")));
    config.seeds = seeds;
    let mut node = Node::new(config, start.elapsed());
    let mut sockets = Sockets {
        udp: udp.try_clone().unwrap(),
    };
    udp.set_read_timeout(Some(Duration::from_millis(2)))
        .unwrap();
    let mut buf = vec![0u8; 2048];
    loop {
        while let Some(t) = node.poll_transmit() {
            sockets.send(&t);
        }
        while node.poll_event().is_some() {}
        match cmds.try_recv() {
            Ok(Cmd::Join(room, p)) => {
                node.join_room(start.elapsed(), &room, &p).unwrap();
            }
            Ok(Cmd::Snapshot(reply)) => {
                let mut members: Vec<NodeId> = node.members().iter().map(|m| m.id).collect();
                members.sort();
                let _ = reply.send((members, node.room("call")));
            }
            Ok(Cmd::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
            Err(mpsc::TryRecvError::Empty) => {}
        }
        if let Ok((n, _)) = udp.recv_from(&mut buf) {
            node.handle_datagram(start.elapsed(), &buf[..n]);
        }
        while let Ok(msg) = streams.try_recv() {
            node.handle_stream(start.elapsed(), &msg);
        }
        let now = start.elapsed();
        if node.poll_timeout().is_some_and(|t| t <= now) {
            node.handle_timeout(now);
        }
    }
}

fn snapshot(tx: &Sender<Cmd>) -> (Vec<NodeId>, Option<RoomSnapshot>) {
    let (rtx, rrx) = mpsc::channel();
    tx.send(Cmd::Snapshot(rtx)).unwrap();
    rrx.recv_timeout(Duration::from_secs(5)).unwrap()
}

fn wait_for(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn three_nodes_on_loopback_join_share_a_room_lose_one_and_converge() {
    // UDP and TCP on the same port number, so one link address serves both.
    let mut sockets = Vec::new();
    while sockets.len() < 3 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
            sockets.push((udp, tcp));
        }
    }
    let seed = sockets[0].0.local_addr().unwrap();
    let mut nodes = Vec::new();
    for (i, (udp, tcp)) in sockets.into_iter().enumerate() {
        nodes.push(spawn_node(i as u64 + 1, udp, tcp, vec![seed]));
    }
    let ids = [NodeId(1), NodeId(2), NodeId(3)];
    assert!(
        wait_for(Duration::from_secs(10), || nodes
            .iter()
            .all(|(tx, _)| snapshot(tx).0.len() == 2)),
        "cluster did not form"
    );
    for (i, (tx, _)) in nodes.iter().enumerate() {
        tx.send(Cmd::Join("call".into(), format!("user{i}")))
            .unwrap();
    }
    // Enough participants that the first full sync needs a stream.
    for k in 0..60 {
        nodes[0]
            .0
            .send(Cmd::Join(
                "call".into(),
                format!("bulk-participant-with-long-name-{k}"),
            ))
            .unwrap();
    }
    assert!(
        wait_for(Duration::from_secs(10), || {
            let s: Vec<_> = nodes.iter().map(|(tx, _)| snapshot(tx).1).collect();
            s[0].as_ref().is_some_and(|r| r.participants.len() == 63)
                && s.windows(2).all(|w| w[0] == w[1])
        }),
        "room did not converge"
    );

    // Lose node 3 abruptly.
    let (tx3, h3) = nodes.pop().unwrap();
    tx3.send(Cmd::Stop).unwrap();
    h3.join().unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || {
            let s: Vec<_> = nodes.iter().map(|(tx, _)| snapshot(tx)).collect();
            s.iter().all(|(members, room)| {
                !members.contains(&ids[2])
                    && room.as_ref().is_some_and(|r| {
                        r.participants.len() == 62 && !r.participants.contains_key("user2")
                    })
            }) && s[0].1 == s[1].1
        }),
        "survivors did not converge after the loss"
    );
    for (tx, h) in nodes {
        tx.send(Cmd::Stop).unwrap();
        h.join().unwrap();
    }
}
