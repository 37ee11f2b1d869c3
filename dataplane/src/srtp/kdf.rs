//! SRTP key derivation (RFC 3711 4.3.3 AES-CM PRF; RFC 7714 section 11 reuses it with a
//! 96-bit master salt). The key derivation rate is 0, so derivation happens once.

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};

pub(crate) const LABEL_RTP_ENCRYPTION: u8 = 0;
pub(crate) const LABEL_RTP_AUTH: u8 = 1;
pub(crate) const LABEL_RTP_SALT: u8 = 2;
pub(crate) const LABEL_RTCP_ENCRYPTION: u8 = 3;
pub(crate) const LABEL_RTCP_AUTH: u8 = 4;
pub(crate) const LABEL_RTCP_SALT: u8 = 5;

/// Fills `out` with the PRF output for `label`. The master salt sits left-aligned in the
/// 16-byte counter block, the label XORed into byte 7 (index DIV kdr is 0), and the
/// low 16 bits count blocks.
pub(crate) fn derive(master_key: &[u8; 16], master_salt: &[u8], label: u8, out: &mut [u8]) {
    let cipher = Aes128::new(GenericArray::from_slice(master_key));
    let mut x = [0u8; 16];
    x[..master_salt.len()].copy_from_slice(master_salt);
    x[7] ^= label;
    for (i, chunk) in out.chunks_mut(16).enumerate() {
        let mut block = x;
        block[14..16].copy_from_slice(&(i as u16).to_be_bytes());
        let mut b = GenericArray::from(block);
        cipher.encrypt_block(&mut b);
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 3711 appendix B.3 test vectors.
    #[test]
    fn rfc3711_b3_vectors() {
        let key: [u8; 16] = hex("E1F97A0D3E018BE0D64FA32C06DE4139").try_into().unwrap();
        let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        let mut enc = [0u8; 16];
        derive(&key, &salt, LABEL_RTP_ENCRYPTION, &mut enc);
        assert_eq!(enc.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut s = [0u8; 14];
        derive(&key, &salt, LABEL_RTP_SALT, &mut s);
        assert_eq!(s.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        let mut auth = [0u8; 94];
        derive(&key, &salt, LABEL_RTP_AUTH, &mut auth);
        assert_eq!(
            auth[..32].to_vec(),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA48F0A0ACF3C34E2359E6CDBCE")
        );
    }
}
