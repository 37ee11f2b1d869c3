//! The hot path allocates nothing: parse, rewrite and SRTP protect/unprotect of a packet,
//! counted by a global allocator wrapper on this thread.

use sluice_dataplane::demux;
use sluice_dataplane::rewrite::RtpRewriter;
use sluice_dataplane::rtcp::{self, ReportBlock, RtcpPacket, RtcpWriter};
use sluice_dataplane::rtp::{ExtensionIds, RtpPacket};
use sluice_dataplane::srtp::{Profile, SrtpContext};
use sluice_dataplane::stun::{self, StunMessage, StunWriter};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

const IDS: ExtensionIds = ExtensionIds {
    mid: 1,
    rid: 2,
    repaired_rid: 3,
    transport_cc: 3,
    abs_send_time: 4,
    audio_level: 5,
};

fn video_packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x90, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 42]);
    p.extend_from_slice(&[
        0xbe, 0xde, 0, 3, 0x10, b'1', 0x21, b'h', b'i', 0x31, 0, 7, 0x42, 1, 2, 3,
    ]);
    p.extend_from_slice(&[0x90, 0xc0, 0x80, 0x05, 0x11, 0x00]);
    p.resize(1200, 0x5a);
    p
}

#[test]
fn hot_path_does_not_allocate() {
    // Everything a worker owns is built up front.
    let packets: Vec<Vec<u8>> = (0..256u16).map(video_packet).collect();
    let mut buf = vec![0u8; 1500];
    let mut rtcp_buf = [0u8; 1500];
    let mut stun_buf = [0u8; 200];
    let mut rewriter = RtpRewriter::new(0x5eed, 90_000, 1, 1, true);
    let contexts: Vec<(SrtpContext, SrtpContext)> =
        [Profile::AeadAes128Gcm, Profile::Aes128CmHmacSha1_80]
            .into_iter()
            .map(|p| {
                let salt = vec![1u8; p.master_salt_len()];
                (
                    SrtpContext::new(p, &[2; 16], &salt).unwrap(),
                    SrtpContext::new(p, &[2; 16], &salt).unwrap(),
                )
            })
            .collect();
    let mut contexts = contexts;
    let mut req_buf = [0u8; 200];
    let mut w = StunWriter::new(&mut req_buf, stun::BINDING_REQUEST, &[9; 12]).unwrap();
    w.username(b"sfu:peer")
        .unwrap()
        .priority(1)
        .unwrap()
        .message_integrity(b"pw")
        .unwrap()
        .fingerprint()
        .unwrap();
    let req_len = w.finish();
    let from = "10.0.0.1:5000".parse().unwrap();

    // Warm-up: the first packet of each SSRC creates its per-SSRC SRTP state (once per
    // stream, not per packet).
    for (tx, rx) in &mut contexts {
        buf[..1200].copy_from_slice(&packets[0]);
        let n = tx.protect_rtp(&mut buf, 1200).unwrap();
        rx.unprotect_rtp(&mut buf[..n]).unwrap();
        let m = RtcpWriter::new(&mut rtcp_buf[..])
            .pli(1, 42)
            .map(|_| 12)
            .unwrap();
        let n = tx.protect_rtcp(&mut rtcp_buf, m).unwrap();
        rx.unprotect_rtcp(&mut rtcp_buf[..n]).unwrap();
    }

    let count = allocations(|| {
        for (i, p) in packets.iter().enumerate().skip(1) {
            assert_eq!(demux::classify(p), demux::PacketKind::Rtp);
            let parsed = RtpPacket::parse(p).unwrap();
            let known = parsed.known_extensions(&IDS).unwrap();
            assert_eq!(known.mid, Some(&b"1"[..]));

            // Ingress: unprotect; egress: copy, rewrite, protect.
            for (tx, rx) in &mut contexts {
                buf[..1200].copy_from_slice(p);
                let n = tx.protect_rtp(&mut buf, 1200).unwrap();
                let m = rx.unprotect_rtp(&mut buf[..n]).unwrap();
                assert_eq!(&buf[..m], &p[..]);
                rewriter.rewrite(i as u64 * 1000, &mut buf[..m]).unwrap();
            }

            // RTCP: build feedback, protect, unprotect, parse.
            let mut w = RtcpWriter::new(&mut rtcp_buf[..]);
            w.receiver_report(1, &[ReportBlock::default()]).unwrap();
            w.nack(1, 42, [i as u16, i as u16 + 2]).unwrap();
            w.transport_cc(1, 42, 0, 0, 0, &[Some(1), None, Some(300), Some(2)])
                .unwrap();
            let len = w.finish();
            for (tx, rx) in &mut contexts {
                let n = tx.protect_rtcp(&mut rtcp_buf, len).unwrap();
                let m = rx.unprotect_rtcp(&mut rtcp_buf[..n]).unwrap();
                assert_eq!(m, len);
            }
            let mut statuses = 0;
            for pkt in rtcp::parse_compound(&rtcp_buf[..len]) {
                if let RtcpPacket::TransportCc(t) = pkt.unwrap() {
                    statuses += t.statuses().count();
                }
            }
            assert_eq!(statuses, 4);

            // STUN: verify a request, answer it.
            let req = StunMessage::parse(&req_buf[..req_len]).unwrap();
            req.verify_fingerprint().unwrap();
            req.verify_integrity(b"pw").unwrap();
            stun::binding_success(&mut stun_buf, &req, from, b"pw").unwrap();
        }
    });
    assert_eq!(count, 0, "allocations on the packet path");

    // The counter is live: an allocation is seen.
    assert_eq!(allocations(|| drop(std::hint::black_box(vec![1u8; 10]))), 1);
}
