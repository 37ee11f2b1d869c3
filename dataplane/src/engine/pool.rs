use bytes::{Bytes, BytesMut};

/// Refcounted packet buffers for cross-core and cross-node handoff without a heap
/// allocation per packet.
///
/// Each entry is a `BytesMut` whose frozen halves are handed out; once every reader has
/// dropped its `Bytes`, `try_reclaim` gets the same allocation back. The pool only
/// allocates while packets are held longer than a full turn of the ring (a slow consumer),
/// and then just one buffer.
#[derive(Debug)]
pub struct BytesPool {
    bufs: Vec<BytesMut>,
    next: usize,
    buf_len: usize,
}

impl BytesPool {
    pub fn new(count: usize, buf_len: usize) -> Self {
        Self {
            bufs: (0..count.max(1))
                .map(|_| BytesMut::with_capacity(buf_len))
                .collect(),
            next: 0,
            buf_len,
        }
    }

    /// A shared copy of `data`.
    pub fn share(&mut self, data: &[u8]) -> Bytes {
        let i = self.next;
        self.next = (i + 1) % self.bufs.len();
        let buf = &mut self.bufs[i];
        buf.clear();
        if !buf.try_reclaim(self.buf_len.max(data.len())) {
            *buf = BytesMut::with_capacity(self.buf_len.max(data.len()));
        }
        buf.extend_from_slice(data);
        buf.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_reclaims() {
        let mut pool = BytesPool::new(2, 64);
        let a = pool.share(b"abc");
        let b = pool.share(b"defg");
        assert_eq!(&a[..], b"abc");
        assert_eq!(&b[..], b"defg");
        drop(a);
        // Slot 0 comes round again; its old reader is gone so the memory is reused.
        let c = pool.share(b"hi");
        assert_eq!(&c[..], b"hi");
        assert_eq!(&b[..], b"defg");
    }
}
