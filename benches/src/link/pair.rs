//! Two link endpoints, "a" (the sender) and "b", with certificates from one ephemeral
//! cluster CA, optionally joined through an impairment relay.
//!
//! quinn's BBR and Cubic run on the cluster's own [`LinkEndpoint`]s, as the nodes do.
//! The links' BBR-style controller ([`super::bbr`]) cannot be handed to a
//! `LinkEndpoint` yet (its controller is chosen by an enum), so it runs on plain quinn
//! endpoints built from the same TLS and transport configuration, with only the
//! controller factory replaced; the media datagrams are the same.

use crate::impair::{Impairment, Relay, RelayConfig};
use bytes::Bytes;
use sluice_control::cascade::shaper::LinkSample;
use sluice_control::cluster::bbr::LinkBbrConfig;
use sluice_control::cluster::transport::{DATAGRAM_SEND_BUFFER, transport_config};
use sluice_control::cluster::{
    ClusterCa, Congestion, LinkEndpoint, LinkEvent, LinkHandle, LinkTls, NODE_DNS_SUFFIX,
};
use sluice_dataplane::engine::Micros;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The path between the endpoints: the same impairment each way (each its own seed).
#[derive(Debug, Clone)]
pub struct PathSpec {
    pub impairment: Impairment,
}

impl PathSpec {
    pub fn backward(&self) -> Impairment {
        Impairment {
            seed: self.impairment.seed.wrapping_add(1),
            ..self.impairment.clone()
        }
    }
}

/// Which congestion controller the sender runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    /// quinn's experimental BBR, what `Congestion::Bbr` selects today.
    QuinnBbr,
    Cubic,
    /// [`sluice_control::cluster::bbr::LinkBbr`].
    LinkBbr,
}

impl Controller {
    pub fn name(self) -> &'static str {
        match self {
            Self::QuinnBbr => "quinn-bbr",
            Self::Cubic => "cubic",
            Self::LinkBbr => "link-bbr",
        }
    }
}

impl std::str::FromStr for Controller {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "quinn-bbr" | "bbr" => Ok(Self::QuinnBbr),
            "cubic" => Ok(Self::Cubic),
            "link-bbr" => Ok(Self::LinkBbr),
            _ => Err(format!(
                "unknown controller {s}; quinn-bbr, cubic or link-bbr"
            )),
        }
    }
}

/// Datagrams queued for the receiving side's reader.
const RECEIVED_QUEUE: usize = 8192;

/// A connected pair: the sender's connection, what b receives, and the relay.
#[derive(Debug)]
pub struct Harness {
    pub conn: quinn::Connection,
    /// The cluster link handle, when the pair is two `LinkEndpoint`s.
    pub link: Option<LinkHandle>,
    pub relay: Option<Relay>,
    pub received: mpsc::Receiver<Bytes>,
    endpoints: Endpoints,
}

#[derive(Debug)]
enum Endpoints {
    Link(LinkEndpoint, LinkEndpoint),
    Raw(quinn::Endpoint, quinn::Endpoint),
}

impl Harness {
    /// Binds both endpoints on loopback, puts the relay in front of b when `path` is
    /// given, and has a dial b. Must run inside a tokio runtime.
    pub async fn open(controller: Controller, path: Option<&PathSpec>) -> Result<Self, String> {
        let ca = ClusterCa::ephemeral().map_err(|e| e.to_string())?;
        let tls = |name: &str| -> Result<LinkTls, String> {
            let cert = ca.issue(name).map_err(|e| e.to_string())?;
            LinkTls::new(ca.cert_der(), &cert).map_err(|e| e.to_string())
        };
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        let relay_to = |upstream: SocketAddr| -> Result<Option<Relay>, String> {
            path.map(|p| {
                Relay::start(RelayConfig {
                    listen: any,
                    upstream,
                    forward: p.impairment.clone(),
                    backward: p.backward(),
                })
                .map_err(|e| format!("relay: {e}"))
            })
            .transpose()
        };
        let (tx, received) = mpsc::channel(RECEIVED_QUEUE);
        match controller {
            Controller::QuinnBbr | Controller::Cubic => {
                let congestion = if controller == Controller::Cubic {
                    Congestion::Cubic
                } else {
                    Congestion::QuinnBbr
                };
                let (b, mut b_events) =
                    LinkEndpoint::bind(any, tls("b")?, congestion).map_err(|e| e.to_string())?;
                let (a, mut a_events) =
                    LinkEndpoint::bind(any, tls("a")?, congestion).map_err(|e| e.to_string())?;
                tokio::spawn(async move { while a_events.recv().await.is_some() {} });
                tokio::spawn(async move {
                    while let Some(ev) = b_events.recv().await {
                        if let LinkEvent::Datagram { data, .. } = ev
                            && tx.send(data).await.is_err()
                        {
                            break;
                        }
                    }
                });
                let b_addr = b.local_addr().map_err(|e| e.to_string())?;
                let relay = relay_to(b_addr)?;
                let target = relay.as_ref().map_or(b_addr, Relay::local_addr);
                let link = a.connect(target, "b").await.map_err(|e| e.to_string())?;
                Ok(Self {
                    conn: link.connection().clone(),
                    link: Some(link),
                    relay,
                    received,
                    endpoints: Endpoints::Link(a, b),
                })
            }
            Controller::LinkBbr => {
                let mut t = transport_config(Congestion::Bbr);
                t.congestion_controller_factory(Arc::new(LinkBbrConfig::default()));
                let t = Arc::new(t);
                let b = quinn::Endpoint::server(tls("b")?.server_config(t.clone()), any)
                    .map_err(|e| e.to_string())?;
                let mut a = quinn::Endpoint::client(any).map_err(|e| e.to_string())?;
                a.set_default_client_config(tls("a")?.client_config(t));
                let b_addr = b.local_addr().map_err(|e| e.to_string())?;
                let relay = relay_to(b_addr)?;
                let target = relay.as_ref().map_or(b_addr, Relay::local_addr);
                let server = b.clone();
                let accept = tokio::spawn(async move {
                    let incoming = server.accept().await.ok_or("endpoint closed")?;
                    incoming.await.map_err(|e| e.to_string())
                });
                let conn = a
                    .connect(target, &format!("b{NODE_DNS_SUFFIX}"))
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())?;
                let far = accept.await.map_err(|e| e.to_string())??;
                tokio::spawn(async move {
                    while let Ok(d) = far.read_datagram().await {
                        if tx.send(d).await.is_err() {
                            break;
                        }
                    }
                });
                Ok(Self {
                    conn,
                    link: None,
                    relay,
                    received,
                    endpoints: Endpoints::Raw(a, b),
                })
            }
        }
    }

    /// Sends one datagram as the node's media thread does: whole or refused (counted by
    /// the caller), never pushing out older queued datagrams.
    pub fn send(&self, data: Bytes) -> bool {
        match &self.link {
            Some(h) => h.send_datagram(data).is_ok(),
            None => {
                data.len() <= self.conn.datagram_send_buffer_space()
                    && self.conn.send_datagram(data).is_ok()
            }
        }
    }

    /// A reading for the shaper's estimator.
    pub fn sample(&self) -> LinkSample {
        let s = self.conn.stats();
        LinkSample {
            rtt: s.path.rtt.as_micros() as Micros,
            cwnd: s.path.cwnd,
            pacing_bps: self.conn.congestion_state().metrics().pacing_rate,
            tx_bytes: s.udp_tx.bytes,
            queued_bytes: DATAGRAM_SEND_BUFFER
                .saturating_sub(self.conn.datagram_send_buffer_space())
                as u64,
        }
    }

    pub async fn close(self) {
        match self.endpoints {
            Endpoints::Link(a, b) => {
                a.shutdown().await;
                b.shutdown().await;
            }
            Endpoints::Raw(a, b) => {
                a.close(0u32.into(), b"done");
                b.close(0u32.into(), b"done");
            }
        }
        if let Some(r) = self.relay {
            let _ = r.stop();
        }
    }
}
