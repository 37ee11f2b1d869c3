/// Counters of one worker's router. Every drop has a reason, so an operator can tell a
/// misbehaving peer from a bug.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    pub rtp_in: u64,
    pub rtcp_in: u64,
    pub rtp_out: u64,
    pub rtcp_out: u64,
    pub handoffs_out: u64,
    pub link_out: u64,
    pub retransmits: u64,
    pub keyframe_requests: u64,
    pub layer_switches: u64,
    /// Target layers moved by the bandwidth estimate.
    pub target_changes: u64,
    pub receiver_reports: u64,
    pub sender_reports: u64,
    pub twcc_feedback: u64,
    /// STUN and DTLS that reached the router without an ICE/DTLS handler attached.
    pub unhandled: u64,
    pub drop_unknown_session: u64,
    pub drop_srtp_auth: u64,
    pub drop_replay: u64,
    pub drop_malformed: u64,
    pub drop_unknown_ssrc: u64,
    pub drop_stale: u64,
    pub drop_egress: u64,
    pub nack_miss: u64,
}
