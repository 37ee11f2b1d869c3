//! Node names as certificates carry them.
//!
//! A node certificate names its node in a DNS subject alternative name,
//! `<node>.sluice.internal`: webpki checks a server's certificate against a DNS name, so
//! the client side of a link asks for exactly the node it meant to reach, and the
//! accepting side reads the same SAN to learn who connected. The `.internal` top-level
//! domain is reserved for private use, so the name can never collide with a public one.

use x509_parser::extensions::GeneralName;

/// Suffix appended to a node name to form the DNS name in its certificate.
pub const NODE_DNS_SUFFIX: &str = ".sluice.internal";

/// Longest node name: one DNS label.
pub const MAX_NODE_NAME_LEN: usize = 63;

/// Checks that `name` can be a node name: 1 to 63 ASCII letters, digits and '-', not
/// starting or ending with '-' (one DNS label, so the derived name is always valid and a
/// name can never smuggle in a second label).
pub fn check_node_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NODE_NAME_LEN {
        return Err(format!(
            "node name {name:?} must be 1 to {MAX_NODE_NAME_LEN} characters"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(format!(
            "node name {name:?} contains {c:?}; use ASCII letters, digits and '-'"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!("node name {name:?} must not start or end with '-'"));
    }
    Ok(())
}

/// The DNS name a node's certificate carries, e.g. `edge-1.sluice.internal`.
pub fn node_dns_name(name: &str) -> String {
    format!("{name}{NODE_DNS_SUFFIX}")
}

/// The node name a certificate (DER) was issued for: the first DNS SAN that ends in
/// [`NODE_DNS_SUFFIX`] and leaves a valid node name. `None` for anything else; the
/// caller has already verified the chain, so this only reads, it does not trust.
pub fn node_name_from_cert(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        GeneralName::DNSName(dns) => {
            let name = strip_suffix_ignore_case(dns, NODE_DNS_SUFFIX)?;
            check_node_name(name).ok()?;
            Some(name.to_owned())
        }
        _ => None,
    })
}

/// DNS names compare case-insensitively, and webpki matched this one that way.
fn strip_suffix_ignore_case<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    let tail = s.get(cut..)?;
    tail.eq_ignore_ascii_case(suffix).then(|| s.get(..cut))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_dns_label() {
        for ok in [
            "a",
            "edge-1",
            "Node-7",
            &"x".repeat(63),
            "node-0123456789ab",
        ] {
            assert!(check_node_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            &"x".repeat(64),
            "-a",
            "a-",
            "a.b",
            "a_b",
            "a b",
            "é",
            "a\0",
        ] {
            assert!(check_node_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn suffix_strips_case_insensitively() {
        assert_eq!(
            strip_suffix_ignore_case("a.SLUICE.internal", NODE_DNS_SUFFIX),
            Some("a")
        );
        assert_eq!(
            strip_suffix_ignore_case("a.example.com", NODE_DNS_SUFFIX),
            None
        );
        assert_eq!(strip_suffix_ignore_case("internal", NODE_DNS_SUFFIX), None);
        assert_eq!(node_dns_name("edge-1"), "edge-1.sluice.internal");
    }
}
