//! Per-layer packet cache for answering NACKs: the last `CACHE_SLOTS` plaintext packets,
//! indexed by sequence number. Slots are preallocated when the track is added, so caching
//! on the packet path is a copy and never an allocation.

/// About 2 s of a 2.5 Mbit/s layer in 1200-byte packets: longer than any useful NACK
/// round trip.
pub const CACHE_SLOTS: usize = 512;
/// Largest packet kept; anything longer was not a sane RTP packet to begin with.
pub const CACHE_PACKET_MAX: usize = 1500;

#[derive(Debug)]
pub struct PacketCache {
    data: Box<[u8]>,
    /// Per slot: (sequence number, length); length 0 is empty.
    meta: Box<[(u16, u16)]>,
}

impl Default for PacketCache {
    fn default() -> Self {
        Self {
            data: vec![0; CACHE_SLOTS * CACHE_PACKET_MAX].into_boxed_slice(),
            meta: vec![(0, 0); CACHE_SLOTS].into_boxed_slice(),
        }
    }
}

impl PacketCache {
    pub fn insert(&mut self, seq: u16, pkt: &[u8]) {
        if pkt.is_empty() || pkt.len() > CACHE_PACKET_MAX {
            return;
        }
        let i = usize::from(seq) % CACHE_SLOTS;
        self.data[i * CACHE_PACKET_MAX..i * CACHE_PACKET_MAX + pkt.len()].copy_from_slice(pkt);
        self.meta[i] = (seq, pkt.len() as u16);
    }

    pub fn get(&self, seq: u16) -> Option<&[u8]> {
        let i = usize::from(seq) % CACHE_SLOTS;
        let (s, len) = self.meta[i];
        (len > 0 && s == seq)
            .then(|| &self.data[i * CACHE_PACKET_MAX..i * CACHE_PACKET_MAX + usize::from(len)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overwrites_by_slot_and_checks_sequence() {
        let mut c = PacketCache::default();
        c.insert(7, b"seven");
        assert_eq!(c.get(7), Some(&b"seven"[..]));
        c.insert(7 + CACHE_SLOTS as u16, b"later");
        assert_eq!(c.get(7), None);
        assert_eq!(c.get(7 + CACHE_SLOTS as u16), Some(&b"later"[..]));
        c.insert(9, &[0; CACHE_PACKET_MAX + 1]);
        assert_eq!(c.get(9), None);
    }
}
