use super::*;
use crate::config::AuthSection;
use clap::Parser;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(room: &str, publish: bool, subscribe: bool) -> Claims {
    Claims {
        sub: Some("alice".into()),
        room: room.into(),
        publish,
        subscribe,
        exp: now() + 600,
        nbf: None,
    }
}

/// One Ed25519 key pair for the whole module (generation is cheap, but once is enough).
fn ed_pair() -> &'static (String, String) {
    static PAIR: OnceLock<(String, String)> = OnceLock::new();
    PAIR.get_or_init(|| generate_ed25519_keypair().expect("key pair"))
}

fn hs256_auth() -> Authenticator {
    Authenticator::from_config(&AuthSection {
        hs256_secrets: vec![SECRET.into()],
        eddsa_public_keys: vec![],
    })
    .expect("auth config")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn hs256(c: &Claims) -> String {
    mint(&MintKey::Hs256(SECRET.as_bytes().to_vec()), c).expect("mint")
}

#[test]
fn hs256_round_trip() {
    let auth = hs256_auth();
    assert!(!auth.is_open());
    let c = claims("demo", true, false);
    let got = auth
        .authorize(Some(&bearer(&hs256(&c))), "demo", Action::Publish)
        .expect("authorized");
    assert_eq!(got, Some(c));
}

#[test]
fn eddsa_round_trip() {
    let (private, public) = ed_pair();
    assert!(private.contains("BEGIN PRIVATE KEY"), "{private}");
    assert!(public.contains("BEGIN PUBLIC KEY"), "{public}");
    // The public key given inline (a path works the same way; see the file test).
    let auth = Authenticator::from_config(&AuthSection {
        hs256_secrets: vec![],
        eddsa_public_keys: vec![public.clone()],
    })
    .unwrap();
    let c = claims("demo", false, true);
    let token = mint(&MintKey::EdDsa(private.clone().into_bytes()), &c).unwrap();
    assert_eq!(
        auth.authorize(Some(&bearer(&token)), "demo", Action::Subscribe)
            .unwrap(),
        Some(c)
    );
    // An HS256 token is refused by a node that only has EdDSA keys, and the reverse.
    let e = auth
        .authorize(
            Some(&bearer(&hs256(&claims("demo", true, true)))),
            "demo",
            Action::Publish,
        )
        .unwrap_err();
    assert!(matches!(e, AuthError::Invalid(_)), "{e}");
    let e = hs256_auth()
        .authorize(Some(&bearer(&token)), "demo", Action::Subscribe)
        .unwrap_err();
    assert!(matches!(e, AuthError::Invalid(_)), "{e}");
}

#[test]
fn wrong_key_is_invalid() {
    let auth = hs256_auth();
    let token = mint(
        &MintKey::Hs256(b"another-secret".to_vec()),
        &claims("demo", true, true),
    )
    .unwrap();
    let e = auth
        .authorize(Some(&bearer(&token)), "demo", Action::Publish)
        .unwrap_err();
    assert!(matches!(e, AuthError::Invalid(_)), "{e}");
    assert_eq!(e.status(), 401);

    // Another Ed25519 key than the configured one.
    let (other_private, _) = generate_ed25519_keypair().unwrap();
    let ed_auth = Authenticator::from_config(&AuthSection {
        hs256_secrets: vec![],
        eddsa_public_keys: vec![ed_pair().1.clone()],
    })
    .unwrap();
    let token = mint(
        &MintKey::EdDsa(other_private.into_bytes()),
        &claims("demo", true, true),
    )
    .unwrap();
    let e = ed_auth
        .authorize(Some(&bearer(&token)), "demo", Action::Publish)
        .unwrap_err();
    assert!(
        matches!(e, AuthError::Invalid(ref r) if r.contains("no configured key")),
        "{e}"
    );

    // A tampered payload (room changed) no longer verifies.
    let token = hs256(&claims("demo", true, true));
    let parts: Vec<&str> = token.split('.').collect();
    let forged_payload = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut c: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        c["room"] = "*".into();
        b64.encode(serde_json::to_vec(&c).unwrap())
    };
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    let e = auth
        .authorize(Some(&bearer(&forged)), "other", Action::Publish)
        .unwrap_err();
    assert!(matches!(e, AuthError::Invalid(_)), "{e}");
}

#[test]
fn any_of_several_keys_verifies() {
    let auth = Authenticator::from_config(&AuthSection {
        hs256_secrets: vec!["old-secret".into(), SECRET.into()],
        eddsa_public_keys: vec![ed_pair().1.clone()],
    })
    .unwrap();
    for key in [
        MintKey::Hs256(b"old-secret".to_vec()),
        MintKey::Hs256(SECRET.as_bytes().to_vec()),
        MintKey::EdDsa(ed_pair().0.clone().into_bytes()),
    ] {
        let token = mint(&key, &claims("r", true, true)).unwrap();
        assert!(
            auth.authorize(Some(&bearer(&token)), "r", Action::Publish)
                .is_ok(),
            "{key:?}"
        );
    }
}

#[test]
fn expired_or_not_yet_valid_is_invalid() {
    let auth = hs256_auth();
    // Past the leeway.
    let mut c = claims("demo", true, true);
    c.exp = now() - 2 * authenticator::LEEWAY_SECS;
    let e = auth
        .authorize(Some(&bearer(&hs256(&c))), "demo", Action::Publish)
        .unwrap_err();
    assert!(
        matches!(e, AuthError::Invalid(ref r) if r == "expired"),
        "{e}"
    );

    let mut c = claims("demo", true, true);
    c.nbf = Some(now() + 10 * authenticator::LEEWAY_SECS);
    let e = auth
        .authorize(Some(&bearer(&hs256(&c))), "demo", Action::Publish)
        .unwrap_err();
    assert!(
        matches!(e, AuthError::Invalid(ref r) if r.contains("nbf")),
        "{e}"
    );

    // nbf in the past is fine.
    c.nbf = Some(now() - 5);
    assert!(
        auth.authorize(Some(&bearer(&hs256(&c))), "demo", Action::Publish)
            .is_ok()
    );
}

#[test]
fn room_mismatch_or_missing_grant_is_forbidden() {
    let auth = hs256_auth();
    let cases = [
        (claims("other", true, true), "demo", Action::Publish),
        (claims("demo", false, true), "demo", Action::Publish),
        (claims("demo", true, false), "demo", Action::Subscribe),
        (claims("*", false, false), "demo", Action::Subscribe),
        // Rooms are compared exactly.
        (claims("Demo", true, true), "demo", Action::Publish),
    ];
    for (c, room, action) in cases {
        let e = auth
            .authorize(Some(&bearer(&hs256(&c))), room, action)
            .unwrap_err();
        assert!(
            matches!(e, AuthError::Forbidden(_)),
            "{c:?} {action:?}: {e}"
        );
        assert_eq!(e.status(), 403);
    }
}

#[test]
fn star_room_is_any_room() {
    let auth = hs256_auth();
    let token = bearer(&hs256(&claims("*", true, true)));
    for room in ["demo", "other", "*"] {
        for action in [Action::Publish, Action::Subscribe] {
            assert!(
                auth.authorize(Some(&token), room, action).is_ok(),
                "{room} {action:?}"
            );
        }
    }
}

#[test]
fn missing_or_malformed_headers_are_401_and_never_panic() {
    let auth = hs256_auth();
    let e = auth.authorize(None, "demo", Action::Publish).unwrap_err();
    assert!(matches!(e, AuthError::Missing));
    assert_eq!(e.status(), 401);
    let good = hs256(&claims("demo", true, true));
    let bad_headers = [
        "".to_owned(),
        "   ".to_owned(),
        "Bearer".to_owned(),
        "Bearer   ".to_owned(),
        "Basic dXNlcjpwYXNz".to_owned(),
        format!("Token {good}"),
        format!("Bearer{good}"),
        "Bearer garbage".to_owned(),
        "Bearer a.b".to_owned(),
        "Bearer a.b.c".to_owned(),
        "Bearer ...".to_owned(),
        "Bearer é.ü.ñ".to_owned(),
        // alg "none", unsigned.
        "Bearer eyJhbGciOiJub25lIn0.eyJyb29tIjoiZGVtbyJ9.".to_owned(),
        // A well-signed token whose claims lack `room`.
        format!("Bearer {}", {
            let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
            let body = serde_json::json!({ "exp": now() + 60, "publish": true });
            jsonwebtoken::encode(&jsonwebtoken::Header::default(), &body, &key).unwrap()
        }),
        // HS384 is not accepted even with the right secret.
        format!("Bearer {}", {
            let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
            let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS384);
            jsonwebtoken::encode(&header, &claims("demo", true, true), &key).unwrap()
        }),
        format!("Bearer {good} trailing"),
    ];
    for h in &bad_headers {
        let e = auth
            .authorize(Some(h), "demo", Action::Publish)
            .unwrap_err();
        assert_eq!(e.status(), 401, "{h:?}: {e}");
    }
    // The scheme is case-insensitive and surrounding blanks are tolerated.
    for h in [format!("bearer {good}"), format!("  BEARER   {good}  ")] {
        assert!(
            auth.authorize(Some(&h), "demo", Action::Publish).is_ok(),
            "{h:?}"
        );
    }
}

#[test]
fn open_mode_authorizes_everything() {
    let auth = Authenticator::from_config(&AuthSection::default()).unwrap();
    assert!(auth.is_open());
    assert!(Authenticator::open().is_open());
    for header in [None, Some("garbage"), Some("Bearer x.y.z")] {
        for action in [Action::Publish, Action::Subscribe] {
            assert_eq!(auth.authorize(header, "any", action).unwrap(), None);
        }
    }
}

/// A file in the temp dir, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> Self {
        let path =
            std::env::temp_dir().join(format!("sluice-auth-test-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }
    fn path(&self) -> String {
        self.0.to_str().unwrap().to_owned()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn keys_are_read_from_files() {
    let secret = TempFile::new("secret", format!("{SECRET}\n").as_bytes());
    let public = TempFile::new("ed.pub", ed_pair().1.as_bytes());
    let auth = Authenticator::from_config(&AuthSection {
        hs256_secrets: vec![format!("@{}", secret.path())],
        eddsa_public_keys: vec![public.path()],
    })
    .unwrap();
    // The trailing newline was stripped: the inline secret's tokens verify.
    let token = hs256(&claims("r", true, false));
    assert!(
        auth.authorize(Some(&bearer(&token)), "r", Action::Publish)
            .is_ok()
    );
    let token = mint(
        &MintKey::EdDsa(ed_pair().0.clone().into_bytes()),
        &claims("r", true, false),
    )
    .unwrap();
    assert!(
        auth.authorize(Some(&bearer(&token)), "r", Action::Publish)
            .is_ok()
    );
}

#[test]
fn bad_key_configuration_names_the_key() {
    let err = |section: AuthSection| {
        Authenticator::from_config(&section)
            .unwrap_err()
            .to_string()
    };
    let e = err(AuthSection {
        hs256_secrets: vec!["ok".into(), "@/nonexistent/secret".into()],
        eddsa_public_keys: vec![],
    });
    assert!(
        e.starts_with("auth.hs256_secrets[1]: cannot read /nonexistent/secret"),
        "{e}"
    );
    let e = err(AuthSection {
        hs256_secrets: vec![],
        eddsa_public_keys: vec!["/nonexistent/key.pub".into()],
    });
    assert!(
        e.starts_with("auth.eddsa_public_keys[0]: cannot read"),
        "{e}"
    );
    // A private key where a public one belongs, and a non-PEM file.
    let e = err(AuthSection {
        hs256_secrets: vec![],
        eddsa_public_keys: vec![ed_pair().0.clone()],
    });
    assert!(
        e.starts_with("auth.eddsa_public_keys[0]: not an Ed25519 public key"),
        "{e}"
    );
    let junk = TempFile::new("junk.pub", b"not a key\n");
    let e = err(AuthSection {
        hs256_secrets: vec![],
        eddsa_public_keys: vec![junk.path()],
    });
    assert!(
        e.starts_with("auth.eddsa_public_keys[0]: not an Ed25519 public key"),
        "{e}"
    );
    let empty = TempFile::new("empty.secret", b"\n");
    let e = err(AuthSection {
        hs256_secrets: vec![format!("@{}", empty.path())],
        eddsa_public_keys: vec![],
    });
    assert!(e.contains("empty secret"), "{e}");
}

#[test]
fn minting_refuses_bad_keys() {
    let c = claims("r", true, true);
    assert!(mint(&MintKey::Hs256(Vec::new()), &c).is_err());
    assert!(mint(&MintKey::EdDsa(b"not pem".to_vec()), &c).is_err());
    assert!(mint(&MintKey::EdDsa(ed_pair().1.clone().into_bytes()), &c).is_err());
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let key = MintKey::Hs256(b"hunter2".to_vec());
    assert!(!format!("{key:?}").contains("hunter2"));
    let auth = Authenticator::from_config(&AuthSection {
        hs256_secrets: vec!["hunter2".into()],
        eddsa_public_keys: vec![],
    })
    .unwrap();
    assert!(!format!("{auth:?}").contains("hunter2"));
}

#[derive(Debug, Parser)]
struct TokenCli {
    #[command(flatten)]
    args: TokenArgs,
}

fn token_args(flags: &[&str]) -> Result<TokenArgs, clap::Error> {
    TokenCli::try_parse_from(std::iter::once("sluice-token").chain(flags.iter().copied()))
        .map(|c| c.args)
}

#[test]
fn token_command_mints_tokens_the_node_accepts() {
    use clap::CommandFactory;
    TokenCli::command().debug_assert();

    let args = token_args(&[
        "--hs256-secret",
        SECRET,
        "--room",
        "demo",
        "--publish",
        "--ttl",
        "120",
        "--sub",
        "obs",
    ])
    .unwrap();
    let token = run_token_command(&args).unwrap();
    let got = hs256_auth()
        .authorize(Some(&bearer(&token)), "demo", Action::Publish)
        .unwrap()
        .unwrap();
    assert_eq!(got.sub.as_deref(), Some("obs"));
    assert!(got.publish && !got.subscribe);
    assert!(
        got.exp >= now() + 119 && got.exp <= now() + 121,
        "{}",
        got.exp
    );

    // EdDSA with a generated key pair, end to end through files.
    let dir = std::env::temp_dir().join(format!("sluice-token-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let private = dir.join("issuer.key");
    let private_s = private.to_str().unwrap();
    let out =
        run_token_command(&token_args(&["--generate-eddsa-key", private_s]).unwrap()).unwrap();
    let public = format!("{private_s}.pub");
    assert!(out.contains(&public), "{out}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "private key readable by others: {mode:o}");
    }
    // Never overwrites a key.
    assert!(run_token_command(&token_args(&["--generate-eddsa-key", private_s]).unwrap()).is_err());
    let token = run_token_command(
        &token_args(&["--eddsa-key", private_s, "--room", "*", "--subscribe"]).unwrap(),
    )
    .unwrap();
    let auth = Authenticator::from_config(&AuthSection {
        hs256_secrets: vec![],
        eddsa_public_keys: vec![public],
    })
    .unwrap();
    assert!(
        auth.authorize(Some(&bearer(&token)), "any", Action::Subscribe)
            .is_ok()
    );
    assert!(matches!(
        auth.authorize(Some(&bearer(&token)), "any", Action::Publish),
        Err(AuthError::Forbidden(_))
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn token_command_refuses_incomplete_requests() {
    // No key, two keys, no room: clap says so.
    assert!(token_args(&["--room", "r", "--publish"]).is_err());
    assert!(
        token_args(&[
            "--hs256-secret",
            "s",
            "--eddsa-key",
            "k",
            "--room",
            "r",
            "--publish"
        ])
        .is_err()
    );
    assert!(token_args(&["--hs256-secret", "s", "--publish"]).is_err());
    assert!(token_args(&["--generate-eddsa-key", "k", "--room", "r"]).is_err());
    // A token that grants nothing, or lives no time.
    let e = run_token_command(&token_args(&["--hs256-secret", "s", "--room", "r"]).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("--publish"), "{e}");
    let e = run_token_command(
        &token_args(&[
            "--hs256-secret",
            "s",
            "--room",
            "r",
            "--publish",
            "--ttl",
            "0",
        ])
        .unwrap(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("--ttl"), "{e}");
    let e = run_token_command(
        &token_args(&[
            "--eddsa-key",
            "/nonexistent.key",
            "--room",
            "r",
            "--publish",
        ])
        .unwrap(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("/nonexistent.key"), "{e}");
}
