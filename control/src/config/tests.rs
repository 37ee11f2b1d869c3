use super::*;
use crate::placement::{PlacementSection, Weights};
use clap::Parser;
use std::path::PathBuf;

/// `sluice node` as main wires it: the flags flattened into a command.
#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: NodeArgs,
}

fn args(flags: &[&str]) -> NodeArgs {
    Cli::try_parse_from(std::iter::once("sluice").chain(flags.iter().copied()))
        .expect("flags parse")
        .args
}

/// A file in the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "sluice-config-test-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).expect("temp file written");
        Self(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().expect("temp path is UTF-8")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Every key set, none to its default.
const FULL: &str = r#"
[node]
id = "edge-fra-1"
region = "eu-central"

[http]
listen = "0.0.0.0:9090"
cors_origins = ["https://app.example.com", "http://localhost:3000"]
public_url = "https://fra1.example.com/sfu"

[media]
bind = "0.0.0.0:40000"
announce = ["203.0.113.7", "198.51.100.2"]
workers = 4
pin_cores = true
driver = "mmsg"
socket_buffer = 8388608

[auth]
hs256_secrets = ["first-secret", "@/etc/sluice/hs256"]
eddsa_public_keys = ["/etc/sluice/issuer.pub"]

[limits]
max_sessions = 250
handshake_rate = 500
consent_timeout_secs = 20
dtls_timeout_secs = 5

[log]
format = "json"
level = "debug,sluice_control=trace"

[cluster]
listen = "0.0.0.0:7000"
seeds = ["198.51.100.2:7000"]
ca_cert = "/etc/sluice/ca.pem"
cert = "/etc/sluice/edge-fra-1.pem"
key = "/etc/sluice/edge-fra-1.key"
congestion = "cubic"
dial = { "198.51.100.2:7000" = "10.0.0.2:7000" }

[placement]
redirect = false
weights = { proximity = 60, load = 20, reliability = 10, cost = 10 }
margin = 100
region_cost = { ap = 300 }
rtt_ms = { eu = { us = 80 } }

[drain]
deadline_secs = 30
"#;

fn full_expected() -> NodeConfig {
    NodeConfig {
        node: NodeSection {
            id: Some("edge-fra-1".into()),
            region: "eu-central".into(),
        },
        http: HttpSection {
            listen: "0.0.0.0:9090".parse().unwrap(),
            cors_origins: vec![
                "https://app.example.com".into(),
                "http://localhost:3000".into(),
            ],
            public_url: Some("https://fra1.example.com/sfu".into()),
        },
        media: MediaSection {
            bind: "0.0.0.0:40000".parse().unwrap(),
            announce: vec![
                "203.0.113.7".parse().unwrap(),
                "198.51.100.2".parse().unwrap(),
            ],
            workers: 4,
            pin_cores: true,
            driver: Driver::Mmsg,
            socket_buffer: 8 << 20,
        },
        auth: AuthSection {
            hs256_secrets: vec!["first-secret".into(), "@/etc/sluice/hs256".into()],
            eddsa_public_keys: vec!["/etc/sluice/issuer.pub".into()],
        },
        limits: LimitsSection {
            max_sessions: 250,
            handshake_rate: 500,
            consent_timeout_secs: 20,
            dtls_timeout_secs: 5,
        },
        log: LogSection {
            format: LogFormat::Json,
            level: "debug,sluice_control=trace".into(),
        },
        cluster: ClusterSection {
            listen: Some("0.0.0.0:7000".parse().unwrap()),
            seeds: vec!["198.51.100.2:7000".parse().unwrap()],
            ca_cert: Some("/etc/sluice/ca.pem".into()),
            cert: Some("/etc/sluice/edge-fra-1.pem".into()),
            key: Some("/etc/sluice/edge-fra-1.key".into()),
            congestion: LinkCongestion::Cubic,
            dial: [(
                "198.51.100.2:7000".parse().unwrap(),
                "10.0.0.2:7000".parse().unwrap(),
            )]
            .into(),
        },
        placement: PlacementSection {
            redirect: false,
            weights: Weights {
                proximity: 60,
                load: 20,
                reliability: 10,
                cost: 10,
            },
            margin: 100,
            region_cost: [("ap".to_owned(), 300)].into(),
            rtt_ms: [("eu".to_owned(), [("us".to_owned(), 80)].into())].into(),
        },
        drain: DrainSection { deadline_secs: 30 },
    }
}

#[test]
fn no_file_no_flags_is_local_defaults() {
    let c = NodeConfig::load(&NodeArgs::default()).expect("defaults load");
    assert_eq!(
        c.http.listen,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.http.cors_origins, ["*"]);
    assert_eq!(c.http.public_url, None);
    assert_eq!(
        c.media.bind,
        "127.0.0.1:50000".parse::<SocketAddr>().unwrap()
    );
    assert!(c.media.bind.ip().is_loopback());
    assert!(c.media.announce.is_empty());
    assert_eq!(c.media.workers, 0);
    assert_eq!(c.media.driver, Driver::Auto);
    assert_eq!(c.media.socket_buffer, DEFAULT_SOCKET_BUFFER);
    assert!(c.auth.is_empty());
    assert_eq!(c.limits, LimitsSection::default());
    assert_eq!(c.limits.max_sessions, 1000);
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.log.level, "info,dtls=error");
    assert_eq!(c.node.region, "local");
    // A random id is chosen, different per load.
    let id = c.node.id.expect("load fills in an id");
    assert!(id.starts_with("node-"), "{id}");
    let other = NodeConfig::load(&NodeArgs::default()).unwrap().node.id;
    assert_ne!(Some(id), other);
    // An empty file is the same as none.
    assert_eq!(NodeConfig::from_toml("").unwrap(), NodeConfig::default());
}

#[test]
fn full_file_round_trips() {
    let file = TempFile::new(FULL);
    let loaded = NodeConfig::load(&args(&["--config", file.path()])).expect("full file loads");
    assert_eq!(loaded, full_expected());
    // Written back out and read again, nothing changes.
    let text = toml::to_string(&loaded).expect("serializes");
    assert_eq!(NodeConfig::from_toml(&text).unwrap(), loaded);
}

#[test]
fn a_partial_section_keeps_the_other_defaults() {
    let c = NodeConfig::from_toml("[media]\nworkers = 2\n").unwrap();
    assert_eq!(c.media.workers, 2);
    assert_eq!(c.media.bind, MediaSection::default().bind);
    assert_eq!(c.http, HttpSection::default());
}

fn parse_error(text: &str) -> String {
    match NodeConfig::from_toml(text) {
        Err(e @ ConfigError::Parse { .. }) => e.to_string(),
        other => panic!("expected a parse error for {text:?}, got {other:?}"),
    }
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    let e = parse_error("listen = \"127.0.0.1:1\"\n");
    assert!(e.contains("unknown field `listen`"), "{e}");
    let e = parse_error("[medai]\nworkers = 1\n");
    assert!(e.contains("`medai`"), "{e}");
    let e = parse_error("[media]\nbindd = \"127.0.0.1:1\"\n");
    assert!(e.contains("media.bindd"), "{e}");
    assert!(e.contains("line 2"), "{e}");
    let e = parse_error("[limits]\nmax_session = 5\n");
    assert!(e.contains("limits.max_session"), "{e}");
}

#[test]
fn badly_typed_values_are_errors_naming_the_key() {
    for (text, key) in [
        ("[media]\nworkers = -1\n", "media.workers"),
        ("[media]\nbind = \"localhost:x\"\n", "media.bind"),
        ("[http]\nlisten = \"127.0.0.1\"\n", "http.listen"),
        ("[media]\nannounce = [\"not-an-ip\"]\n", "media.announce"),
        ("[media]\ndriver = \"epoll\"\n", "media.driver"),
        ("[log]\nformat = \"xml\"\n", "log.format"),
        (
            "[limits]\nhandshake_rate = 5000000000\n",
            "limits.handshake_rate",
        ),
        ("[auth]\nhs256_secrets = \"one\"\n", "auth.hs256_secrets"),
        ("[media]\npin_cores = \"yes\"\n", "media.pin_cores"),
    ] {
        let e = parse_error(text);
        assert!(e.contains(key), "{text:?}: {e}");
    }
    // A file that does not exist names the file.
    let e = NodeConfig::load(&args(&["--config", "/nonexistent/sluice.toml"])).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/sluice.toml"), "{e}");
}

fn invalid_key(text: &str) -> String {
    let c = NodeConfig::from_toml(text).expect("parses");
    match c.validate() {
        Err(ConfigError::Invalid { key, .. }) => key,
        other => panic!("expected {text:?} to be invalid, got {other:?}"),
    }
}

#[test]
fn nonsense_values_are_refused_by_validate_naming_the_key() {
    for (text, key) in [
        ("[media]\nbind = \"0.0.0.0:50000\"\n", "media.announce"),
        ("[media]\nbind = \"[::]:50000\"\n", "media.announce"),
        (
            "[media]\nbind = \"0.0.0.0:5\"\nannounce = [\"0.0.0.0\"]\n",
            "media.announce[0]",
        ),
        (
            "[media]\nbind = \"0.0.0.0:5\"\nannounce = [\"10.0.0.1\", \"2001:db8::1\"]\n",
            "media.announce[1]",
        ),
        ("[media]\nbind = \"239.0.0.1:5\"\n", "media.bind"),
        ("[media]\nworkers = 100000\n", "media.workers"),
        ("[media]\nsocket_buffer = 0\n", "media.socket_buffer"),
        ("[limits]\nmax_sessions = 0\n", "limits.max_sessions"),
        ("[limits]\nhandshake_rate = 0\n", "limits.handshake_rate"),
        (
            "[limits]\nconsent_timeout_secs = 0\n",
            "limits.consent_timeout_secs",
        ),
        (
            "[limits]\ndtls_timeout_secs = 86400\n",
            "limits.dtls_timeout_secs",
        ),
        ("[http]\ncors_origins = []\n", "http.cors_origins"),
        (
            "[http]\ncors_origins = [\"*\", \"https://a.example\"]\n",
            "http.cors_origins",
        ),
        (
            "[http]\ncors_origins = [\"https://a.example/\"]\n",
            "http.cors_origins[0]",
        ),
        (
            "[http]\ncors_origins = [\"a.example\"]\n",
            "http.cors_origins[0]",
        ),
        (
            "[http]\npublic_url = \"fra1.example.com\"\n",
            "http.public_url",
        ),
        ("[http]\npublic_url = \"https://\"\n", "http.public_url"),
        ("[node]\nregion = \"\"\n", "node.region"),
        ("[node]\nid = \"edge 1\"\n", "node.id"),
        ("[auth]\nhs256_secrets = [\"\"]\n", "auth.hs256_secrets[0]"),
        (
            "[auth]\neddsa_public_keys = [\" \"]\n",
            "auth.eddsa_public_keys[0]",
        ),
        ("[log]\nlevel = \"loud=[\"\n", "log.level"),
        ("[cluster]\nseeds = [\"127.0.0.1:7000\"]\n", "cluster.seeds"),
        (
            "[cluster]\nlisten = \"127.0.0.1:7000\"\n",
            "cluster.ca_cert",
        ),
        (
            "[cluster]\nlisten = \"127.0.0.1:7000\"\nca_cert = \"a\"\ncert = \"b\"\nkey = \"c\"\nseeds = [\"0.0.0.0:7000\"]\n",
            "cluster.seeds[0]",
        ),
    ] {
        assert_eq!(invalid_key(text), key, "{text:?}");
    }
    // The message says what to do, not just what is wrong.
    let e = NodeConfig::from_toml("[media]\nbind = \"0.0.0.0:50000\"\n")
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("media.announce: required when media.bind is 0.0.0.0"),
        "{e}"
    );
    // load validates.
    let e = NodeConfig::load(&args(&["--media-bind", "0.0.0.0:1"])).unwrap_err();
    assert!(
        matches!(e, ConfigError::Invalid { ref key, .. } if key == "media.announce"),
        "{e}"
    );
}

#[test]
fn valid_variants_pass_validate() {
    for text in [
        "[media]\nbind = \"[::]:5\"\nannounce = [\"10.0.0.1\", \"2001:db8::1\"]\n",
        "[media]\nbind = \"192.0.2.1:5\"\n",
        "[http]\ncors_origins = [\"http://localhost:3000\"]\npublic_url = \"http://x\"\n",
        "[log]\nlevel = \"warn,sluice_control::http=debug\"\n",
    ] {
        let c = NodeConfig::from_toml(text).unwrap();
        assert!(c.validate().is_ok(), "{text:?}: {:?}", c.validate());
    }
}

#[test]
fn flags_override_the_file_and_the_file_overrides_defaults() {
    let file = TempFile::new(FULL);
    let c = NodeConfig::load(&args(&[
        "--config",
        file.path(),
        "--http-listen",
        "127.0.0.1:7000",
        "--media-bind",
        "[::]:41000",
        "--announce",
        "2001:db8::7",
        "--announce",
        "192.0.2.9",
        "--workers",
        "2",
        "--pin-cores=false",
        "--driver",
        "uring",
        "--region",
        "us-east",
        "--node-id",
        "edge-iad-2",
        "--hs256-secret",
        "flag-secret",
        "--eddsa-public-key",
        "/k.pub",
        "--max-sessions",
        "9",
        "--log-format",
        "text",
        "--log-level",
        "warn",
    ]))
    .expect("loads");
    let mut expected = full_expected();
    expected.http.listen = "127.0.0.1:7000".parse().unwrap();
    expected.media.bind = "[::]:41000".parse().unwrap();
    // A repeated flag replaces the file's list.
    expected.media.announce = vec!["2001:db8::7".parse().unwrap(), "192.0.2.9".parse().unwrap()];
    expected.media.workers = 2;
    expected.media.pin_cores = false;
    expected.media.driver = Driver::Uring;
    expected.node.region = "us-east".into();
    expected.node.id = Some("edge-iad-2".into());
    expected.auth.hs256_secrets = vec!["flag-secret".into()];
    expected.auth.eddsa_public_keys = vec!["/k.pub".into()];
    expected.limits.max_sessions = 9;
    expected.log.format = LogFormat::Text;
    expected.log.level = "warn".into();
    assert_eq!(c, expected);

    // Flags not given leave the file's values alone.
    let c = NodeConfig::load(&args(&["--config", file.path(), "--workers", "3"])).unwrap();
    assert_eq!(
        c,
        NodeConfig {
            media: MediaSection {
                workers: 3,
                ..full_expected().media
            },
            ..full_expected()
        }
    );

    // A bare --pin-cores turns pinning on over a default of off.
    let c = NodeConfig::load(&args(&["--pin-cores"])).unwrap();
    assert!(c.media.pin_cores);
    // Bad flag values are refused by clap.
    let bad = Cli::try_parse_from(["sluice", "--workers", "-1"]);
    assert!(bad.is_err());
    let bad = Cli::try_parse_from(["sluice", "--driver", "epoll"]);
    assert!(bad.is_err());
}

#[test]
fn flag_definitions_are_consistent() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let c = NodeConfig::from_toml("[auth]\nhs256_secrets = [\"hunter2-very-secret\"]\n").unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("1 redacted"), "{shown}");
}

/// Dotted paths of every leaf key (`media.bind`), from the serialized config.
fn key_paths(value: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    match value.as_object() {
        // A table of user-named keys (`placement.region_cost`) is one documented key.
        Some(map) if map.is_empty() && !prefix.is_empty() => out.push(prefix.to_owned()),
        Some(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                key_paths(v, &path, out);
            }
        }
        None => out.push(prefix.to_owned()),
    }
}

fn configuration_doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    std::fs::read_to_string(path).expect("docs/configuration.md exists")
}

#[test]
fn every_key_is_documented_and_every_documented_key_exists() {
    let doc = configuration_doc();
    // JSON keeps `None` fields (as null), so optional keys are listed too.
    let value = serde_json::to_value(NodeConfig::default()).unwrap();
    let mut keys = Vec::new();
    key_paths(&value, "", &mut keys);
    // The walk reached nested and optional keys.
    for k in ["media.bind", "node.id", "http.public_url"] {
        assert!(keys.iter().any(|x| x == k), "{k} not walked: {keys:?}");
    }
    // Each key has a table row of its own: "| `media.bind` | ...".
    let rows: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    for key in &keys {
        assert!(
            rows.contains(&key.as_str()),
            "docs/configuration.md has no row for `{key}`"
        );
    }
    for row in &rows {
        assert!(
            keys.iter().any(|k| k == row),
            "docs/configuration.md documents `{row}`, which is not a key of NodeConfig"
        );
    }
    // Each section heading too.
    for section in value.as_object().unwrap().keys() {
        assert!(
            doc.contains(&format!("[{section}]")),
            "no [{section}] section in the doc"
        );
    }
}

#[test]
fn the_documented_example_is_a_valid_config() {
    // The doc's full example (the first ```toml block) must parse and validate.
    let doc = configuration_doc();
    let start = doc.find("```toml\n").expect("a ```toml example") + "```toml\n".len();
    let len = doc[start..].find("```").expect("closed example");
    let c = NodeConfig::from_toml(&doc[start..start + len]).expect("example parses");
    c.validate().expect("example is valid");
}
