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
null_forward = true

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
            null_forward: true,
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

/// The header every key table in docs/configuration.md has.
const TABLE_HEADER: [&str; 5] = ["Key", "Type", "Default", "Flag", "Effect"];

/// One key's row of a table in docs/configuration.md.
#[derive(Debug)]
struct DocRow {
    key: String,
    ty: String,
    default: String,
    flag: String,
    effect: String,
}

/// The cells of a Markdown table line; `\|` is a pipe inside a cell.
fn cells(line: &str) -> Vec<String> {
    let line = line.trim().trim_start_matches('|').trim_end_matches('|');
    line.replace("\\|", "\u{0}")
        .split('|')
        .map(|c| c.trim().replace('\u{0}', "|"))
        .collect()
}

/// Every row whose first cell is a backticked key ("| `media.bind` | ..."), checking
/// that its table has the standard header and that it has all five cells.
fn doc_rows(doc: &str) -> Result<Vec<DocRow>, String> {
    let mut rows = Vec::new();
    let mut header: Vec<String> = Vec::new();
    for line in doc.lines().filter(|l| l.starts_with('|')) {
        let c = cells(line);
        if !line.starts_with("| `") {
            // A header line, or the |---| line under it.
            if !c.iter().all(|x| x.chars().all(|ch| ch == '-' || ch == ':')) {
                header = c;
            }
            continue;
        }
        let key = c[0].trim_matches('`').to_owned();
        if header != TABLE_HEADER {
            return Err(format!(
                "the table of `{key}` has header {header:?}, not {TABLE_HEADER:?}"
            ));
        }
        let [_, ty, default, flag, effect] = c.as_slice() else {
            return Err(format!("`{key}`: {} cells, not 5: {line}", c.len()));
        };
        rows.push(DocRow {
            key,
            ty: ty.clone(),
            default: default.clone(),
            flag: flag.clone(),
            effect: effect.clone(),
        });
    }
    Ok(rows)
}

/// The value at a dotted key (`media.bind`) of a serialized config.
fn at<'a>(value: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    value
        .pointer(&format!("/{}", key.replace('.', "/")))
        .unwrap_or_else(|| panic!("{key} is not in the serialized config"))
}

/// The rule for a Default cell. It starts with either
/// - a backticked TOML literal (`` `4194304` (4 MiB) ``), which must equal the
///   serialized default (text after the literal explains it);
/// - `none`, for a key whose default is unset (`None`), followed by what unset means;
/// - `empty`, for an empty list or table.
fn check_default(key: &str, cell: &str, default: &serde_json::Value) -> Result<(), String> {
    if let Some(rest) = cell.strip_prefix('`') {
        let literal = rest
            .split('`')
            .next()
            .filter(|_| rest.contains('`'))
            .ok_or_else(|| format!("`{key}`: unclosed ` in default {cell:?}"))?;
        let parsed: toml::Table = toml::from_str(&format!("v = {literal}"))
            .map_err(|e| format!("`{key}`: default `{literal}` is not a TOML value: {e}"))?;
        let documented = serde_json::to_value(&parsed["v"]).map_err(|e| e.to_string())?;
        if &documented != default {
            return Err(format!(
                "`{key}`: the doc says the default is `{literal}`, the code says {default}"
            ));
        }
        Ok(())
    } else if cell.starts_with("none") {
        if default.is_null() {
            Ok(())
        } else {
            Err(format!(
                "`{key}`: the doc says none, the code's default is {default}"
            ))
        }
    } else if cell.starts_with("empty") {
        let empty = match default {
            serde_json::Value::Array(a) => a.is_empty(),
            serde_json::Value::Object(o) => o.is_empty(),
            serde_json::Value::String(s) => s.is_empty(),
            _ => false,
        };
        if empty {
            Ok(())
        } else {
            Err(format!(
                "`{key}`: the doc says empty, the code's default is {default}"
            ))
        }
    } else {
        Err(format!(
            "`{key}`: default {cell:?} must start with a `literal`, \"none\" or \"empty\""
        ))
    }
}

/// Unit words a key's name promises its Type cell will spell out.
const UNIT_SUFFIXES: [(&str, &str); 4] = [
    ("_secs", "seconds"),
    ("_ms", "milliseconds"),
    ("_bytes", "bytes"),
    ("_bps", "bits per second"),
];

/// The rule for a Type cell: not empty; a number says what it counts or measures
/// ("integer, seconds", "integer, sessions"); a key named for a unit names it in full.
fn check_type(key: &str, ty: &str, default: &serde_json::Value) -> Result<(), String> {
    if ty.is_empty() || ty == "—" {
        return Err(format!("`{key}`: no type"));
    }
    let counts = ty.strip_prefix("integer, ").unwrap_or_default();
    if default.is_number() && counts.is_empty() {
        return Err(format!(
            "`{key}`: type {ty:?} must read \"integer, <unit or what it counts>\""
        ));
    }
    for (suffix, unit) in UNIT_SUFFIXES {
        if key.ends_with(suffix) && !ty.contains(unit) {
            return Err(format!("`{key}`: type {ty:?} must name the unit, {unit}"));
        }
    }
    Ok(())
}

/// The rule for an Effect cell: at least a sentence.
fn check_effect(key: &str, effect: &str) -> Result<(), String> {
    if effect.split_whitespace().count() < 3 || !effect.ends_with('.') {
        return Err(format!(
            "`{key}`: effect {effect:?} must say in a sentence what the key does"
        ));
    }
    Ok(())
}

/// The serialized defaults and every leaf key in them. JSON keeps `None` fields (as
/// null), so optional keys are listed too.
fn default_keys() -> (serde_json::Value, Vec<String>) {
    let value = serde_json::to_value(NodeConfig::default()).unwrap();
    let mut keys = Vec::new();
    key_paths(&value, "", &mut keys);
    (value, keys)
}

#[test]
fn every_key_is_documented_and_every_documented_key_exists() {
    let doc = configuration_doc();
    let (value, keys) = default_keys();
    // The walk reached nested and optional keys.
    for k in [
        "media.bind",
        "node.id",
        "http.public_url",
        "placement.weights.cost",
    ] {
        assert!(keys.iter().any(|x| x == k), "{k} not walked: {keys:?}");
    }
    let rows = doc_rows(&doc).unwrap_or_else(|e| panic!("docs/configuration.md: {e}"));
    for key in &keys {
        let n = rows.iter().filter(|r| &r.key == key).count();
        assert_eq!(
            n, 1,
            "docs/configuration.md has {n} rows for `{key}`, not 1"
        );
    }
    for row in &rows {
        assert!(
            keys.contains(&row.key),
            "docs/configuration.md documents `{}`, which is not a key of NodeConfig",
            row.key
        );
    }
    // Each section heading too.
    for section in value.as_object().unwrap().keys() {
        assert!(
            doc.contains(&format!("## [{section}]")),
            "no [{section}] section in the doc"
        );
    }
}

#[test]
fn every_documented_default_type_and_effect_matches_the_code() {
    let doc = configuration_doc();
    let (value, _) = default_keys();
    let rows = doc_rows(&doc).unwrap_or_else(|e| panic!("docs/configuration.md: {e}"));
    let mut wrong = Vec::new();
    for row in &rows {
        let default = at(&value, &row.key);
        for check in [
            check_default(&row.key, &row.default, default),
            check_type(&row.key, &row.ty, default),
            check_effect(&row.key, &row.effect),
        ] {
            wrong.extend(check.err());
        }
    }
    assert!(
        wrong.is_empty(),
        "docs/configuration.md disagrees with NodeConfig::default():\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_row_checks_catch_drift() {
    use serde_json::json;
    // A default changed in the code but not in the doc.
    assert!(check_default("k", "`4194304` (4 MiB)", &json!(4194304)).is_ok());
    assert!(check_default("k", "`4194304` (4 MiB)", &json!(8388608)).is_err());
    assert!(check_default("k", "`\"local\"`", &json!("local")).is_ok());
    assert!(check_default("k", "`\"local\"`", &json!("global")).is_err());
    assert!(check_default("k", "`[\"*\"]`", &json!(["*"])).is_ok());
    assert!(check_default("k", "`[]`", &json!(["x"])).is_err());
    assert!(check_default("k", "`{}`", &json!({})).is_ok());
    assert!(check_default("k", "`true`", &json!(false)).is_err());
    // Words: none is None, empty is an empty collection, nothing else.
    assert!(check_default("k", "none: random", &json!(null)).is_ok());
    assert!(check_default("k", "none", &json!("x")).is_err());
    assert!(check_default("k", "`\"\"`", &json!(null)).is_err());
    assert!(check_default("k", "empty", &json!([])).is_ok());
    assert!(check_default("k", "empty", &json!([1])).is_err());
    assert!(check_default("k", "one per core", &json!(0)).is_err());
    assert!(check_default("k", "`0", &json!(0)).is_err());
    // Numbers carry units.
    assert!(check_type("a.deadline_secs", "integer, seconds", &json!(60)).is_ok());
    assert!(check_type("a.deadline_secs", "integer (s)", &json!(60)).is_err());
    assert!(check_type("a.deadline_secs", "integer, ms", &json!(60)).is_err());
    assert!(check_type("a.workers", "integer", &json!(0)).is_err());
    assert!(check_type("a.rtt_ms", "table of region = ms", &json!({})).is_err());
    assert!(check_type("a.name", "", &json!("x")).is_err());
    assert!(check_effect("k", "—").is_err());
    assert!(check_effect("k", "Pins workers to cores.").is_ok());
    // A table without the standard header, or a row short of a cell.
    let doc = "| key | type | default | flag | meaning |\n|---|---|---|---|---|\n| `a.b` | bool | `true` | — | Does it. |\n";
    assert!(doc_rows(doc).is_err());
    let doc = "| Key | Type | Default | Flag | Effect |\n|---|---|---|---|---|\n| `a.b` | bool | `true` | Does it. |\n";
    assert!(doc_rows(doc).is_err());
    let doc = "| Key | Type | Default | Flag | Effect |\n|---|---|---|---|---|\n| `a.b` | `\"x\" \\| \"y\"` | `true` | — | Does it. |\n";
    let rows = doc_rows(doc).unwrap();
    assert_eq!(rows[0].ty, "`\"x\" | \"y\"`");
}

/// `--name` of each flag a Flag cell lists (`` `--pin-cores[=BOOL]` (repeatable) ``).
fn documented_flags(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|f| f.strip_prefix("--"))
        .map(|f| f.split(['[', '=', ' ']).next().unwrap_or(f).to_owned())
        .collect()
}

#[test]
fn every_flag_is_documented_on_the_row_of_the_key_it_sets() {
    use clap::CommandFactory;
    let doc = configuration_doc();
    let rows = doc_rows(&doc).unwrap_or_else(|e| panic!("docs/configuration.md: {e}"));
    let cmd = Cli::command();
    // Each flag's help starts with the key it overrides ("media.bind: ...").
    let mut flags = Vec::new();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if ["config", "help", "version"].contains(&long) {
            continue;
        }
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let key = help.split(':').next().unwrap_or_default().to_owned();
        assert!(
            rows.iter().any(|r| r.key == key),
            "--{long}: its help {help:?} must start with the key it sets, then ':'"
        );
        flags.push((long.to_owned(), key));
    }
    assert!(flags.len() >= 10, "{flags:?}");
    for row in &rows {
        let listed = documented_flags(&row.flag);
        if listed.is_empty() {
            assert_eq!(row.flag, "—", "`{}`: flag cell {:?}", row.key, row.flag);
        }
        for flag in &listed {
            assert!(
                flags.iter().any(|(f, k)| f == flag && k == &row.key),
                "`{}` lists --{flag}, which is not a flag setting it",
                row.key
            );
        }
    }
    for (flag, key) in &flags {
        let row = rows.iter().find(|r| &r.key == key).unwrap();
        assert!(
            documented_flags(&row.flag).contains(flag),
            "--{flag} sets `{key}`, whose row does not list it"
        );
    }
}

/// The doc's full example: the first ```toml block.
fn documented_example(doc: &str) -> &str {
    let start = doc.find("```toml\n").expect("a ```toml example") + "```toml\n".len();
    let len = doc[start..].find("```").expect("closed example");
    &doc[start..start + len]
}

#[test]
fn the_documented_example_sets_every_key_away_from_its_default() {
    let doc = configuration_doc();
    let (defaults, keys) = default_keys();
    let example = NodeConfig::from_toml(documented_example(&doc)).expect("example parses");
    let example = serde_json::to_value(example).unwrap();
    let at_default: Vec<&String> = keys
        .iter()
        .filter(|k| at(&example, k) == at(&defaults, k))
        .collect();
    assert!(
        at_default.is_empty(),
        "the example in docs/configuration.md leaves these keys at their defaults: {at_default:?}"
    );
}

#[test]
fn the_documented_example_is_a_valid_config() {
    // The doc's full example (the first ```toml block) must parse and validate.
    let doc = configuration_doc();
    let c = NodeConfig::from_toml(documented_example(&doc)).expect("example parses");
    c.validate().expect("example is valid");
}
