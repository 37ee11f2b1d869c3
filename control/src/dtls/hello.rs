//! The SRTP profiles a ClientHello offers, read before the handshake starts.
//!
//! The `dtls` crate's server picks the first profile of the *client's* list that it
//! supports, and Chromium lists AES-CM before GCM; to get the profile we prefer (GCM is
//! cheaper per packet) the server is given only the best one the client offers.

use super::keys::OFFERED;
use dtls::extension::extension_use_srtp::SrtpProtectionProfile;

const RECORD_HEADER: usize = 13;
const HANDSHAKE_HEADER: usize = 12;
const CONTENT_HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const EXT_USE_SRTP: u16 = 0x000e;

/// A cursor that fails instead of panicking on a short or lying message.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// The protection profile ids of the `use_srtp` extension of the first ClientHello in
/// `datagram`, or `None` when it holds no (unfragmented) ClientHello with one.
pub(super) fn offered_profiles(datagram: &[u8]) -> Option<Vec<u16>> {
    let mut r = Reader(datagram);
    let header = r.take(RECORD_HEADER)?;
    if header[0] != CONTENT_HANDSHAKE {
        return None;
    }
    let hs = r.take(usize::from(u16::from_be_bytes([header[11], header[12]])))?;
    let mut r = Reader(hs);
    let hh = r.take(HANDSHAKE_HEADER)?;
    // Type, then length, sequence, fragment offset and fragment length (3 bytes each
    // but the sequence): a fragmented hello is left to the crate.
    if hh[0] != CLIENT_HELLO || hh[6..9] != [0, 0, 0] || hh[1..4] != hh[9..12] {
        return None;
    }
    r.take(2 + 32)?; // version, random
    r.vec8()?; // session id
    r.vec8()?; // cookie
    r.vec16()?; // cipher suites
    r.vec8()?; // compression methods
    let mut exts = Reader(r.vec16()?);
    while let Some(kind) = exts.u16() {
        let body = exts.vec16()?;
        if kind == EXT_USE_SRTP {
            let mut b = Reader(body);
            let list = b.vec16()?;
            return Some(
                list.chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect(),
            );
        }
    }
    None
}

/// What the server should accept: our most preferred profile the client offers, alone,
/// or our whole list when the hello cannot be read (the crate then decides or fails).
pub(super) fn server_profiles(first_datagram: &[u8]) -> Vec<SrtpProtectionProfile> {
    let Some(offered) = offered_profiles(first_datagram) else {
        return OFFERED.to_vec();
    };
    OFFERED
        .iter()
        .find(|ours| offered.contains(&(**ours as u16)))
        .map_or_else(|| OFFERED.to_vec(), |p| vec![*p])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello record with the given use_srtp profile ids (and one other
    /// extension before it).
    fn hello(profiles: &[u16]) -> Vec<u8> {
        let mut body = vec![0xfe, 0xfd];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.push(0); // cookie
        body.extend([0, 2, 0xc0, 0x2b]); // one cipher suite
        body.extend([1, 0]); // null compression
        let mut exts = vec![0x00, 0x17, 0, 0]; // extended master secret
        let mut srtp = Vec::new();
        srtp.extend(((profiles.len() * 2) as u16).to_be_bytes());
        for p in profiles {
            srtp.extend(p.to_be_bytes());
        }
        srtp.push(0); // no MKI
        exts.extend(EXT_USE_SRTP.to_be_bytes());
        exts.extend((srtp.len() as u16).to_be_bytes());
        exts.extend(srtp);
        body.extend((exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let len = (body.len() as u32).to_be_bytes();
        let mut hs = vec![CLIENT_HELLO, len[1], len[2], len[3], 0, 0, 0, 0, 0];
        hs.extend(&len[1..]);
        hs.extend(body);
        let mut rec = vec![CONTENT_HANDSHAKE, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0];
        rec.extend((hs.len() as u16).to_be_bytes());
        rec.extend(hs);
        rec
    }

    #[test]
    fn prefers_gcm_whatever_the_client_order() {
        assert_eq!(offered_profiles(&hello(&[1, 7])), Some(vec![1, 7]));
        assert_eq!(
            server_profiles(&hello(&[8, 1, 7])),
            [SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm]
        );
        assert_eq!(
            server_profiles(&hello(&[1])),
            [SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80]
        );
        assert_eq!(server_profiles(&hello(&[2])), OFFERED.to_vec());
    }

    #[test]
    fn unreadable_hellos_leave_the_choice_to_the_crate() {
        let h = hello(&[7]);
        for cut in 0..h.len() {
            assert_eq!(server_profiles(&h[..cut]), OFFERED.to_vec(), "cut at {cut}");
        }
        assert_eq!(offered_profiles(&[]), None);
        let mut not_hello = h.clone();
        not_hello[RECORD_HEADER] = 2;
        assert_eq!(offered_profiles(&not_hello), None);
    }
}
