//! Inter-node links on loopback: mutual TLS from one cluster CA, media-sized datagrams,
//! ordered control messages, refusal of foreign certificates, and one connection per
//! node pair however the nodes dial.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sluice_control::cluster::transport::MIN_LINK_DATAGRAM;
use sluice_control::cluster::{
    ClusterCa, Congestion, LinkEndpoint, LinkError, LinkEvent, LinkHandle, LinkTls,
};
use tokio::sync::mpsc;

type Events = mpsc::Receiver<LinkEvent>;

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A node `name` that presents a certificate from `issuer` and trusts `trusts`.
fn node_tls(trusts: &ClusterCa, issuer: &ClusterCa, name: &str) -> LinkTls {
    LinkTls::new(trusts.cert_der(), &issuer.issue(name).unwrap()).unwrap()
}

fn node(ca: &ClusterCa, name: &str) -> (LinkEndpoint, Events) {
    node_with(ca, name, Congestion::Bbr)
}

fn node_with(ca: &ClusterCa, name: &str, congestion: Congestion) -> (LinkEndpoint, Events) {
    LinkEndpoint::bind(any_port(), node_tls(ca, ca, name), congestion).unwrap()
}

fn addr(e: &LinkEndpoint) -> SocketAddr {
    e.local_addr().unwrap()
}

async fn next(events: &mut Events) -> LinkEvent {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("no link event within 5 s")
        .expect("event channel closed")
}

async fn connected(events: &mut Events) -> (String, LinkHandle) {
    match next(events).await {
        LinkEvent::Connected { peer, handle, .. } => (peer.to_string(), handle),
        e => panic!("expected Connected, got {e:?}"),
    }
}

/// Nothing more arrives within a short while.
async fn quiet(events: &mut Events) {
    if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(300), events.recv()).await {
        panic!("unexpected event {e:?}");
    }
}

/// Waits (up to 2 s) for `a`'s refusal counter to reach `n`: the refusing side may
/// return before the other has read its alert.
async fn refused_reaches(e: &LinkEndpoint, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while e.counters().snapshot().handshakes_refused < n && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(e.counters().snapshot().handshakes_refused, n);
}

/// A recognisable payload: `tag` then a counter pattern, `len` bytes in all.
fn payload(tag: u32, len: usize) -> Bytes {
    let mut v = tag.to_be_bytes().to_vec();
    v.extend(
        (0..len.saturating_sub(4)).map(|i| (i as u32).wrapping_mul(31).wrapping_add(tag) as u8),
    );
    v.truncate(len);
    Bytes::from(v)
}

#[tokio::test]
async fn two_nodes_exchange_media_datagrams_and_ordered_messages() {
    let ca = ClusterCa::ephemeral().unwrap();
    let (a, mut a_events) = node(&ca, "a");
    let (b, mut b_events) = node(&ca, "b");

    let to_a = b.connect(addr(&a), "a").await.unwrap();
    assert_eq!(&**to_a.peer(), "a");
    assert!(to_a.initiated_locally());
    let (peer, to_b) = connected(&mut a_events).await;
    assert_eq!(peer, "b", "the peer is named by its verified certificate");
    assert!(!to_b.initiated_locally());
    assert_eq!(to_b.remote_address(), addr(&b));
    assert_eq!(connected(&mut b_events).await.0, "a");

    // A link header plus a full 1200-byte RTP packet fits from the first packet on.
    for h in [&to_a, &to_b] {
        let max = h.max_datagram_size().unwrap();
        assert!(
            max >= MIN_LINK_DATAGRAM,
            "max_datagram_size {max} < {MIN_LINK_DATAGRAM}"
        );
    }

    // Datagrams of exactly 11 + 1200 bytes, both ways, arrive whole.
    const N: u32 = 20;
    for i in 0..N {
        to_a.send_datagram(payload(i, MIN_LINK_DATAGRAM)).unwrap();
        a.send_datagram("b", payload(1000 + i, MIN_LINK_DATAGRAM))
            .unwrap();
    }
    for (events, base, from) in [(&mut a_events, 0, "b"), (&mut b_events, 1000, "a")] {
        let mut got = Vec::new();
        while got.len() < N as usize {
            match next(events).await {
                LinkEvent::Datagram { peer, data } => {
                    assert_eq!(&*peer, from);
                    got.push(data);
                }
                e => panic!("expected a datagram, got {e:?}"),
            }
        }
        got.sort_by_key(|d| u32::from_be_bytes(d[..4].try_into().unwrap()));
        for (i, d) in got.iter().enumerate() {
            assert_eq!(*d, payload(base + i as u32, MIN_LINK_DATAGRAM));
        }
    }

    // Messages arrive in order and intact, whatever their size (empty to 1 MiB).
    let sizes = [0usize, 1, 3, 1211, 70_000, 1 << 20, 5, 0, 64 * 1024];
    let sent: Vec<Bytes> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| payload(i as u32, len))
        .collect();
    for m in &sent {
        b.send_message("a", m.clone()).await.unwrap();
    }
    to_b.try_send_message(Bytes::from_static(b"reply")).unwrap();
    for m in &sent {
        match next(&mut a_events).await {
            LinkEvent::Message { peer, data } => {
                assert_eq!(&*peer, "b");
                assert_eq!(data.len(), m.len());
                assert_eq!(data, m);
            }
            e => panic!("expected a message, got {e:?}"),
        }
    }
    match next(&mut b_events).await {
        LinkEvent::Message { data, .. } => assert_eq!(&data[..], b"reply"),
        e => panic!("expected the reply, got {e:?}"),
    }

    let (ca_, cb) = (a.counters().snapshot(), b.counters().snapshot());
    assert_eq!((ca_.connections, cb.connections), (1, 1));
    assert_eq!((ca_.datagrams_out, ca_.datagrams_in), (N as u64, N as u64));
    assert_eq!((cb.datagrams_out, cb.datagrams_in), (N as u64, N as u64));
    assert_eq!(
        (cb.messages_out, ca_.messages_in),
        (sizes.len() as u64, sizes.len() as u64)
    );
    assert_eq!((ca_.messages_out, cb.messages_in), (1, 1));
    let message_bytes: u64 = sizes.iter().map(|&s| s as u64).sum();
    let datagram_bytes = N as u64 * MIN_LINK_DATAGRAM as u64;
    assert_eq!(cb.bytes_out, datagram_bytes + message_bytes);
    assert_eq!(ca_.bytes_in, datagram_bytes + message_bytes);
    assert_eq!(ca_.oversize_drops + ca_.send_drops + ca_.recv_drops, 0);

    let stats = to_a.stats();
    assert!(stats.rtt > Duration::ZERO && stats.rtt < Duration::from_secs(1));
    assert!(stats.cwnd > 0);
    assert!(stats.udp_tx_bytes > message_bytes + datagram_bytes);
    assert!(stats.current_mtu >= 1300);

    // A closed link is reported on both sides, and the pair can link again.
    a.disconnect("b");
    assert!(
        matches!(next(&mut a_events).await, LinkEvent::Closed { ref peer, .. } if &**peer == "b")
    );
    assert!(
        matches!(next(&mut b_events).await, LinkEvent::Closed { ref peer, .. } if &**peer == "a")
    );
    assert!(matches!(
        to_a.send_datagram(payload(0, 10)),
        Err(LinkError::Closed(_))
    ));
    assert!(matches!(
        b.send_datagram("a", payload(0, 10)),
        Err(LinkError::NotConnected(_))
    ));
    let again = a.connect(addr(&b), "b").await.unwrap();
    assert!(again.initiated_locally());
    assert_eq!(connected(&mut b_events).await.0, "a");
}

#[tokio::test]
async fn certificates_from_another_ca_are_refused_and_counted() {
    let ca = ClusterCa::ephemeral().unwrap();
    let other = ClusterCa::ephemeral().unwrap();
    let (a, mut a_events) = node(&ca, "a");

    // Knows our CA (it is public) but holds a certificate from another: the TLS
    // handshake completes on its side, then `a` refuses its certificate.
    let (mallory, _m) = LinkEndpoint::bind(
        any_port(),
        node_tls(&ca, &other, "mallory"),
        Congestion::Bbr,
    )
    .unwrap();
    let err = mallory.connect(addr(&a), "a").await.unwrap_err();
    assert!(matches!(err, LinkError::Refused { .. }), "{err:?}");
    refused_reaches(&a, 1).await;
    assert_eq!(mallory.counters().snapshot().handshakes_refused, 1);

    // Even claiming a member's name does not help.
    let (fake_b, _f) =
        LinkEndpoint::bind(any_port(), node_tls(&ca, &other, "b"), Congestion::Bbr).unwrap();
    assert!(matches!(
        fake_b.connect(addr(&a), "a").await,
        Err(LinkError::Refused { .. })
    ));
    refused_reaches(&a, 2).await;

    // A node of another cluster altogether refuses `a` first; `a` counts that too.
    let (eve, _e) = node(&other, "eve");
    assert!(matches!(
        eve.connect(addr(&a), "a").await,
        Err(LinkError::Refused { .. })
    ));
    refused_reaches(&a, 3).await;

    // And a member dialing a foreign node refuses it.
    assert!(matches!(
        a.connect(addr(&eve), "eve").await,
        Err(LinkError::Refused { .. })
    ));

    refused_reaches(&a, 4).await;
    let c = a.counters().snapshot();
    assert_eq!(c.connections, 0);
    quiet(&mut a_events).await;
    assert!(a.links().is_empty());

    // A member still gets in.
    let (b, _b) = node(&ca, "b");
    b.connect(addr(&a), "a").await.unwrap();
    assert_eq!(connected(&mut a_events).await.0, "b");
}

#[tokio::test]
async fn dialing_the_wrong_name_is_refused() {
    let ca = ClusterCa::ephemeral().unwrap();
    let (a, _a) = node(&ca, "a");
    let (b, _b) = node(&ca, "b");
    // `a` answers with a certificate for a.sluice.internal, not c.sluice.internal.
    let err = b.connect(addr(&a), "c").await.unwrap_err();
    assert!(matches!(err, LinkError::Refused { .. }), "{err:?}");
    assert!(matches!(
        b.connect(addr(&a), "b").await,
        Err(LinkError::BadPeer(..))
    ));
    assert!(matches!(
        b.connect(addr(&a), "not_a_name").await,
        Err(LinkError::BadPeer(..))
    ));
}

#[tokio::test]
async fn oversize_datagrams_and_messages_are_counted_not_sent() {
    let ca = ClusterCa::ephemeral().unwrap();
    let (a, mut a_events) = node(&ca, "a");
    let (b, _b) = node(&ca, "b");
    let link = b.connect(addr(&a), "a").await.unwrap();
    connected(&mut a_events).await;

    let max = link.max_datagram_size().unwrap();
    let err = link.send_datagram(payload(1, max + 1)).unwrap_err();
    assert_eq!(err, LinkError::DatagramTooLarge { len: max + 1, max });
    let c = b.counters().snapshot();
    assert_eq!((c.oversize_drops, c.datagrams_out, c.bytes_out), (1, 0, 0));

    // The next datagram that arrives is the one that fits, whole: nothing was truncated.
    link.send_datagram(payload(2, max)).unwrap();
    match next(&mut a_events).await {
        LinkEvent::Datagram { data, .. } => assert_eq!(data, payload(2, max)),
        e => panic!("expected a datagram, got {e:?}"),
    }
    assert_eq!(a.counters().snapshot().datagrams_in, 1);

    let too_big = Bytes::from(vec![0u8; sluice_control::cluster::link::MAX_MESSAGE + 1]);
    assert!(matches!(
        link.send_message(too_big.clone()).await,
        Err(LinkError::MessageTooLarge { .. })
    ));
    assert!(matches!(
        link.try_send_message(too_big),
        Err(LinkError::MessageTooLarge { .. })
    ));
    assert_eq!(b.counters().snapshot().messages_out, 0);
}

#[tokio::test]
async fn simultaneous_dials_leave_one_connection() {
    let ca = ClusterCa::ephemeral().unwrap();
    for round in 0..5 {
        let (a, mut a_events) = node(&ca, "a");
        let (b, mut b_events) = node(&ca, "b");
        let (from_a, from_b) = tokio::join!(a.connect(addr(&b), "b"), b.connect(addr(&a), "a"));
        let (from_a, from_b) = (from_a.unwrap(), from_b.unwrap());
        // The survivor is the one "a" (the smaller name) dialed, on both sides.
        assert!(from_a.initiated_locally(), "round {round}");
        assert!(!from_b.initiated_locally(), "round {round}");
        let (pa, ha) = connected(&mut a_events).await;
        let (pb, hb) = connected(&mut b_events).await;
        assert_eq!((pa.as_str(), pb.as_str()), ("b", "a"));
        assert!(ha.initiated_locally() && !hb.initiated_locally());
        tokio::join!(quiet(&mut a_events), quiet(&mut b_events));
        assert_eq!((a.links().len(), b.links().len()), (1, 1));
        let (ca_, cb) = (a.counters().snapshot(), b.counters().snapshot());
        assert_eq!((ca_.connections, cb.connections), (1, 1), "round {round}");
        // Both dials were under way before either arrived (join! starts them in one
        // poll), so "a" refused b's connection as the duplicate.
        assert_eq!(
            (ca_.duplicates_refused, cb.duplicates_refused),
            (1, 0),
            "round {round}"
        );

        // And it carries traffic both ways.
        from_a.send_datagram(payload(7, 100)).unwrap();
        from_b.send_message(payload(8, 100)).await.unwrap();
        assert!(
            matches!(next(&mut b_events).await, LinkEvent::Datagram { data, .. } if data == payload(7, 100))
        );
        assert!(
            matches!(next(&mut a_events).await, LinkEvent::Message { data, .. } if data == payload(8, 100))
        );
    }
}

#[tokio::test]
async fn cubic_links_work_too() {
    let ca = ClusterCa::ephemeral().unwrap();
    let (a, mut a_events) = node_with(&ca, "a", Congestion::Cubic);
    let (b, _b) = node_with(&ca, "b", Congestion::Cubic);
    let link = b.connect(addr(&a), "a").await.unwrap();
    connected(&mut a_events).await;
    link.send_datagram(payload(3, MIN_LINK_DATAGRAM)).unwrap();
    assert!(
        matches!(next(&mut a_events).await, LinkEvent::Datagram { data, .. } if data == payload(3, MIN_LINK_DATAGRAM))
    );
}

/// A node whose process dies without closing anything: its own runtime is torn down
/// under it, so no CONNECTION_CLOSE is ever sent.
struct Doomed {
    rt: tokio::runtime::Runtime,
    endpoint: LinkEndpoint,
    _events: Events,
}

fn doomed(ca: &ClusterCa, name: &str) -> Doomed {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (endpoint, events) = rt.block_on(async { node(ca, name) });
    Doomed {
        rt,
        endpoint,
        _events: events,
    }
}

impl Doomed {
    fn kill(self) {
        self.rt.shutdown_background();
        // As in a crash, nothing runs on drop: dropping the endpoint would close it,
        // and a worker thread still winding down could send that close.
        std::mem::forget(self.endpoint);
    }
}

#[test]
fn a_dead_peer_is_noticed_within_seconds() {
    let ca = ClusterCa::ephemeral().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, mut a_events) = rt.block_on(async { node(&ca, "a") });
    let b = doomed(&ca, "b");
    b.rt.block_on(b.endpoint.connect(addr(&a), "a")).unwrap();
    rt.block_on(async {
        connected(&mut a_events).await;
    });
    b.kill();
    let started = std::time::Instant::now();
    rt.block_on(async {
        match tokio::time::timeout(Duration::from_secs(8), a_events.recv()).await {
            Ok(Some(LinkEvent::Closed { peer, reason })) => {
                assert_eq!(&*peer, "b");
                assert!(reason.contains("timed out"), "{reason}");
            }
            other => panic!("expected Closed, got {other:?}"),
        }
    });
    let took = started.elapsed();
    assert!(took < Duration::from_secs(6), "took {took:?}");
    assert!(a.links().is_empty());
}

#[test]
fn a_restarted_peer_replaces_its_dead_connection_at_once() {
    let ca = ClusterCa::ephemeral().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, mut a_events) = rt.block_on(async { node(&ca, "a") });
    let b = doomed(&ca, "b");
    let b_addr = addr(&b.endpoint);
    // `a` dials, so by name alone `a`'s connection would win any conflict.
    rt.block_on(a.connect(b_addr, "b")).unwrap();
    rt.block_on(async {
        connected(&mut a_events).await;
    });
    b.kill();

    // b comes back (a new run: a new instance) and dials before `a` has noticed.
    let b2 = doomed(&ca, "b");
    let started = std::time::Instant::now();
    let link = b2.rt.block_on(b2.endpoint.connect(addr(&a), "a")).unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    rt.block_on(async {
        match next(&mut a_events).await {
            LinkEvent::Closed { peer, reason } => {
                assert_eq!(&*peer, "b");
                assert!(reason.contains("replaced"), "{reason}");
            }
            e => panic!("expected Closed for the dead link, got {e:?}"),
        }
        let (peer, handle) = connected(&mut a_events).await;
        assert_eq!(peer, "b");
        assert!(!handle.initiated_locally());
    });
    b2.rt
        .block_on(link.send_message(Bytes::from_static(b"back")))
        .unwrap();
    rt.block_on(async {
        assert!(matches!(next(&mut a_events).await, LinkEvent::Message { data, .. } if &data[..] == b"back"));
    });
    assert_eq!(a.counters().snapshot().connections, 2);
}
