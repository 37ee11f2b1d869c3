//! A provided-buffer ring (io_uring buffer group) whose memory we own.
//!
//! The kernel takes a buffer from the ring for each datagram a multishot receive
//! completes and names it by id in the completion; the worker hands the bytes to its
//! handler and then puts the same buffer back at the tail. Both the ring of descriptors
//! and the buffers are anonymous mappings: page aligned as the kernel requires, and never
//! moved.

use io_uring::Submitter;
use io_uring::types::BufRingEntry;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

#[derive(Debug)]
pub(crate) struct BufRing {
    ring: NonNull<BufRingEntry>,
    ring_bytes: usize,
    bufs: NonNull<u8>,
    bufs_bytes: usize,
    entries: u16,
    buf_len: usize,
    /// Our copy of the tail; published to the kernel by `publish`.
    tail: u16,
    pub bgid: u16,
}

fn map(bytes: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned null"))
}

impl BufRing {
    /// `entries` must be a power of two (the kernel's rule).
    pub fn new(entries: u16, buf_len: usize, bgid: u16) -> io::Result<Self> {
        if !entries.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ring_buffers must be a power of two",
            ));
        }
        let ring_bytes = usize::from(entries) * std::mem::size_of::<BufRingEntry>();
        let bufs_bytes = usize::from(entries) * buf_len;
        let ring: NonNull<BufRingEntry> = map(ring_bytes)?.cast();
        let bufs = match map(bufs_bytes) {
            Ok(b) => b,
            Err(e) => {
                // SAFETY: unmapping exactly what `map` returned above.
                unsafe { libc::munmap(ring.as_ptr().cast(), ring_bytes) };
                return Err(e);
            }
        };
        Ok(Self {
            ring,
            ring_bytes,
            bufs,
            bufs_bytes,
            entries,
            buf_len,
            tail: 0,
            bgid,
        })
    }

    /// Registers the ring with `submitter`'s io_uring and fills it with every buffer.
    pub fn register(&mut self, submitter: &Submitter<'_>) -> io::Result<()> {
        // SAFETY: the ring memory lives until `self` drops, and the owner drops the
        // io_uring (or unregisters) first.
        unsafe {
            submitter.register_buf_ring_with_flags(
                self.ring.as_ptr() as u64,
                self.entries,
                self.bgid,
                0,
            )?;
        }
        for bid in 0..self.entries {
            self.recycle(bid);
        }
        self.publish();
        Ok(())
    }

    pub fn buf_len(&self) -> usize {
        self.buf_len
    }

    /// The first `len` bytes of buffer `bid`, which the kernel has filled and handed back.
    pub fn get(&mut self, bid: u16, len: usize) -> &mut [u8] {
        assert!(bid < self.entries && len <= self.buf_len);
        // SAFETY: inside our mapping; the kernel is done with this buffer until it is
        // recycled, and `&mut self` keeps this the only view of it.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.bufs.as_ptr().add(usize::from(bid) * self.buf_len),
                len,
            )
        }
    }

    /// Puts buffer `bid` back; the kernel sees it after `publish`.
    pub fn recycle(&mut self, bid: u16) {
        let idx = usize::from(self.tail & (self.entries - 1));
        // SAFETY: `idx` < entries; the kernel only reads slots between its head and
        // the published tail, and this one is past the tail.
        let entry = unsafe { &mut *self.ring.as_ptr().add(idx) };
        // SAFETY: same buffer arithmetic as `get`.
        let addr = unsafe { self.bufs.as_ptr().add(usize::from(bid) * self.buf_len) };
        entry.set_addr(addr as u64);
        entry.set_len(self.buf_len as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    pub fn publish(&self) {
        // SAFETY: the tail field lives in entry 0's reserved word, inside our mapping;
        // the kernel reads it with acquire semantics, so release pairs with that.
        unsafe {
            let tail = BufRingEntry::tail(self.ring.as_ptr()) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mappings; the ring that used them is gone or has
        // unregistered the group (see the drivers' teardown order).
        unsafe {
            libc::munmap(self.ring.as_ptr().cast(), self.ring_bytes);
            libc::munmap(self.bufs.as_ptr().cast(), self.bufs_bytes);
        }
    }
}
