/// Counters of one worker's router. Every drop has a reason, so an operator can tell a
/// misbehaving peer from a bug.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    pub rtp_in: u64,
    pub rtcp_in: u64,
    pub rtp_out: u64,
    pub rtcp_out: u64,
    pub handoffs_out: u64,
    /// RTP/RTCP datagrams from a forwarded remote handed to its session's worker, and
    /// such datagrams received from other workers.
    pub remote_handoffs_out: u64,
    pub remote_handoffs_in: u64,
    pub link_out: u64,
    /// Remote tracks' packets taken in from links.
    pub link_in: u64,
    /// Packets resent to a far node that NACKed them, and those the cache no longer
    /// held (or that node does not subscribe to).
    pub link_retransmits: u64,
    pub link_nack_miss: u64,
    /// Keyframe requests and NACKed sequence numbers sent toward remote publishers.
    pub keyframe_requests_upstream: u64,
    pub nack_upstream: u64,
    pub retransmits: u64,
    pub keyframe_requests: u64,
    pub layer_switches: u64,
    /// Target layers moved by the bandwidth estimate.
    pub target_changes: u64,
    pub receiver_reports: u64,
    pub sender_reports: u64,
    pub twcc_feedback: u64,
    /// STUN messages other than binding requests (indications, stray responses).
    pub unhandled: u64,
    /// STUN datagrams received (every one, before the rate limit).
    pub stun_in: u64,
    /// Binding success responses sent.
    pub ice_responses: u64,
    /// Checks refused: bad fingerprint, no or unknown ufrag, bad integrity (answered
    /// 401), the other side's ufrag not the offer's, too many remotes for one session.
    pub stun_rejected: u64,
    /// Valid checks from a peer that also claimed the controlled role: answered 487.
    pub ice_role_conflicts: u64,
    /// DTLS datagrams received (every one).
    pub dtls_in: u64,
    /// DTLS from a remote that is not ICE-validated: dropped.
    pub dtls_unknown: u64,
    /// Raw datagrams (the control plane's DTLS records) sent.
    pub raw_out: u64,
    /// STUN and DTLS over the handshake rate limits.
    pub drop_rate_limited: u64,
    /// Events the control plane's channel had no room for (or no channel).
    pub events_dropped: u64,
    pub drop_unknown_session: u64,
    pub drop_srtp_auth: u64,
    pub drop_replay: u64,
    pub drop_malformed: u64,
    pub drop_unknown_ssrc: u64,
    pub drop_stale: u64,
    pub drop_egress: u64,
    /// Publisher retransmissions of packets already received and forwarded.
    pub drop_duplicate: u64,
    pub nack_miss: u64,
    /// Link media for a track that is not a remote track homed here (unknown, removed,
    /// or published on this node).
    pub drop_link_unknown_track: u64,
    /// What subscribers report about the streams we send them.
    pub quality: CallQuality,
}

/// Reception quality as the participants experience it, from the report blocks of
/// subscribers' RTCP receiver reports: one observation per block (per stream and
/// report), so the distributions weigh every stream alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallQuality {
    /// Fraction lost since the previous report, in parts per million.
    pub loss_ppm: Histogram,
    /// Interarrival jitter, in microseconds.
    pub jitter_us: Histogram,
    /// Round-trip time, from blocks that echo one of our sender reports, in microseconds.
    pub rtt_us: Histogram,
}

/// Upper bounds of [`CallQuality::loss_ppm`]'s buckets (0, 0.5%, 1%, 2%, 5%, 10%, 20%,
/// 50%); a last bucket holds the rest.
pub const LOSS_PPM_BOUNDS: [u64; HISTOGRAM_BOUNDS] =
    [0, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000];
/// Upper bounds of [`CallQuality::jitter_us`]'s buckets (1 ms to 200 ms).
pub const JITTER_US_BOUNDS: [u64; HISTOGRAM_BOUNDS] = [
    1_000, 5_000, 10_000, 20_000, 30_000, 50_000, 100_000, 200_000,
];
/// Upper bounds of [`CallQuality::rtt_us`]'s buckets (10 ms to 1 s).
pub const RTT_US_BOUNDS: [u64; HISTOGRAM_BOUNDS] = [
    10_000, 25_000, 50_000, 100_000, 150_000, 250_000, 500_000, 1_000_000,
];

pub const HISTOGRAM_BOUNDS: usize = 8;

/// A fixed-bucket histogram of integer observations: a few adds per RTCP report, no
/// allocation, `Copy` so a snapshot is a plain copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is above every bound.
    pub buckets: [u64; HISTOGRAM_BOUNDS + 1],
    pub count: u64,
    pub sum: u64,
}

impl Histogram {
    pub fn observe(&mut self, bounds: &[u64; HISTOGRAM_BOUNDS], value: u64) {
        let i = bounds
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(HISTOGRAM_BOUNDS);
        self.buckets[i] += 1;
        self.count += 1;
        self.sum = self.sum.saturating_add(value);
    }

    /// Adds another worker's observations.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.sum = self.sum.saturating_add(other.sum);
    }
}
