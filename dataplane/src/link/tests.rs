use super::*;
use bytes::Bytes;

fn rtp(len: usize) -> Vec<u8> {
    let mut p = vec![
        0x80, 96, 0x12, 0x34, 0, 0, 0x0b, 0xb8, 0xde, 0xad, 0xbe, 0xef,
    ];
    p.resize(len, 0x5a);
    p
}

#[test]
fn round_trips_through_a_slice_and_a_bytes_buffer() {
    let packet = rtp(300);
    let frame = LinkFrame {
        track: 0x0102_0304_0506_0708,
        layer: 2,
        keyframe: true,
        rtp: &packet,
    };
    let mut buf = [0u8; MAX_FRAME];
    let n = encode_into(&frame, &mut buf).unwrap();
    assert_eq!(n, HEADER_LEN + 300);
    assert_eq!(&buf[..HEADER_LEN], &[1, 1, 2, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(decode(&buf[..n]), Ok(frame));

    let mut out = BytesMut::new();
    let delta = LinkFrame {
        keyframe: false,
        ..frame
    };
    encode_to(&delta, &mut out).unwrap();
    assert_eq!(out[1], 0, "no flag set for a delta frame");
    assert_eq!(decode(&out), Ok(delta));
    // A failed encode leaves the buffer as it was.
    let long = rtp(MAX_RTP + 1);
    let before = out.len();
    assert!(
        encode_to(
            &LinkFrame {
                rtp: &long,
                ..frame
            },
            &mut out
        )
        .is_err()
    );
    assert_eq!(out.len(), before);
}

#[test]
fn a_link_packet_frames_as_itself() {
    let p = LinkPacket {
        node: 3,
        track: 77,
        layer: 1,
        keyframe: true,
        packet: Bytes::from(rtp(40)),
    };
    let mut buf = [0u8; 64];
    let n = encode_into(&LinkFrame::from(&p), &mut buf).unwrap();
    let f = decode(&buf[..n]).unwrap();
    assert_eq!(
        (f.track, f.layer, f.keyframe, f.rtp),
        (77, 1, true, &p.packet[..])
    );
}

#[test]
fn limits_are_exact() {
    let max = rtp(MAX_RTP);
    let min = rtp(12);
    let mut buf = [0u8; MAX_FRAME];
    for p in [&max, &min] {
        let f = LinkFrame {
            track: 1,
            layer: 0,
            keyframe: false,
            rtp: p,
        };
        let n = encode_into(&f, &mut buf).unwrap();
        assert_eq!(decode(&buf[..n]), Ok(f));
    }
    // Exactly the frame's length is enough room.
    let f = LinkFrame {
        track: 1,
        layer: 0,
        keyframe: false,
        rtp: &min,
    };
    assert_eq!(encode_into(&f, &mut buf[..HEADER_LEN + 12]), Ok(23));
}

#[test]
fn every_error() {
    let good = rtp(20);
    let frame = |rtp| LinkFrame {
        track: 9,
        layer: 0,
        keyframe: false,
        rtp,
    };
    let mut buf = [0u8; 2 * MAX_FRAME];

    // Encode.
    let long = rtp(MAX_RTP + 1);
    assert_eq!(
        encode_into(&frame(&long), &mut buf),
        Err(LinkFrameError::Oversize(MAX_RTP + 1))
    );
    assert_eq!(
        encode_into(&frame(&good[..11]), &mut buf),
        Err(LinkFrameError::RtpTooShort(11))
    );
    assert_eq!(
        encode_into(&frame(&[]), &mut buf),
        Err(LinkFrameError::RtpTooShort(0))
    );
    let mut v1 = good.clone();
    v1[0] = 0x40;
    assert_eq!(
        encode_into(&frame(&v1), &mut buf),
        Err(LinkFrameError::RtpVersion(1))
    );
    assert_eq!(
        encode_into(&frame(&good), &mut buf[..30]),
        Err(LinkFrameError::BufferTooSmall { need: 31, have: 30 })
    );

    // Decode.
    let n = encode_into(&frame(&good), &mut buf).unwrap();
    let wire = buf[..n].to_vec();
    for len in 0..HEADER_LEN {
        assert_eq!(decode(&wire[..len]), Err(LinkFrameError::Truncated(len)));
    }
    for len in HEADER_LEN..HEADER_LEN + 12 {
        assert_eq!(
            decode(&wire[..len]),
            Err(LinkFrameError::RtpTooShort(len - HEADER_LEN))
        );
    }
    for version in [0u8, 2, 0xff] {
        let mut w = wire.clone();
        w[0] = version;
        assert_eq!(decode(&w), Err(LinkFrameError::UnknownVersion(version)));
    }
    let mut w = wire.clone();
    w[HEADER_LEN] = 0x00;
    assert_eq!(decode(&w), Err(LinkFrameError::RtpVersion(0)));
    let mut w = wire[..HEADER_LEN].to_vec();
    w.extend_from_slice(&long);
    assert_eq!(decode(&w), Err(LinkFrameError::Oversize(MAX_RTP + 1)));
}

#[test]
fn unknown_flags_are_ignored_and_not_written_back() {
    let packet = rtp(30);
    let f = LinkFrame {
        track: 5,
        layer: 1,
        keyframe: false,
        rtp: &packet,
    };
    let mut wire = [0u8; 64];
    let n = encode_into(&f, &mut wire).unwrap();
    for flags in [0xfe, 0xff, 0x80] {
        wire[1] = flags;
        let got = decode(&wire[..n]).unwrap();
        assert_eq!(got.keyframe, flags & FLAG_KEYFRAME != 0);
        let mut again = [0u8; 64];
        let m = encode_into(&got, &mut again).unwrap();
        assert_eq!(again[1], flags & FLAG_KEYFRAME);
        assert_eq!(again[2..m], wire[2..n]);
    }
}
