use super::*;

fn rr() -> Vec<u8> {
    let mut buf = [0u8; 64];
    let mut w = RtcpWriter::new(&mut buf);
    w.receiver_report(1, &[ReportBlock::default()]).unwrap();
    let n = w.finish();
    buf[..n].to_vec()
}

#[test]
fn malformed_headers_are_precise_errors() {
    let good = rr();
    assert!(RtcpPacket::parse(&good).is_ok());
    assert_eq!(
        RtcpPacket::parse(&good[..3]).unwrap_err(),
        RtcpError::TooShort(3)
    );
    let mut v1 = good.clone();
    v1[0] = 0x41;
    assert_eq!(
        RtcpPacket::parse(&v1).unwrap_err(),
        RtcpError::BadVersion(1)
    );
    assert_eq!(
        RtcpPacket::parse(&good[..20]).unwrap_err(),
        RtcpError::LengthOverrun {
            declared: 32,
            available: 20
        }
    );
    let mut padded = good.clone();
    padded[0] |= 0x20;
    *padded.last_mut().unwrap() = 0;
    assert_eq!(
        RtcpPacket::parse(&padded).unwrap_err(),
        RtcpError::BadPadding(0)
    );
    let mut short_body = good.clone();
    short_body[0] = 0x82; // claims two report blocks
    assert!(matches!(
        RtcpPacket::parse(&short_body),
        Err(RtcpError::Truncated { pt: PT_RR, .. })
    ));
}

#[test]
fn compound_stops_after_an_error() {
    let mut two = rr();
    two.extend_from_slice(&[0x80, 201, 0, 9]); // overruns
    two.extend(rr());
    let items: Vec<_> = parse_compound(&two).collect();
    assert_eq!(items.len(), 2);
    assert!(items[0].is_ok());
    assert!(items[1].is_err());
}

#[test]
fn unknown_types_are_kept_opaque() {
    let xr = [0x80, 207, 0, 1, 0, 0, 0, 5];
    match RtcpPacket::parse(&xr).unwrap() {
        RtcpPacket::Other {
            packet_type: 207,
            body,
            ..
        } => assert_eq!(body, &[0, 0, 0, 5]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn twcc_rejects_reserved_symbols_and_overruns() {
    let mut buf = [0u8; 128];
    let mut w = RtcpWriter::new(&mut buf);
    w.transport_cc(1, 2, 10, 0, 0, &[Some(1), None, Some(-5), Some(300)])
        .unwrap();
    let n = w.finish();
    let RtcpPacket::TransportCc(fb) = RtcpPacket::parse(&buf[..n]).unwrap() else {
        panic!()
    };
    let got: Vec<_> = fb.statuses().collect();
    assert_eq!(
        got[2],
        TwccStatus {
            seq: 12,
            delta: Some(-5)
        }
    );
    assert_eq!(got[3].delta, Some(300));
    // A run-length chunk of the reserved symbol 3.
    let mut bad = buf[..n].to_vec();
    bad[20] = 0x60;
    bad[21] = 0x04;
    assert_eq!(
        RtcpPacket::parse(&bad).unwrap_err(),
        RtcpError::Malformed("TWCC reserved status symbol")
    );
    // Status count far beyond the chunks present.
    let mut big = buf[..n].to_vec();
    big[14] = 0xff;
    big[15] = 0xff;
    assert!(RtcpPacket::parse(&big).is_err());
}

#[test]
fn writer_reports_full_buffers_and_out_of_range() {
    let mut small = [0u8; 10];
    let mut w = RtcpWriter::new(&mut small);
    assert_eq!(w.pli(1, 2), Err(RtcpError::BufferTooSmall));
    assert_eq!(w.len(), 0, "abandoned packet leaves nothing");
    let mut buf = [0u8; 64];
    let mut w = RtcpWriter::new(&mut buf);
    assert!(w.nack(1, 2, []).is_err());
    assert!(w.fir(1, &[]).is_err());
    assert!(w.transport_cc(1, 2, 0, 1 << 23, 0, &[None]).is_err());
    assert!(w.transport_cc(1, 2, 0, 0, 0, &[Some(40_000)]).is_err());
}

#[test]
fn remb_encoding_round_trips_within_precision() {
    for bitrate in [0u64, 1, 262_143, 262_144, 1_000_000, 30_000_000, 1 << 40] {
        let mut buf = [0u8; 64];
        let mut w = RtcpWriter::new(&mut buf);
        w.remb(1, bitrate, &[2]).unwrap();
        let n = w.finish();
        let RtcpPacket::Remb(r) = RtcpPacket::parse(&buf[..n]).unwrap() else {
            panic!()
        };
        assert!(
            r.bitrate <= bitrate && bitrate - r.bitrate <= bitrate >> 17,
            "{bitrate} -> {}",
            r.bitrate
        );
    }
}
