//! The tokio driver: one quinn endpoint, an accept loop, and per link a writer task,
//! a datagram reader, a message reader and a close watcher.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use quinn::{ConnectionError, RecvStream, SendStream};
use tokio::sync::{mpsc, oneshot};

use super::counters::LinkCounters;
use super::frame::{self, LEN_PREFIX, MAX_MESSAGE};
use super::hello::{HELLO_LEN, Hello};
use super::tiebreak::{self, ActiveInfo, Decision, Existing};
use super::{HandleInner, LinkError, LinkEvent, LinkHandle, MESSAGE_QUEUE, PeerName, close_code};
use crate::cluster::name::{check_node_name, node_dns_name};
use crate::cluster::tls::{LinkTls, peer_node_name};
use crate::cluster::transport::{Congestion, transport_config};

/// How long a connected peer has to send its hello (and the acceptor its answer).
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `connect` waits for a link, handshake and simultaneous-dial settling included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Events buffered for the consumer. Datagrams beyond it are dropped and counted;
/// everything else waits.
const EVENT_QUEUE: usize = 4096;

/// A node's link endpoint. Cheap to clone; the endpoint closes when the last clone is
/// dropped or on [`shutdown`](Self::shutdown).
#[derive(Debug, Clone)]
pub struct LinkEndpoint {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    name: PeerName,
    instance: u64,
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    probe_config: quinn::ClientConfig,
    counters: Arc<LinkCounters>,
    events: mpsc::Sender<LinkEvent>,
    peers: Mutex<HashMap<PeerName, PeerEntry>>,
    next_attempt: AtomicU64,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.endpoint
            .close(close_code::NORMAL.into(), b"endpoint dropped");
    }
}

#[derive(Debug, Default)]
struct PeerEntry {
    active: Option<Active>,
    /// Our outgoing attempt in progress, by attempt id.
    pending: Option<u64>,
    /// `connect` calls waiting for this peer's link.
    waiters: Vec<oneshot::Sender<Result<LinkHandle, LinkError>>>,
}

impl PeerEntry {
    fn is_empty(&self) -> bool {
        self.active.is_none() && self.pending.is_none() && self.waiters.is_empty()
    }

    fn resolve_waiters(&mut self, result: &Result<LinkHandle, LinkError>) {
        for w in self.waiters.drain(..) {
            let _ = w.send(result.clone());
        }
    }
}

#[derive(Debug)]
struct Active {
    handle: LinkHandle,
    peer_instance: u64,
}

impl Active {
    fn info(&self) -> ActiveInfo {
        ActiveInfo {
            initiated_locally: self.handle.initiated_locally(),
            peer_instance: self.peer_instance,
        }
    }
}

/// A connection with its hello exchanged on our side, ready to become a peer's link.
struct Ready {
    peer: PeerName,
    conn: quinn::Connection,
    send: SendStream,
    recv: RecvStream,
    peer_instance: u64,
    /// Our hello still to be written (the acceptor sends it only once it keeps the link).
    hello_to_send: Option<Bytes>,
}

impl LinkEndpoint {
    /// Binds a link endpoint on `addr` (port 0 picks one) that accepts and dials links
    /// as `tls` says. Must be called inside a tokio runtime. Returns the endpoint and its
    /// event channel; keep reading it, or links stall (datagrams are dropped instead).
    pub fn bind(
        addr: SocketAddr,
        tls: LinkTls,
        congestion: Congestion,
    ) -> Result<(Self, mpsc::Receiver<LinkEvent>), LinkError> {
        let transport = Arc::new(transport_config(congestion));
        let endpoint = quinn::Endpoint::server(tls.server_config(transport.clone()), addr)
            .map_err(|e| LinkError::Bind(format!("{addr}: {e}")))?;
        let (events, rx) = mpsc::channel(EVENT_QUEUE);
        let shared = Arc::new(Shared {
            name: tls.name().into(),
            instance: rand::random(),
            endpoint: endpoint.clone(),
            probe_config: tls.probe_config(transport.clone()),
            client_config: tls.client_config(transport),
            counters: Arc::default(),
            events,
            peers: Mutex::default(),
            next_attempt: AtomicU64::new(1),
        });
        tokio::spawn(accept_loop(endpoint, Arc::downgrade(&shared)));
        Ok((Self { shared }, rx))
    }

    /// This node's name (from its certificate).
    pub fn name(&self) -> &PeerName {
        &self.shared.name
    }

    pub fn local_addr(&self) -> Result<SocketAddr, LinkError> {
        self.shared
            .endpoint
            .local_addr()
            .map_err(|e| LinkError::Bind(e.to_string()))
    }

    pub fn counters(&self) -> &LinkCounters {
        &self.shared.counters
    }

    /// The link to `peer`, dialing `addr` if there is none. A second call while a dial
    /// is under way waits for the same one. If `peer` dials us at the same moment, both
    /// calls return the one surviving connection.
    pub async fn connect(&self, addr: SocketAddr, peer: &str) -> Result<LinkHandle, LinkError> {
        check_node_name(peer).map_err(|e| LinkError::BadPeer(peer.to_owned(), e))?;
        if peer == &*self.shared.name {
            return Err(LinkError::BadPeer(
                peer.to_owned(),
                "that is this node".to_owned(),
            ));
        }
        let peer: PeerName = peer.into();
        let (tx, rx) = oneshot::channel();
        let attempt = {
            let mut peers = lock(&self.shared.peers);
            let entry = peers.entry(peer.clone()).or_default();
            // A link that is closing but not yet reported counts as gone: dial anew.
            if let Some(active) = entry.active.as_ref().filter(|a| !a.handle.is_closed()) {
                return Ok(active.handle.clone());
            }
            entry.waiters.retain(|w| !w.is_closed());
            entry.waiters.push(tx);
            match entry.pending {
                Some(_) => None,
                None => {
                    let id = self.shared.next_attempt.fetch_add(1, Ordering::Relaxed);
                    entry.pending = Some(id);
                    Some(id)
                }
            }
        };
        if let Some(id) = attempt {
            tokio::spawn(dial(Arc::downgrade(&self.shared), addr, peer.clone(), id));
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(LinkError::Closed(peer.to_string())),
            Err(_) => Err(LinkError::Timeout(peer.to_string())),
        }
    }

    /// The link to whichever node listens at `addr`: a short TLS handshake that accepts
    /// any node certified by the CA learns its name (then closes), and [`Self::connect`]
    /// dials it by that name. For seeds and members known only by address.
    pub async fn connect_any(&self, addr: SocketAddr) -> Result<LinkHandle, LinkError> {
        let who = addr.to_string();
        let connecting = self
            .shared
            .endpoint
            .connect_with(
                self.shared.probe_config.clone(),
                addr,
                "probe.sluice.internal",
            )
            .map_err(|e| LinkError::Connect {
                peer: who.clone(),
                reason: e.to_string(),
            })?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| LinkError::Timeout(who.clone()))?
            .map_err(|e| LinkError::Refused {
                peer: who.clone(),
                reason: e.to_string(),
            })?;
        let name = peer_node_name(&conn);
        conn.close(close_code::NORMAL.into(), b"name probe");
        let name = name.ok_or_else(|| LinkError::BadPeer(who, "names no node".to_owned()))?;
        self.connect(addr, &name).await
    }

    /// The current link to `peer`.
    pub fn link(&self, peer: &str) -> Option<LinkHandle> {
        lock(&self.shared.peers)
            .get(peer)
            .and_then(|e| e.active.as_ref())
            .map(|a| a.handle.clone())
    }

    /// Every current link.
    pub fn links(&self) -> Vec<LinkHandle> {
        lock(&self.shared.peers)
            .values()
            .filter_map(|e| e.active.as_ref().map(|a| a.handle.clone()))
            .collect()
    }

    /// Sends a datagram on the current link to `peer`; see [`LinkHandle::send_datagram`].
    /// The media path should hold the handle instead and skip this lookup.
    pub fn send_datagram(&self, peer: &str, data: Bytes) -> Result<(), LinkError> {
        self.require(peer)?.send_datagram(data)
    }

    /// Queues a control message on the current link to `peer`.
    pub async fn send_message(&self, peer: &str, data: Bytes) -> Result<(), LinkError> {
        self.require(peer)?.send_message(data).await
    }

    pub fn try_send_message(&self, peer: &str, data: Bytes) -> Result<(), LinkError> {
        self.require(peer)?.try_send_message(data)
    }

    fn require(&self, peer: &str) -> Result<LinkHandle, LinkError> {
        self.link(peer)
            .ok_or_else(|| LinkError::NotConnected(peer.to_owned()))
    }

    /// Closes the link to `peer`, if any (reported as `Closed`).
    pub fn disconnect(&self, peer: &str) {
        if let Some(h) = self.link(peer) {
            h.close();
        }
    }

    /// Closes every link and the endpoint, and waits (briefly) for the peers to be told.
    /// Closes every link at once, without waiting for anything (a crashing node).
    pub fn abort(&self) {
        self.shared
            .endpoint
            .close(close_code::NORMAL.into(), b"aborted");
    }

    pub async fn shutdown(&self) {
        self.shared
            .endpoint
            .close(close_code::NORMAL.into(), b"shutdown");
        let _ =
            tokio::time::timeout(Duration::from_secs(1), self.shared.endpoint.wait_idle()).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not take the links down with it: the table stays usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept_loop(endpoint: quinn::Endpoint, shared: Weak<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        let Some(s) = shared.upgrade() else { break };
        tokio::spawn(accept(s, incoming));
    }
}

/// Whether a connection ended in a TLS alert (QUIC CRYPTO_ERROR, 0x100-0x1ff), ours or
/// the peer's: a certificate was refused (or ALPN did not match).
fn is_tls_refusal(e: &ConnectionError) -> bool {
    let code = match e {
        ConnectionError::TransportError(t) => u64::from(t.code),
        ConnectionError::ConnectionClosed(c) => u64::from(c.error_code),
        _ => return false,
    };
    (0x100..0x200).contains(&code)
}

fn is_duplicate(e: &ConnectionError) -> bool {
    matches!(e, ConnectionError::ApplicationClosed(c)
        if c.error_code == quinn::VarInt::from_u32(close_code::DUPLICATE))
}

/// Counts a failed handshake and turns it into the error `connect` reports.
fn handshake_failed(shared: &Shared, peer: &str, e: &ConnectionError) -> LinkError {
    let reason = e.to_string();
    if is_tls_refusal(e) {
        LinkCounters::inc(&shared.counters.handshakes_refused);
        LinkError::Refused {
            peer: peer.to_owned(),
            reason,
        }
    } else if is_duplicate(e) {
        LinkError::Duplicate(peer.to_owned())
    } else {
        LinkCounters::inc(&shared.counters.handshakes_failed);
        LinkError::Connect {
            peer: peer.to_owned(),
            reason,
        }
    }
}

/// A connection's failure after the TLS handshake: if it was closed, why it was closed
/// says more than the stream error that noticed it.
fn after_handshake(
    shared: &Shared,
    peer: &str,
    conn: &quinn::Connection,
    what: String,
) -> LinkError {
    match conn.close_reason() {
        Some(e) => handshake_failed(shared, peer, &e),
        None => {
            LinkCounters::inc(&shared.counters.handshakes_failed);
            conn.close(close_code::PROTOCOL.into(), b"handshake incomplete");
            LinkError::Connect {
                peer: peer.to_owned(),
                reason: what,
            }
        }
    }
}

fn protocol_error(
    shared: &Shared,
    peer: &str,
    conn: &quinn::Connection,
    reason: String,
) -> LinkError {
    LinkCounters::inc(&shared.counters.protocol_errors);
    conn.close(close_code::PROTOCOL.into(), reason.as_bytes());
    LinkError::Connect {
        peer: peer.to_owned(),
        reason,
    }
}

/// Reads one frame of at most `max` bytes. `Ok(None)`: the peer finished the stream
/// between frames.
async fn read_frame(recv: &mut RecvStream, max: usize) -> Result<Option<Bytes>, FrameError> {
    let mut prefix = [0u8; LEN_PREFIX];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(FrameError::Read(e.to_string())),
    }
    let len = frame::decode_len(prefix, max).map_err(FrameError::TooLarge)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| FrameError::Read(e.to_string()))?;
    Ok(Some(Bytes::from(body)))
}

#[derive(Debug)]
enum FrameError {
    TooLarge(frame::FrameTooLarge),
    Read(String),
}

async fn write_frame(send: &mut SendStream, data: Bytes) -> Result<(), String> {
    let prefix = frame::encode_len(data.len(), MAX_MESSAGE).map_err(|e| e.to_string())?;
    send.write_all_chunks(&mut [Bytes::copy_from_slice(&prefix), data])
        .await
        .map_err(|e| e.to_string())
}

/// Reads the peer's hello from the first uni stream it opens.
async fn read_hello(
    shared: &Shared,
    peer: &str,
    conn: &quinn::Connection,
) -> Result<(RecvStream, Hello), LinkError> {
    let read = async {
        let mut recv = conn.accept_uni().await.map_err(|e| e.to_string())?;
        let hello = read_frame(&mut recv, HELLO_LEN).await;
        Ok::<_, String>((recv, hello))
    };
    let (recv, hello) = match tokio::time::timeout(HELLO_TIMEOUT, read).await {
        Ok(Ok(r)) => r,
        Ok(Err(what)) => return Err(after_handshake(shared, peer, conn, what)),
        Err(_) => return Err(after_handshake(shared, peer, conn, "no hello".to_owned())),
    };
    match hello {
        Ok(Some(data)) => match Hello::decode(&data) {
            Ok(h) => Ok((recv, h)),
            Err(e) => Err(protocol_error(shared, peer, conn, e.to_string())),
        },
        Ok(None) => Err(protocol_error(
            shared,
            peer,
            conn,
            "empty control stream".to_owned(),
        )),
        Err(FrameError::TooLarge(e)) => {
            Err(protocol_error(shared, peer, conn, format!("hello: {e}")))
        }
        Err(FrameError::Read(what)) => Err(after_handshake(shared, peer, conn, what)),
    }
}

fn our_hello(shared: &Shared) -> Bytes {
    Bytes::copy_from_slice(
        &Hello {
            instance: shared.instance,
        }
        .encode(),
    )
}

/// An outgoing attempt; whatever happens, it settles the peer's pending state.
async fn dial(shared: Weak<Shared>, addr: SocketAddr, peer: PeerName, attempt: u64) {
    let Some(s) = shared.upgrade() else { return };
    let result = match dial_inner(&s, addr, &peer).await {
        Ok(ready) => activate(&s, ready, Some(attempt)).await,
        Err(e) => Err(e),
    };
    let Err(e) = result else { return };
    let mut peers = lock(&s.peers);
    let Some(entry) = peers.get_mut(&peer) else {
        return;
    };
    if entry.pending != Some(attempt) {
        return; // an incoming connection from the peer took over; it resolves waiters
    }
    entry.pending = None;
    // Refused as a duplicate: the peer's own connection is on its way and will resolve
    // the waiters. Anything else fails them now.
    if !matches!(e, LinkError::Duplicate(_)) {
        entry.resolve_waiters(&Err(e));
    }
    if entry.is_empty() {
        peers.remove(&peer);
    }
}

async fn dial_inner(s: &Shared, addr: SocketAddr, peer: &PeerName) -> Result<Ready, LinkError> {
    let connecting = s
        .endpoint
        .connect_with(s.client_config.clone(), addr, &node_dns_name(peer))
        .map_err(|e| {
            LinkCounters::inc(&s.counters.handshakes_failed);
            LinkError::Connect {
                peer: peer.to_string(),
                reason: e.to_string(),
            }
        })?;
    let conn = connecting
        .await
        .map_err(|e| handshake_failed(s, peer, &e))?;
    // webpki matched the name case-insensitively; links are keyed by the exact name.
    if peer_node_name(&conn).as_deref() != Some(&**peer) {
        return Err(protocol_error(
            s,
            peer,
            &conn,
            format!("certificate names {:?}", peer_node_name(&conn)),
        ));
    }
    // Our hello goes first: the acceptor decides only once it has it.
    let mut send = conn
        .open_uni()
        .await
        .map_err(|e| after_handshake(s, peer, &conn, e.to_string()))?;
    if let Err(what) = write_frame(&mut send, our_hello(s)).await {
        return Err(after_handshake(s, peer, &conn, what));
    }
    // TLS 1.3 lets a client finish before the server has checked the client's
    // certificate: the acceptor's hello is what says we were accepted.
    let (recv, hello) = read_hello(s, peer, &conn).await?;
    Ok(Ready {
        peer: peer.clone(),
        conn,
        send,
        recv,
        peer_instance: hello.instance,
        hello_to_send: None,
    })
}

async fn accept(s: Arc<Shared>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            let _ = handshake_failed(&s, &remote.to_string(), &e);
            tracing::debug!(%remote, "link handshake failed: {e}");
            return;
        }
    };
    let Some(peer) = peer_node_name(&conn) else {
        // The chain verified, yet it names no node: not a node certificate.
        LinkCounters::inc(&s.counters.handshakes_refused);
        conn.close(close_code::PROTOCOL.into(), b"not a node certificate");
        return;
    };
    if peer == *s.name {
        LinkCounters::inc(&s.counters.handshakes_refused);
        conn.close(close_code::PROTOCOL.into(), b"peer has our own name");
        return;
    }
    let peer: PeerName = peer.into();
    let (recv, hello) = match read_hello(&s, &peer, &conn).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%remote, %peer, "link hello failed: {e}");
            return;
        }
    };
    let send = match conn.open_uni().await {
        Ok(send) => send,
        Err(e) => {
            let _ = after_handshake(&s, &peer, &conn, e.to_string());
            return;
        }
    };
    let ready = Ready {
        peer: peer.clone(),
        conn,
        send,
        recv,
        peer_instance: hello.instance,
        hello_to_send: Some(our_hello(&s)),
    };
    if let Err(e) = activate(&s, ready, None).await {
        tracing::debug!(%remote, %peer, "incoming link not kept: {e}");
    }
}

/// Makes `ready` the peer's link if the rules allow: an outgoing attempt (`attempt`
/// given) only if it is still the peer's pending one; an incoming one per `tiebreak`.
async fn activate(s: &Arc<Shared>, ready: Ready, attempt: Option<u64>) -> Result<(), LinkError> {
    let Ready {
        peer,
        conn,
        send,
        recv,
        peer_instance,
        hello_to_send,
    } = ready;
    let (messages_tx, messages_rx) = mpsc::channel(MESSAGE_QUEUE);
    let handle = LinkHandle {
        inner: Arc::new(HandleInner {
            peer: peer.clone(),
            conn: conn.clone(),
            initiated_locally: attempt.is_some(),
            messages: messages_tx,
            counters: s.counters.clone(),
        }),
    };
    let replaced = {
        let mut peers = lock(&s.peers);
        let entry = peers.entry(peer.clone()).or_default();
        let keep = match attempt {
            Some(id) => entry.pending == Some(id),
            None => {
                let existing = Existing {
                    pending_outgoing: entry.pending.is_some(),
                    active: entry
                        .active
                        .as_ref()
                        .filter(|a| !a.handle.is_closed())
                        .map(Active::info),
                };
                tiebreak::decide_incoming(&s.name, &peer, peer_instance, existing)
                    == Decision::Accept
            }
        };
        if !keep {
            if entry.is_empty() {
                peers.remove(&peer);
            }
            drop(peers);
            if attempt.is_none() {
                LinkCounters::inc(&s.counters.duplicates_refused);
            }
            conn.close(close_code::DUPLICATE.into(), b"duplicate connection");
            return Err(LinkError::Duplicate(peer.to_string()));
        }
        // Kept: our own pending attempt (if another) is abandoned; its dial task sees
        // `pending` changed and leaves the waiters to this link.
        entry.pending = None;
        entry.resolve_waiters(&Ok(handle.clone()));
        entry.active.replace(Active {
            handle: handle.clone(),
            peer_instance,
        })
    };
    LinkCounters::inc(&s.counters.connections);
    tokio::spawn(write_messages(
        send,
        hello_to_send,
        messages_rx,
        s.counters.clone(),
    ));
    if let Some(old) = replaced {
        old.handle.inner.conn.close(
            close_code::REPLACED.into(),
            b"replaced by a newer connection",
        );
        let _ = s
            .events
            .send(LinkEvent::Closed {
                peer: peer.clone(),
                reason: "replaced by a newer connection".to_owned(),
            })
            .await;
    }
    tracing::info!(%peer, remote = %conn.remote_address(), "link up");
    let _ = s
        .events
        .send(LinkEvent::Connected {
            peer: peer.clone(),
            remote: conn.remote_address(),
            handle,
        })
        .await;
    tokio::spawn(read_datagrams(
        conn.clone(),
        peer.clone(),
        s.events.clone(),
        s.counters.clone(),
    ));
    tokio::spawn(read_messages(
        conn.clone(),
        recv,
        peer.clone(),
        s.events.clone(),
        s.counters.clone(),
    ));
    tokio::spawn(watch_close(Arc::downgrade(s), conn, peer));
    Ok(())
}

async fn write_messages(
    mut send: SendStream,
    hello: Option<Bytes>,
    mut messages: mpsc::Receiver<Bytes>,
    counters: Arc<LinkCounters>,
) {
    if let Some(h) = hello
        && write_frame(&mut send, h).await.is_err()
    {
        return;
    }
    while let Some(m) = messages.recv().await {
        let len = m.len();
        if write_frame(&mut send, m).await.is_err() {
            return;
        }
        LinkCounters::inc(&counters.messages_out);
        LinkCounters::add(&counters.bytes_out, len);
    }
}

async fn read_datagrams(
    conn: quinn::Connection,
    peer: PeerName,
    events: mpsc::Sender<LinkEvent>,
    counters: Arc<LinkCounters>,
) {
    while let Ok(data) = conn.read_datagram().await {
        LinkCounters::inc(&counters.datagrams_in);
        LinkCounters::add(&counters.bytes_in, data.len());
        let event = LinkEvent::Datagram {
            peer: peer.clone(),
            data,
        };
        if let Err(e) = events.try_send(event) {
            match e {
                mpsc::error::TrySendError::Full(_) => LinkCounters::inc(&counters.recv_drops),
                mpsc::error::TrySendError::Closed(_) => return,
            }
        }
    }
}

async fn read_messages(
    conn: quinn::Connection,
    mut recv: RecvStream,
    peer: PeerName,
    events: mpsc::Sender<LinkEvent>,
    counters: Arc<LinkCounters>,
) {
    loop {
        match read_frame(&mut recv, MAX_MESSAGE).await {
            Ok(Some(data)) => {
                LinkCounters::inc(&counters.messages_in);
                LinkCounters::add(&counters.bytes_in, data.len());
                let event = LinkEvent::Message {
                    peer: peer.clone(),
                    data,
                };
                if events.send(event).await.is_err() {
                    return;
                }
            }
            // The control stream lives as long as the link: its end (a finish or an
            // oversize frame) leaves the link without control, so the link is closed
            // and the peer reconnects rather than carry on half-deaf.
            Ok(None) => {
                LinkCounters::inc(&counters.protocol_errors);
                conn.close(close_code::PROTOCOL.into(), b"control stream finished");
                return;
            }
            Err(FrameError::TooLarge(e)) => {
                LinkCounters::inc(&counters.protocol_errors);
                tracing::warn!(%peer, "closing link: {e}");
                conn.close(close_code::PROTOCOL.into(), e.to_string().as_bytes());
                return;
            }
            Err(FrameError::Read(_)) => return,
        }
    }
}

async fn watch_close(shared: Weak<Shared>, conn: quinn::Connection, peer: PeerName) {
    let reason = conn.closed().await;
    let Some(s) = shared.upgrade() else { return };
    let removed = {
        let mut peers = lock(&s.peers);
        let Some(entry) = peers.get_mut(&peer) else {
            return;
        };
        let current = entry
            .active
            .as_ref()
            .is_some_and(|a| a.handle.inner.conn.stable_id() == conn.stable_id());
        if current {
            entry.active = None;
            if entry.is_empty() {
                peers.remove(&peer);
            }
        }
        current
    };
    // A replaced connection's `Closed` was reported when it was replaced.
    if removed {
        tracing::info!(%peer, "link down: {reason}");
        let _ = s
            .events
            .send(LinkEvent::Closed {
                peer,
                reason: reason.to_string(),
            })
            .await;
    }
}
