//! How a session is ended at the server that signaled it: a WHIP/WHEP DELETE of the
//! resource, or detaching the Janus handle.

use super::ClientError;
use super::http::Signaling;
use super::janus::Leg;

pub(super) enum Hangup {
    Whip {
        signaling: Signaling,
        location: String,
    },
    Janus(Leg),
}

impl Hangup {
    pub(super) async fn send(&self) -> Result<(), ClientError> {
        match self {
            Self::Whip {
                signaling,
                location,
            } => signaling.delete(location).await,
            Self::Janus(leg) => leg.detach().await,
        }
    }
}
