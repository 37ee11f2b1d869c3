use super::{ConfigError, NodeConfig};
use std::net::IpAddr;

/// More workers than this is a typo, not a machine.
const MAX_WORKERS: usize = 1024;
const MIN_SOCKET_BUFFER: usize = 4096;
const MAX_SOCKET_BUFFER: usize = 1 << 30;
const MAX_NAME_LEN: usize = 64;
/// Longer than an hour is a typo (and would keep dead sessions for as long).
const MAX_TIMEOUT_SECS: u64 = 3600;

impl NodeConfig {
    /// Checks what the types cannot: ranges, names, and keys that only make sense
    /// together. The error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(id) = &self.node.id {
            check_name("node.id", id)?;
        }
        check_name("node.region", &self.node.region)?;
        self.validate_http()?;
        self.validate_media()?;
        self.validate_auth()?;
        self.validate_limits()?;
        self.validate_cluster()?;
        self.validate_placement()?;
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| ConfigError::invalid("log.level", format!("not a tracing filter: {e}")))?;
        Ok(())
    }

    fn validate_http(&self) -> Result<(), ConfigError> {
        let origins = &self.http.cors_origins;
        if origins.is_empty() {
            return Err(ConfigError::invalid(
                "http.cors_origins",
                "empty; use [\"*\"] to allow any origin, or list the origins",
            ));
        }
        if origins.len() > 1 && origins.iter().any(|o| o == "*") {
            return Err(ConfigError::invalid(
                "http.cors_origins",
                "\"*\" allows any origin and must stand alone",
            ));
        }
        for (i, origin) in origins.iter().enumerate() {
            if origin != "*" {
                check_origin(origin)
                    .map_err(|r| ConfigError::invalid(format!("http.cors_origins[{i}]"), r))?;
            }
        }
        if let Some(url) = &self.http.public_url {
            check_http_url(url).map_err(|r| ConfigError::invalid("http.public_url", r))?;
        }
        Ok(())
    }

    fn validate_media(&self) -> Result<(), ConfigError> {
        let m = &self.media;
        if m.bind.ip().is_multicast() {
            return Err(ConfigError::invalid(
                "media.bind",
                format!("{} is a multicast address", m.bind.ip()),
            ));
        }
        if m.bind.ip().is_unspecified() && m.announce.is_empty() {
            return Err(ConfigError::invalid(
                "media.announce",
                format!(
                    "required when media.bind is {} (clients need an address they can reach, \
                     e.g. announce = [\"203.0.113.7\"])",
                    m.bind.ip()
                ),
            ));
        }
        for (i, ip) in m.announce.iter().enumerate() {
            let key = format!("media.announce[{i}]");
            if ip.is_unspecified() || ip.is_multicast() {
                return Err(ConfigError::invalid(
                    key,
                    format!("{ip} is not an address clients can send to"),
                ));
            }
            // An IPv6 socket also serves IPv4 (mapped); an IPv4 one never serves IPv6.
            if ip.is_ipv6() && matches!(m.bind.ip(), IpAddr::V4(_)) {
                return Err(ConfigError::invalid(
                    key,
                    format!("{ip} is IPv6 but media.bind ({}) is IPv4", m.bind),
                ));
            }
        }
        if m.workers > MAX_WORKERS {
            return Err(ConfigError::invalid(
                "media.workers",
                format!(
                    "{} is more than {MAX_WORKERS}; 0 means one per core",
                    m.workers
                ),
            ));
        }
        if !(MIN_SOCKET_BUFFER..=MAX_SOCKET_BUFFER).contains(&m.socket_buffer) {
            return Err(ConfigError::invalid(
                "media.socket_buffer",
                format!(
                    "{} bytes is outside {MIN_SOCKET_BUFFER}..={MAX_SOCKET_BUFFER}",
                    m.socket_buffer
                ),
            ));
        }
        Ok(())
    }

    /// Only the shape; reading key files and parsing PEM is `Authenticator::from_config`.
    fn validate_auth(&self) -> Result<(), ConfigError> {
        for (i, s) in self.auth.hs256_secrets.iter().enumerate() {
            if s.is_empty() || s == "@" {
                return Err(ConfigError::invalid(
                    format!("auth.hs256_secrets[{i}]"),
                    "empty secret",
                ));
            }
        }
        for (i, k) in self.auth.eddsa_public_keys.iter().enumerate() {
            if k.trim().is_empty() {
                return Err(ConfigError::invalid(
                    format!("auth.eddsa_public_keys[{i}]"),
                    "empty path",
                ));
            }
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        if l.max_sessions == 0 {
            return Err(ConfigError::invalid(
                "limits.max_sessions",
                "must be at least 1",
            ));
        }
        if l.handshake_rate == 0 {
            return Err(ConfigError::invalid(
                "limits.handshake_rate",
                "must be at least 1 (0 would refuse every new client)",
            ));
        }
        for (key, secs) in [
            ("limits.consent_timeout_secs", l.consent_timeout_secs),
            ("limits.dtls_timeout_secs", l.dtls_timeout_secs),
        ] {
            if !(1..=MAX_TIMEOUT_SECS).contains(&secs) {
                return Err(ConfigError::invalid(
                    key,
                    format!("{secs} s is outside 1..={MAX_TIMEOUT_SECS}"),
                ));
            }
        }
        Ok(())
    }
}

/// Ids and regions appear in URLs, metrics labels and logs: keep them plain.
fn check_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(ConfigError::invalid(
            key,
            format!("must be 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(ConfigError::invalid(
            key,
            format!("{name:?} contains {c:?}; use letters, digits, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

/// `http://host[:port]...` or `https://...`, nothing blank after the scheme.
fn check_http_url(url: &str) -> Result<&str, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} must start with http:// or https://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?} has no host"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?} contains whitespace"));
    }
    Ok(rest)
}

/// Browsers send `Origin: scheme://host[:port]` with no path, so an entry with one (even a
/// trailing `/`) would never match.
fn check_origin(origin: &str) -> Result<(), String> {
    let host = check_http_url(origin)?;
    if host.contains('/') {
        return Err(format!(
            "{origin:?} has a path; an origin is scheme://host[:port] with no trailing '/'"
        ));
    }
    Ok(())
}

impl NodeConfig {
    fn validate_placement(&self) -> Result<(), ConfigError> {
        let p = &self.placement;
        let w = p.weights;
        let sum = [w.proximity, w.load, w.reliability, w.cost]
            .iter()
            .try_fold(0u32, |a, &b| a.checked_add(b));
        if !sum.is_some_and(|s| s > 0 && s <= 1_000_000) {
            return Err(ConfigError::invalid(
                "placement.weights",
                "weights must add up to between 1 and 1000000",
            ));
        }
        if p.margin > 1000 {
            return Err(ConfigError::invalid(
                "placement.margin",
                "scores run from 0 to 1000",
            ));
        }
        for (region, cost) in &p.region_cost {
            check_name("placement.region_cost", region)?;
            if *cost > 1000 {
                return Err(ConfigError::invalid(
                    format!("placement.region_cost.{region}"),
                    "costs run from 0 to 1000",
                ));
            }
        }
        for (a, row) in &p.rtt_ms {
            check_name("placement.rtt_ms", a)?;
            for b in row.keys() {
                check_name(&format!("placement.rtt_ms.{a}"), b)?;
            }
        }
        Ok(())
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let c = &self.cluster;
        let Some(listen) = c.listen else {
            if !c.seeds.is_empty() {
                return Err(ConfigError::invalid(
                    "cluster.seeds",
                    "set without cluster.listen; a node joins a cluster only with a link address",
                ));
            }
            return Ok(());
        };
        if listen.ip().is_multicast() {
            return Err(ConfigError::invalid(
                "cluster.listen",
                format!("{} is a multicast address", listen.ip()),
            ));
        }
        for (key, path) in [
            ("cluster.ca_cert", &c.ca_cert),
            ("cluster.cert", &c.cert),
            ("cluster.key", &c.key),
        ] {
            if path.is_none() {
                return Err(ConfigError::invalid(
                    key,
                    "required with cluster.listen (links use mutual TLS from the cluster CA; \
                     see `sluice ca`)",
                ));
            }
        }
        for (i, seed) in c.seeds.iter().enumerate() {
            if seed.ip().is_unspecified() || seed.port() == 0 {
                return Err(ConfigError::invalid(
                    format!("cluster.seeds[{i}]"),
                    format!("{seed} is not an address a node can be reached at"),
                ));
            }
        }
        Ok(())
    }
}
