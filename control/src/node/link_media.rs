//! The media thread of the cascade: link packets from every worker, framed, onto their
//! node's link as QUIC datagrams.

use super::cascade::{CascadeCounters, LinkTable};
use bytes::BytesMut;
use sluice_dataplane::engine::LinkPacket;
use sluice_dataplane::link;
use std::sync::atomic::Ordering;

/// The media thread: link packets from every worker, framed, onto their node's link.
pub(super) fn send_media(
    rx: &crossbeam_channel::Receiver<LinkPacket>,
    table: &LinkTable,
    counters: &CascadeCounters,
) {
    let mut buf = BytesMut::with_capacity(64 * link::MAX_FRAME);
    while let Ok(pkt) = rx.recv() {
        let handle = table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&pkt.node)
            .cloned();
        let Some(handle) = handle else {
            counters.media_out_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if buf.capacity() < link::MAX_FRAME {
            buf.reserve(64 * link::MAX_FRAME);
        }
        if link::encode_to(&link::LinkFrame::from(&pkt), &mut buf).is_err() {
            counters.media_out_dropped.fetch_add(1, Ordering::Relaxed);
            buf.clear();
            continue;
        }
        let frame = buf.split().freeze();
        match handle.send_datagram(frame) {
            Ok(()) => counters.media_out.fetch_add(1, Ordering::Relaxed),
            Err(_) => counters.media_out_dropped.fetch_add(1, Ordering::Relaxed),
        };
    }
}
