//! The client's side of the media port: one UDP socket demultiplexed by first byte
//! (RFC 7983) into the ICE agent, the DTLS handshake and the media channel; the ICE
//! timer; and bring-up (ICE connected, then DTLS-SRTP).

use super::ClientError;
use super::answer::Answer;
use super::ice::{IceAgent, IceCredentials, IceRole, IceState, IceStats};
use crate::dtls::{self, DtlsSession, SendFn, SrtpSessionKeys};
use bytes::Bytes;
use sluice_dataplane::demux::{PacketKind, classify};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Datagrams queued for the media task; beyond this they are dropped and counted.
const MEDIA_QUEUE: usize = 4096;
const DTLS_QUEUE: usize = 64;
/// The largest datagram we take (jumbo-free networks carry far less).
const RECV_BUF: usize = 2048;

/// A bound socket and its address, before signaling (the offer names the address).
#[derive(Debug)]
pub struct Bound {
    pub socket: UdpSocket,
    pub local: SocketAddr,
}

pub async fn bind(ip: IpAddr) -> Result<Bound, ClientError> {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
    let local = socket.local_addr()?;
    Ok(Bound { socket, local })
}

/// Datagrams received but not passed on: from strangers, of unknown kinds, or with the
/// media queue full.
#[derive(Debug, Default)]
struct Drops(AtomicU64);

#[derive(Debug)]
pub struct Transport {
    socket: Arc<UdpSocket>,
    remote: SocketAddr,
    ice: Arc<Mutex<IceAgent>>,
    ice_state: watch::Receiver<IceState>,
    dtls: Option<DtlsSession>,
    drops: Arc<Drops>,
    tasks: Vec<JoinHandle<()>>,
}

/// Who does what on the transport, from the offer/answer exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub ice: IceRole,
    /// We send the ClientHello (`a=setup:active` on our side).
    pub dtls_client: bool,
}

impl Roles {
    /// We offered (`a=setup:actpass`): controlling, and the DTLS role the answer left us.
    pub fn offerer(answer: &Answer) -> Self {
        Self {
            ice: IceRole::Controlling,
            dtls_client: answer.setup != "active",
        }
    }

    /// The peer offered and we answer `a=setup:active`: controlled (unless the offerer
    /// is lite, RFC 8445 6.1.1) and the DTLS client.
    pub fn answerer(offer: &Answer) -> Self {
        Self {
            ice: if offer.ice_lite {
                IceRole::Controlling
            } else {
                IceRole::Controlled
            },
            dtls_client: true,
        }
    }
}

/// A transport with DTLS done: the keys and the channel of SRTP/SRTCP datagrams.
#[derive(Debug)]
pub struct Established {
    pub transport: Transport,
    pub keys: SrtpSessionKeys,
    pub media: mpsc::Receiver<Bytes>,
}

fn lock(ice: &Mutex<IceAgent>) -> MutexGuard<'_, IceAgent> {
    ice.lock().unwrap_or_else(|p| p.into_inner())
}

impl Transport {
    /// Runs ICE against the peer's candidate (its description: the answer to our offer,
    /// or the offer we answered), then the DTLS handshake, in `roles`.
    pub async fn establish(
        bound: Bound,
        answer: &Answer,
        local: &super::Credentials,
        roles: Roles,
        timeout: Duration,
        dtls_retransmit: Duration,
    ) -> Result<Established, ClientError> {
        let identity = &local.identity;
        let remote = answer
            .candidate_for(bound.local.ip())
            .ok_or_else(|| ClientError::Answer("no UDP candidate of our address family".into()))?;
        let socket = Arc::new(bound.socket);
        let creds = IceCredentials {
            local_ufrag: local.ufrag.clone(),
            local_pwd: local.pwd.clone(),
            remote_ufrag: answer.ice_ufrag.clone(),
            remote_pwd: answer.ice_pwd.clone(),
        };
        let ice = Arc::new(Mutex::new(IceAgent::new(
            Instant::now(),
            roles.ice,
            &creds,
            remote,
        )));
        let (state_tx, mut ice_state) = watch::channel(IceState::Checking);
        let state_tx = Arc::new(state_tx);
        let (dtls_tx, dtls_rx) = mpsc::channel(DTLS_QUEUE);
        let (media_tx, media) = mpsc::channel(MEDIA_QUEUE);
        let drops = Arc::new(Drops::default());
        let mut transport = Transport {
            socket: Arc::clone(&socket),
            remote,
            ice: Arc::clone(&ice),
            ice_state: ice_state.clone(),
            dtls: None,
            drops: Arc::clone(&drops),
            tasks: Vec::new(),
        };
        transport.tasks.push(tokio::spawn(receive_loop(
            Arc::clone(&socket),
            remote,
            Arc::clone(&ice),
            Arc::clone(&state_tx),
            dtls_tx,
            media_tx,
            drops,
        )));
        transport
            .tasks
            .push(tokio::spawn(ice_timer(socket, remote, ice, state_tx)));

        let deadline = tokio::time::Instant::now() + timeout;
        // Copied out at once: the watch's read guard held across the DTLS handshake would
        // block the receive loop's next state update (a full agent's checks keep coming).
        let connected =
            tokio::time::timeout_at(deadline, ice_state.wait_for(|s| *s != IceState::Checking))
                .await
                .map(|r| r.map(|s| *s));
        match connected {
            Err(_) => return Err(ClientError::IceTimeout),
            Ok(Err(_)) => return Err(ClientError::Ice("ICE tasks ended".into())),
            Ok(Ok(IceState::Failed)) => {
                let why = lock(&transport.ice)
                    .last_error()
                    .map(|(c, r)| format!("error response {c} {r}"))
                    .unwrap_or_else(|| "failed".into());
                return Err(ClientError::Ice(why));
            }
            Ok(Ok(_)) => {}
        }

        let send: SendFn = {
            let socket = Arc::clone(&transport.socket);
            Arc::new(move |b: Bytes| {
                // DTLS retransmits what a full socket buffer drops.
                let _ = socket.try_send_to(&b, remote);
            })
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let expected = answer.fingerprint.clone();
        let (keys, session) = if roles.dtls_client {
            dtls::connect(identity, expected, dtls_rx, send, left, dtls_retransmit).await?
        } else {
            dtls::handshake(
                false,
                identity,
                expected,
                dtls_rx,
                send,
                left,
                dtls_retransmit,
            )
            .await?
        };
        transport.dtls = Some(session);
        Ok(Established {
            transport,
            keys,
            media,
        })
    }

    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// The media socket, for tasks that send on it.
    pub fn socket_handle(&self) -> Arc<UdpSocket> {
        Arc::clone(&self.socket)
    }

    /// Our address as the node saw it in its last ICE response.
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        lock(&self.ice).mapped_address()
    }

    pub async fn send(&self, datagram: &[u8]) -> Result<(), ClientError> {
        self.socket.send_to(datagram, self.remote).await?;
        Ok(())
    }

    pub fn ice_state(&self) -> IceState {
        *self.ice_state.borrow()
    }

    pub fn ice_stats(&self) -> IceStats {
        lock(&self.ice).stats()
    }

    pub fn dropped_datagrams(&self) -> u64 {
        self.drops.0.load(Ordering::Relaxed)
    }

    /// Whether the node ended DTLS (close_notify) or the transport is gone.
    pub fn dtls_closed(&self) -> bool {
        self.dtls.as_ref().is_none_or(DtlsSession::is_closed)
    }

    /// Sends close_notify and stops the tasks.
    pub async fn close(&mut self) {
        if let Some(session) = self.dtls.take() {
            session.close().await;
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn receive_loop(
    socket: Arc<UdpSocket>,
    remote: SocketAddr,
    ice: Arc<Mutex<IceAgent>>,
    state: Arc<watch::Sender<IceState>>,
    dtls: mpsc::Sender<Bytes>,
    media: mpsc::Sender<Bytes>,
    drops: Arc<Drops>,
) {
    let mut buf = vec![0u8; RECV_BUF];
    let drop_one = || drops.0.fetch_add(1, Ordering::Relaxed);
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            return;
        };
        let d = &buf[..n];
        match classify(d) {
            PacketKind::Stun => {
                let now = Instant::now();
                let (response, triggered, s) = {
                    let mut agent = lock(&ice);
                    let response = agent.handle_stun(now, d, from);
                    // A peer's check may make one of ours due at once (triggered check).
                    (response, agent.poll_transmit(now), agent.state())
                };
                state.send_if_modified(|old| std::mem::replace(old, s) != s);
                // Lost responses and checks are retransmitted by the peer and the timer.
                if let Some(r) = response {
                    let _ = socket.try_send_to(&r, from);
                }
                if let Some(r) = triggered {
                    let _ = socket.try_send_to(&r, remote);
                }
            }
            PacketKind::Dtls if from == remote => {
                if dtls.try_send(Bytes::copy_from_slice(d)).is_err() {
                    drop_one();
                }
            }
            PacketKind::Rtp | PacketKind::Rtcp if from == remote => {
                if media.try_send(Bytes::copy_from_slice(d)).is_err() {
                    drop_one();
                }
            }
            _ => {
                drop_one();
            }
        }
    }
}

async fn ice_timer(
    socket: Arc<UdpSocket>,
    remote: SocketAddr,
    ice: Arc<Mutex<IceAgent>>,
    state: Arc<watch::Sender<IceState>>,
) {
    loop {
        let now = Instant::now();
        let (request, next, s) = {
            let mut agent = lock(&ice);
            let request = agent.poll_transmit(now);
            (request, agent.poll_timeout(), agent.state())
        };
        state.send_if_modified(|old| std::mem::replace(old, s) != s);
        if let Some(r) = request {
            // A lost check is retransmitted like a dropped one.
            let _ = socket.send_to(&r, remote).await;
        }
        let Some(next) = next else {
            return;
        };
        // At least a millisecond: a deadline already due is served on the next turn.
        let wait = next
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        tokio::time::sleep(wait).await;
    }
}
