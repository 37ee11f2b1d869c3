use super::feedback::{SessionFeedback, SubscriptionFeedback};
use super::{SessionConfig, TrackIdx};
use crate::rewrite::RtpRewriter;
use crate::rtp::ExtensionIds;
use crate::srtp::{SrtpContext, SrtpError};
use std::net::SocketAddr;

/// Sentinel for "no layer forwarded yet": the subscriber waits for a keyframe.
pub const NO_LAYER: u8 = u8::MAX;

/// One subscriber's view of one track: its own SSRC and sequence space.
#[derive(Debug)]
pub struct Subscription {
    pub track: TrackIdx,
    pub ssrc: u32,
    pub payload_type: u8,
    /// RTX SSRC, payload type, and the next RTX sequence number.
    pub rtx: Option<(u32, u8, u16)>,
    pub rewriter: RtpRewriter,
    /// Layer being forwarded, or [`NO_LAYER`].
    pub layer: u8,
    /// Layer wanted; the switch happens at its next keyframe.
    pub target: u8,
    /// Fixed by command (tests, benchmarks); the estimate does not move it.
    pub pinned: bool,
    pub fb: SubscriptionFeedback,
    /// Publisher's extension id -> ours ([`super::SubscribeConfig::ext_remap`]).
    pub ext_remap: Option<Box<[u8; 256]>>,
    /// The publisher's id of the element that carries the transport-wide sequence number
    /// this subscriber's session negotiated (0: none): its offset in the publisher's
    /// packet is where our own number is stamped, remapping moves no bytes.
    pub twcc_source: u8,
}

#[derive(Debug)]
pub struct Session {
    pub remote: SocketAddr,
    pub srtp_in: SrtpContext,
    pub srtp_out: SrtpContext,
    pub extensions: ExtensionIds,
    pub rtcp_ssrc: u32,
    /// Tracks this session publishes.
    pub publishes: Vec<TrackIdx>,
    pub subscriptions: Vec<Subscription>,
    pub feedback: SessionFeedback,
}

impl Session {
    pub fn new(config: &SessionConfig) -> Result<Self, SrtpError> {
        Ok(Self {
            remote: config.remote,
            srtp_in: SrtpContext::new(
                config.inbound.profile,
                &config.inbound.key,
                &config.inbound.salt,
            )?,
            srtp_out: SrtpContext::new(
                config.outbound.profile,
                &config.outbound.key,
                &config.outbound.salt,
            )?,
            extensions: config.extensions,
            rtcp_ssrc: config.rtcp_ssrc,
            publishes: Vec::new(),
            subscriptions: Vec::new(),
            feedback: SessionFeedback::default(),
        })
    }

    pub fn subscription_mut(&mut self, track: TrackIdx) -> Option<&mut Subscription> {
        self.subscriptions.iter_mut().find(|s| s.track == track)
    }

    pub fn subscription_by_ssrc(&mut self, ssrc: u32) -> Option<&mut Subscription> {
        self.subscriptions
            .iter_mut()
            .find(|s| s.ssrc == ssrc || s.rtx.is_some_and(|r| r.0 == ssrc))
    }
}
