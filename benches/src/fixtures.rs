//! Realistic packets for micro-benchmarks.

/// A video RTP packet of `size` bytes as a browser sends it: one-byte extension block
/// with mid, rid, transport-wide sequence number and abs-send-time.
pub fn rtp_packet(size: usize) -> Vec<u8> {
    let mut p = vec![
        0x90, 96, 0x12, 0x34, 0, 0x01, 0x5f, 0x90, 0xde, 0xad, 0xbe, 0xef,
    ];
    p.extend_from_slice(&[0xbe, 0xde, 0, 3]);
    p.extend_from_slice(&[
        0x10, b'1', 0x21, b'h', b'i', 0x31, 0x00, 0x07, 0x42, 0x11, 0x22, 0x33,
    ]);
    assert!(size >= p.len(), "packet size below header size");
    let body = size - p.len();
    p.extend((0..body).map(|i| (i * 7) as u8));
    p
}
