use std::net::SocketAddr;

/// Room for one egress datagram: a full Ethernet-MTU packet plus SRTP overhead fits with
/// margin, and a power of two keeps slots aligned.
pub const SLOT_LEN: usize = 2048;

/// One datagram waiting in an [`Egress`] batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    pub dest: SocketAddr,
    pub len: u16,
}

/// A batch of datagrams for one worker's socket, written in place into fixed slots.
///
/// The slab grows when a batch is larger than any before and never shrinks, so once a
/// worker has seen its largest batch, filling and draining allocates nothing. Drivers
/// keep the slab untouched while sends referencing it are in flight.
#[derive(Debug, Default)]
pub struct Egress {
    slab: Vec<u8>,
    datagrams: Vec<Datagram>,
}

impl Egress {
    pub fn with_capacity(datagrams: usize) -> Self {
        Self {
            slab: vec![0; datagrams * SLOT_LEN],
            datagrams: Vec::with_capacity(datagrams),
        }
    }

    /// Writes one datagram: `write` fills the slot and returns the length to send, or
    /// `None` to abandon it (the slot is reused by the next push).
    pub fn push(
        &mut self,
        dest: SocketAddr,
        write: impl FnOnce(&mut [u8; SLOT_LEN]) -> Option<usize>,
    ) -> Option<usize> {
        let start = self.datagrams.len() * SLOT_LEN;
        if self.slab.len() < start + SLOT_LEN {
            self.slab.resize(start + SLOT_LEN, 0);
        }
        let slot: &mut [u8; SLOT_LEN] = (&mut self.slab[start..start + SLOT_LEN])
            .try_into()
            .expect("slot is SLOT_LEN long");
        let len = write(slot)?.min(SLOT_LEN);
        self.datagrams.push(Datagram {
            dest,
            len: len as u16,
        });
        Some(len)
    }

    /// Copies `bytes` out as one datagram (truncation never happens: longer input is
    /// refused).
    pub fn push_copy(&mut self, dest: SocketAddr, bytes: &[u8]) -> bool {
        if bytes.len() > SLOT_LEN {
            return false;
        }
        self.push(dest, |slot| {
            slot[..bytes.len()].copy_from_slice(bytes);
            Some(bytes.len())
        })
        .is_some()
    }

    pub fn len(&self) -> usize {
        self.datagrams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    pub fn clear(&mut self) {
        self.datagrams.clear();
    }

    pub fn datagrams(&self) -> &[Datagram] {
        &self.datagrams
    }

    /// The bytes of datagram `i`.
    pub fn payload(&self, i: usize) -> &[u8] {
        let d = self.datagrams[i];
        &self.slab[i * SLOT_LEN..i * SLOT_LEN + usize::from(d.len)]
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (SocketAddr, &[u8])> {
        (0..self.datagrams.len()).map(|i| (self.datagrams[i].dest, self.payload(i)))
    }

    /// Base pointer of the slab, for drivers building iovecs; slot `i` starts at
    /// `i * SLOT_LEN`. Valid until the next `push`.
    pub fn slab_ptr(&self) -> *const u8 {
        self.slab.as_ptr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_abandon_and_reuse() {
        let dest: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut e = Egress::with_capacity(2);
        assert_eq!(
            e.push(dest, |s| {
                s[0] = 1;
                Some(1)
            }),
            Some(1)
        );
        assert_eq!(e.push(dest, |_| None), None);
        assert!(e.push_copy(dest, &[7, 8, 9]));
        assert!(!e.push_copy(dest, &[0; SLOT_LEN + 1]));
        let got: Vec<_> = e.iter().map(|(_, b)| b.to_vec()).collect();
        assert_eq!(got, vec![vec![1], vec![7, 8, 9]]);
        e.clear();
        assert!(e.is_empty());
    }
}
