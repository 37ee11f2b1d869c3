//! STUN parsing and verification of arbitrary bytes; a parsed binding request gets an
//! answer that must itself parse and verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_dataplane::stun::{self, StunMessage};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = StunMessage::parse(data) else { return };
    let _ = m.verify_fingerprint();
    let _ = m.verify_integrity(b"password");
    let _ = m.xor_mapped_address();
    let _ = m.error_code();
    let _ = (m.username(), m.priority(), m.ice_controlling(), m.ice_controlled());
    if m.is_binding_request() {
        let mut out = [0u8; 128];
        let from = "198.51.100.7:40000".parse().unwrap();
        let n = stun::binding_success(&mut out, &m, from, b"password").unwrap();
        let r = StunMessage::parse(&out[..n]).expect("our response parses");
        r.verify_integrity(b"password").unwrap();
        r.verify_fingerprint().unwrap();
        assert_eq!(r.xor_mapped_address(), Some(Ok(from)));
        assert_eq!(r.transaction_id(), m.transaction_id());
    }
});
