//! Link behaviour that needs the wire format: a hand-driven quinn peer speaks (or breaks)
//! the protocol against a real endpoint on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::VarInt;
use tokio::sync::mpsc;

use super::frame::{MAX_MESSAGE, encode_len};
use super::hello::Hello;
use super::*;
use crate::cluster::transport::{Congestion, transport_config};
use crate::cluster::{ClusterCa, LinkTls};

#[test]
fn datagram_admission() {
    assert_eq!(admit_datagram(1211, Some(1262), 10_000), Admission::Send);
    assert_eq!(admit_datagram(1262, Some(1262), 1262), Admission::Send);
    assert_eq!(
        admit_datagram(1263, Some(1262), 10_000),
        Admission::TooLarge { max: 1262 }
    );
    assert_eq!(admit_datagram(1000, Some(1262), 999), Admission::BufferFull);
    assert_eq!(admit_datagram(10, None, 10_000), Admission::Unsupported);
}

async fn next(events: &mut mpsc::Receiver<LinkEvent>) -> LinkEvent {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("no event within 5 s")
        .expect("event channel closed")
}

struct Raw {
    conn: quinn::Connection,
    send: quinn::SendStream,
    _endpoint: quinn::Endpoint,
}

/// A node "raw" with a valid certificate, driven by hand: TLS done, nothing else sent.
async fn raw_peer(ca: &ClusterCa, to: SocketAddr) -> Raw {
    let tls = LinkTls::new(ca.cert_der(), &ca.issue("raw").unwrap()).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let config = tls.client_config(Arc::new(transport_config(Congestion::Bbr)));
    let conn = endpoint
        .connect_with(config, to, "a.sluice.internal")
        .unwrap()
        .await
        .unwrap();
    let send = conn.open_uni().await.unwrap();
    Raw {
        conn,
        send,
        _endpoint: endpoint,
    }
}

async fn endpoint_a(ca: &ClusterCa) -> (LinkEndpoint, mpsc::Receiver<LinkEvent>) {
    let tls = LinkTls::new(ca.cert_der(), &ca.issue("a").unwrap()).unwrap();
    LinkEndpoint::bind("127.0.0.1:0".parse().unwrap(), tls, Congestion::Bbr).unwrap()
}

fn framed(data: &[u8]) -> Vec<u8> {
    let mut out = encode_len(data.len(), MAX_MESSAGE).unwrap().to_vec();
    out.extend_from_slice(data);
    out
}

async fn closed_with(conn: &quinn::Connection) -> Option<VarInt> {
    match tokio::time::timeout(Duration::from_secs(10), conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => Some(c.error_code),
        _ => None,
    }
}

#[tokio::test]
async fn an_oversize_frame_closes_the_link_and_is_counted() {
    let ca = ClusterCa::ephemeral().unwrap();
    let (a, mut events) = endpoint_a(&ca).await;
    let mut raw = raw_peer(&ca, a.local_addr().unwrap()).await;
    raw.send
        .write_all(&framed(&Hello { instance: 1 }.encode()))
        .await
        .unwrap();
    // The acceptor answers with its own hello once it keeps the link.
    let mut recv = raw.conn.accept_uni().await.unwrap();
    let mut answer = [0u8; 4 + 13];
    recv.read_exact(&mut answer).await.unwrap();
    assert!(Hello::decode(&answer[4..]).is_ok());
    assert!(
        matches!(next(&mut events).await, LinkEvent::Connected { ref peer, .. } if &**peer == "raw")
    );

    // One good message, then a length one byte over the cap.
    raw.send.write_all(&framed(b"hi")).await.unwrap();
    raw.send
        .write_all(&(MAX_MESSAGE as u32 + 1).to_be_bytes())
        .await
        .unwrap();
    match next(&mut events).await {
        LinkEvent::Message { data, .. } => assert_eq!(&data[..], b"hi"),
        e => panic!("expected the message, got {e:?}"),
    }
    assert!(
        matches!(next(&mut events).await, LinkEvent::Closed { ref peer, .. } if &**peer == "raw")
    );
    assert_eq!(
        closed_with(&raw.conn).await,
        Some(VarInt::from_u32(close_code::PROTOCOL))
    );
    let c = a.counters().snapshot();
    assert_eq!((c.protocol_errors, c.messages_in, c.connections), (1, 1, 1));
    assert!(a.link("raw").is_none());
}

#[tokio::test]
async fn a_bad_hello_is_refused_before_the_link_exists() {
    let ca = ClusterCa::ephemeral().unwrap();
    let (a, mut events) = endpoint_a(&ca).await;
    let mut raw = raw_peer(&ca, a.local_addr().unwrap()).await;
    raw.send
        .write_all(&framed(b"GET / HTTP/1.1\r\n"))
        .await
        .unwrap();
    assert_eq!(
        closed_with(&raw.conn).await,
        Some(VarInt::from_u32(close_code::PROTOCOL))
    );
    let c = a.counters().snapshot();
    assert_eq!((c.protocol_errors, c.connections), (1, 0));
    assert!(events.try_recv().is_err(), "no event for a refused link");
}

#[tokio::test]
async fn a_silent_peer_is_dropped_after_the_hello_timeout() {
    let ca = ClusterCa::ephemeral().unwrap();
    let (a, _events) = endpoint_a(&ca).await;
    let raw = raw_peer(&ca, a.local_addr().unwrap()).await;
    // No hello: after HELLO_TIMEOUT the endpoint gives up on the connection.
    let code = closed_with(&raw.conn).await;
    assert_eq!(code, Some(VarInt::from_u32(close_code::PROTOCOL)));
    assert_eq!(a.counters().snapshot().handshakes_failed, 1);
}
