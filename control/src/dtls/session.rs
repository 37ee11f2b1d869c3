//! A finished DTLS association: kept alive so the peer's close and retransmissions are
//! seen, closed with close_notify.

use super::transport::ChannelConn;
use dtls::conn::DTLSConn;
use sluice_dataplane::srtp::Profile;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent close_notify or a fatal alert.
    PeerClosed,
    /// The incoming channel closed (the media worker dropped the session), or we closed.
    TransportClosed,
}

/// Largest application record we read (and discard: WebRTC media never rides DTLS
/// application data here, and data channels are not supported).
const READ_BUF: usize = 16 * 1024;

pub struct DtlsSession {
    conn: Arc<DTLSConn>,
    transport: Arc<ChannelConn>,
    closed: watch::Receiver<Option<CloseReason>>,
    reader: JoinHandle<()>,
    profile: Profile,
}

impl std::fmt::Debug for DtlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsSession")
            .field("profile", &self.profile)
            .field("closed", &*self.closed.borrow())
            .finish_non_exhaustive()
    }
}

impl DtlsSession {
    pub(super) fn start(conn: DTLSConn, transport: Arc<ChannelConn>, profile: Profile) -> Self {
        let conn = Arc::new(conn);
        let (tx, closed) = watch::channel(None);
        let reader = tokio::spawn({
            let conn = Arc::clone(&conn);
            let transport = Arc::clone(&transport);
            async move {
                let reason = tokio::select! {
                    () = read_until_closed(&conn) => CloseReason::PeerClosed,
                    () = transport.transport_closed() => CloseReason::TransportClosed,
                };
                let _ = tx.send(Some(reason));
            }
        });
        Self {
            conn,
            transport,
            closed,
            reader,
            profile,
        }
    }

    /// The negotiated SRTP profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Resolves when the association ends (see [`CloseReason`]).
    pub async fn closed(&self) -> CloseReason {
        let mut rx = self.closed.clone();
        loop {
            if let Some(reason) = *rx.borrow_and_update() {
                return reason;
            }
            if rx.changed().await.is_err() {
                // The reader task is gone without a verdict: it was aborted by `close`.
                return CloseReason::TransportClosed;
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.borrow().is_some()
    }

    /// How many times a retransmitted peer flight was answered with our final flight.
    pub fn resent_final_flights(&self) -> u64 {
        self.transport.resent_flights()
    }

    /// Sends close_notify and stops reading.
    pub async fn close(self) {
        // An error here means the transport is already gone: nothing left to tell.
        let _ = self.conn.close().await;
        self.reader.abort();
    }
}

impl Drop for DtlsSession {
    fn drop(&mut self) {
        // The reader holds the connection; without this a dropped session would keep the
        // dtls crate's tasks alive until the channel closed.
        self.reader.abort();
    }
}

async fn read_until_closed(conn: &DTLSConn) {
    let mut buf = vec![0u8; READ_BUF];
    loop {
        match conn.read(&mut buf, None).await {
            Ok(_) | Err(dtls::Error::ErrBufferTooSmall) => {}
            Err(_) => return,
        }
    }
}
