use super::*;

fn request() -> Vec<u8> {
    let mut buf = [0u8; 200];
    let mut w = StunWriter::new(&mut buf, BINDING_REQUEST, &[1; 12]).unwrap();
    w.username(b"a:b")
        .unwrap()
        .priority(5)
        .unwrap()
        .use_candidate()
        .unwrap();
    w.message_integrity(b"pw").unwrap().fingerprint().unwrap();
    let n = w.finish();
    buf[..n].to_vec()
}

#[test]
fn writer_output_parses_and_verifies() {
    let r = request();
    let m = StunMessage::parse(&r).unwrap();
    assert_eq!(m.username(), Some(&b"a:b"[..]));
    assert_eq!(m.priority(), Some(5));
    assert!(m.use_candidate());
    m.verify_integrity(b"pw").unwrap();
    m.verify_fingerprint().unwrap();
}

#[test]
fn malformed_messages_are_precise_errors() {
    let r = request();
    assert_eq!(
        StunMessage::parse(&r[..19]).unwrap_err(),
        StunError::TooShort(19)
    );
    let mut not = r.clone();
    not[0] = 0x40;
    assert_eq!(StunMessage::parse(&not).unwrap_err(), StunError::NotStun);
    let mut cookie = r.clone();
    cookie[4] = 0;
    assert!(matches!(
        StunMessage::parse(&cookie),
        Err(StunError::BadCookie(_))
    ));
    assert!(matches!(
        StunMessage::parse(&r[..r.len() - 4]),
        Err(StunError::BadLength { .. })
    ));
    let mut overrun = r.clone();
    overrun[22] = 0x40; // USERNAME claims 16 KiB
    assert_eq!(
        StunMessage::parse(&overrun).unwrap_err(),
        StunError::AttributeOverrun(20)
    );
    let mut bad_fp = r.clone();
    let last = bad_fp.len() - 1;
    bad_fp[last] ^= 1;
    assert_eq!(
        StunMessage::parse(&bad_fp).unwrap().verify_fingerprint(),
        Err(StunError::BadFingerprint)
    );
    let mut tampered = r.clone();
    tampered[25] ^= 1; // inside USERNAME
    let m = StunMessage::parse(&tampered).unwrap();
    assert_eq!(m.verify_integrity(b"pw"), Err(StunError::BadIntegrity));
}

#[test]
fn fingerprint_must_be_last_and_integrity_must_exist() {
    let mut buf = [0u8; 100];
    let mut w = StunWriter::new(&mut buf, BINDING_REQUEST, &[2; 12]).unwrap();
    w.fingerprint().unwrap().priority(1).unwrap();
    let n = w.finish();
    assert_eq!(
        StunMessage::parse(&buf[..n]).unwrap_err(),
        StunError::FingerprintNotLast
    );
    let mut buf = [0u8; 100];
    let mut w = StunWriter::new(&mut buf, BINDING_REQUEST, &[2; 12]).unwrap();
    w.priority(1).unwrap();
    let n = w.finish();
    assert_eq!(
        StunMessage::parse(&buf[..n])
            .unwrap()
            .verify_integrity(b"k"),
        Err(StunError::NoIntegrity)
    );
}

#[test]
fn attributes_after_integrity_are_ignored() {
    let mut buf = [0u8; 200];
    let mut w = StunWriter::new(&mut buf, BINDING_REQUEST, &[3; 12]).unwrap();
    w.message_integrity(b"pw")
        .unwrap()
        .username(b"sneaky")
        .unwrap();
    let n = w.finish();
    let m = StunMessage::parse(&buf[..n]).unwrap();
    assert_eq!(m.username(), None);
}

#[test]
fn writer_checks_space() {
    let mut tiny = [0u8; 10];
    assert_eq!(
        StunWriter::new(&mut tiny, BINDING_SUCCESS, &[0; 12]).unwrap_err(),
        StunError::BufferTooSmall
    );
    let mut small = [0u8; 24];
    let mut w = StunWriter::new(&mut small, BINDING_SUCCESS, &[0; 12]).unwrap();
    assert_eq!(w.priority(1).unwrap_err(), StunError::BufferTooSmall);
    assert_eq!(
        w.finish(),
        HEADER_LEN,
        "a rejected attribute leaves the message intact"
    );
}
