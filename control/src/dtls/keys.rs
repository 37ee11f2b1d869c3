//! SRTP profiles offered in `use_srtp` and the split of the exported keying material
//! (RFC 5764 section 4.2).

use super::DtlsError;
use dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use sluice_dataplane::router::SrtpKeys;
use sluice_dataplane::srtp::Profile;

/// The RFC 5705 exporter label for DTLS-SRTP.
pub const EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";

/// What we offer (as client) and accept (as server), most preferred first: GCM is
/// cheaper per packet. The server enforces this order itself (see `hello.rs`).
pub(super) const OFFERED: [SrtpProtectionProfile; 2] = [
    SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
    SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
];

pub(super) fn profile_of(p: SrtpProtectionProfile) -> Result<Profile, DtlsError> {
    match p {
        SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => Ok(Profile::AeadAes128Gcm),
        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => Ok(Profile::Aes128CmHmacSha1_80),
        _ => Err(DtlsError::NoSrtpProfile),
    }
}

/// Bytes to export for `profile`: two keys and two salts.
pub(super) fn material_len(profile: Profile) -> usize {
    2 * (profile.master_key_len() + profile.master_salt_len())
}

/// Both directions' SRTP keys of one session.
#[derive(Debug, Clone)]
pub struct SrtpSessionKeys {
    /// Keys for what the peer sends us.
    pub inbound: SrtpKeys,
    /// Keys for what we send the peer.
    pub outbound: SrtpKeys,
}

/// Splits `client key | server key | client salt | server salt` into our two directions.
pub(super) fn split(
    profile: Profile,
    material: &[u8],
    we_are_client: bool,
) -> Result<SrtpSessionKeys, DtlsError> {
    let (k, s) = (profile.master_key_len(), profile.master_salt_len());
    if material.len() != material_len(profile) {
        return Err(DtlsError::Export(format!(
            "{} bytes of keying material, expected {}",
            material.len(),
            material_len(profile)
        )));
    }
    let (client_key, rest) = material.split_at(k);
    let (server_key, rest) = rest.split_at(k);
    let (client_salt, server_salt) = rest.split_at(s);
    let client = SrtpKeys {
        profile,
        key: client_key.to_vec(),
        salt: client_salt.to_vec(),
    };
    let server = SrtpKeys {
        profile,
        key: server_key.to_vec(),
        salt: server_salt.to_vec(),
    };
    Ok(if we_are_client {
        SrtpSessionKeys {
            inbound: server,
            outbound: client,
        }
    } else {
        SrtpSessionKeys {
            inbound: client,
            outbound: server,
        }
    })
}

/// Same profile, key and salt (`SrtpKeys` has no `PartialEq`).
pub fn same_keys(a: &SrtpKeys, b: &SrtpKeys) -> bool {
    a.profile == b.profile && a.key == b.key && a.salt == b.salt
}

#[cfg(test)]
mod tests {
    use super::same_keys as same;
    use super::*;

    #[test]
    fn split_follows_rfc5764_layout() {
        let p = Profile::Aes128CmHmacSha1_80;
        let material: Vec<u8> = (0..60).collect();
        let server = split(p, &material, false).expect("60 bytes");
        assert_eq!(server.inbound.key, (0..16).collect::<Vec<u8>>());
        assert_eq!(server.outbound.key, (16..32).collect::<Vec<u8>>());
        assert_eq!(server.inbound.salt, (32..46).collect::<Vec<u8>>());
        assert_eq!(server.outbound.salt, (46..60).collect::<Vec<u8>>());
        let client = split(p, &material, true).expect("60 bytes");
        assert!(same(&client.inbound, &server.outbound));
        assert!(same(&client.outbound, &server.inbound));

        let g = Profile::AeadAes128Gcm;
        let material: Vec<u8> = (0..56).collect();
        let server = split(g, &material, false).expect("56 bytes");
        assert_eq!(server.inbound.salt, (32..44).collect::<Vec<u8>>());
        assert_eq!(server.outbound.salt, (44..56).collect::<Vec<u8>>());
        assert!(split(g, &material[..55], false).is_err());
    }
}
