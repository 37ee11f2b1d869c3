//! QUIC transport settings for links: sized for media datagrams, quick to notice a dead
//! peer, with a selectable congestion controller.

use std::sync::Arc;
use std::time::Duration;

use super::bbr::LinkBbrConfig;
use quinn::congestion::{BbrConfig, CubicConfig};
use quinn::{IdleTimeout, MtuDiscoveryConfig, TransportConfig, VarInt};

/// Smallest `max_datagram_size()` a fresh link must offer: the dataplane's largest media
/// frame, an 11-byte link header plus a full 1200-byte RTP packet.
pub const MIN_LINK_DATAGRAM: usize = sluice_dataplane::link::MAX_FRAME;

/// Most bytes a 1-RTT packet adds around one DATAGRAM frame's payload, by quinn's own
/// conservative reckoning: flags (1), destination connection id (8, quinn's default),
/// packet number (4), AEAD tag (16), frame type and length bound (9).
const DATAGRAM_OVERHEAD: usize = 38;

/// UDP payload size links start with. quinn's default (1200) leaves about 1162 bytes of
/// DATAGRAM payload; with [`DATAGRAM_OVERHEAD`], 1300 leaves 1262, room for
/// [`MIN_LINK_DATAGRAM`] with margin. As an IP packet that is 1328 (IPv4) or 1348 (IPv6)
/// bytes, inside any ordinary 1400+ path.
/// MTU discovery then probes upwards; if the path turns out smaller, quinn falls back to
/// 1200 and oversize media is counted and dropped rather than fragmented.
pub const INITIAL_MTU: u16 = 1300;
const _: () = assert!(INITIAL_MTU as usize - DATAGRAM_OVERHEAD >= MIN_LINK_DATAGRAM);

/// Keep-alives every second keep NAT bindings and quinn's loss detection fed even on a
/// quiet link; with the idle timeout below (milliseconds) a dead peer is noticed
/// within 4 s.
pub const KEEP_ALIVE: Duration = Duration::from_secs(1);
pub const IDLE_TIMEOUT_MS: u32 = 4_000;

/// Media waiting to be sent is useless once stale: 256 KiB is ~200 ms at 10 Mbit/s.
/// When it is full the newest datagram is dropped and counted (see the link endpoint).
pub const DATAGRAM_SEND_BUFFER: usize = 256 * 1024;
/// Absorbs bursts until the endpoint's reader drains them to the event channel.
pub const DATAGRAM_RECEIVE_BUFFER: usize = 1024 * 1024;

/// Large enough for a 4 MiB control message to flow without stalling on stream credit.
const STREAM_RECEIVE_WINDOW: u32 = 8 * 1024 * 1024;

/// Which congestion controller a link runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Congestion {
    /// Our BBR-style controller ([`super::bbr`]): a model of bottleneck bandwidth and
    /// round-trip time that does not read random loss as congestion.
    #[default]
    Bbr,
    /// quinn's experimental BBR, kept for comparison only: on a 10 Mbit/s, 40 ms, 1%-loss
    /// path it overestimates the bandwidth, overflows the bottleneck queue and carries a
    /// few percent of the rate (`scripts/bench-link.sh`).
    QuinnBbr,
    /// quinn's Cubic, the loss-based reference.
    Cubic,
}

impl std::str::FromStr for Congestion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "bbr" => Ok(Self::Bbr),
            "quinn-bbr" => Ok(Self::QuinnBbr),
            "cubic" => Ok(Self::Cubic),
            _ => Err(format!(
                "unknown congestion controller {s:?}; use bbr or cubic"
            )),
        }
    }
}

/// The transport configuration both ends of a link use.
pub fn transport_config(congestion: Congestion) -> TransportConfig {
    let mut t = TransportConfig::default();
    // A loss burst can make quinn's black-hole detection fall back to its minimum MTU,
    // where full media frames no longer fit; links never go below what they start with.
    t.initial_mtu(INITIAL_MTU)
        .min_mtu(INITIAL_MTU)
        .mtu_discovery_config(Some(MtuDiscoveryConfig::default()))
        .datagram_receive_buffer_size(Some(DATAGRAM_RECEIVE_BUFFER))
        .datagram_send_buffer_size(DATAGRAM_SEND_BUFFER)
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(IDLE_TIMEOUT_MS))))
        // One control stream per direction, plus slack for a replacement while the old
        // one drains. No bidirectional streams are used.
        .max_concurrent_uni_streams(VarInt::from_u32(4))
        .max_concurrent_bidi_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW));
    match congestion {
        Congestion::Bbr => t.congestion_controller_factory(Arc::new(LinkBbrConfig::default())),
        Congestion::QuinnBbr => t.congestion_controller_factory(Arc::new(BbrConfig::default())),
        Congestion::Cubic => t.congestion_controller_factory(Arc::new(CubicConfig::default())),
    };
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn congestion_parses() {
        assert_eq!("BBR".parse(), Ok(Congestion::Bbr));
        assert_eq!("cubic".parse(), Ok(Congestion::Cubic));
        assert!("reno".parse::<Congestion>().is_err());
        assert_eq!(Congestion::default(), Congestion::Bbr);
    }
}
