//! The HTTP interface's contract, without media: statuses, headers and reasons for what
//! clients get wrong, and the room listing. Media paths are covered by the client and
//! browser tests.

use sluice_control::config::NodeConfig;
use sluice_control::node::Node;

fn config(extra: &str) -> NodeConfig {
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[media]\nbind = \"127.0.0.1:0\"\nworkers = 1\n{extra}"
    );
    toml::from_str(&text).expect("test config parses")
}

/// A publisher offer as Chromium writes one (trimmed): Opus and VP8 with RTX, simulcast.
fn publish_offer() -> String {
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=extmap-allow-mixed",
        "a=msid-semantic: WMS",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 11:22:33:44:55:66:77:88:99:00:AA:BB:CC:DD:EE:FF:11:22:33:44:55:66:77:88:99:00:AA:BB:CC:DD:EE:FF",
        "a=setup:actpass",
        "a=mid:0",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=sendonly",
        "a=msid:- a1",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=ssrc:1111 cname:x",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 11:22:33:44:55:66:77:88:99:00:AA:BB:CC:DD:EE:FF:11:22:33:44:55:66:77:88:99:00:AA:BB:CC:DD:EE:FF",
        "a=setup:actpass",
        "a=mid:1",
        "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
        "a=sendonly",
        "a=msid:- v1",
        "a=rtcp-mux",
        "a=rtcp-rsize",
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 goog-remb",
        "a=rtcp-fb:96 transport-cc",
        "a=rtcp-fb:96 ccm fir",
        "a=rtcp-fb:96 nack",
        "a=rtcp-fb:96 nack pli",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "a=rid:q send",
        "a=rid:h send",
        "a=rid:f send",
        "a=simulcast:send q;h;f",
        "",
    ]
    .join("\r\n")
}

struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    fn new(node: &Node) -> Self {
        Self {
            base: node.base_url(),
            client: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, body: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/sdp")
            .body(body.to_owned());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request reaches the node")
    }
}

async fn status_and_reason(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test]
async fn whip_answers_with_location_and_publisher_id() {
    let node = Node::start(config("")).await.unwrap();
    let http = Http::new(&node);
    let resp = http.post("/whip/room1", &publish_offer(), None).await;
    assert_eq!(resp.status().as_u16(), 201);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "application/sdp");
    let location = h["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&http.base), "{location}");
    assert!(h.contains_key("x-publisher-id"));
    let answer = resp.text().await.unwrap();
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(answer.contains("a=setup:passive"), "{answer}");
    assert!(answer.contains("a=simulcast:recv q;h;f"), "{answer}");
    let port = node.media_addr().port().to_string();
    assert!(
        answer.contains(&port),
        "the answer announces the media port: {answer}"
    );

    // Trickle ICE is accepted (nothing to do for an ICE-lite node); a restart is not.
    let patch = |frag: &'static str| {
        http.client
            .patch(&location)
            .header("content-type", "application/trickle-ice-sdpfrag")
            .body(frag)
            .send()
    };
    assert_eq!(
        patch("a=ice-ufrag:abcd\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n")
            .await
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    assert_eq!(
        patch("a=ice-ufrag:zzzz\r\na=ice-pwd:zzzzzzzzzzzzzzzzzzzzzzzz\r\n")
            .await
            .unwrap()
            .status()
            .as_u16(),
        422
    );

    let del = http.client.delete(&location).send().await.unwrap();
    assert_eq!(del.status().as_u16(), 200);
    let again = http.client.delete(&location).send().await.unwrap();
    assert_eq!(again.status().as_u16(), 404);
    assert_eq!(node.peer_count(), 0);
    node.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_their_documented_status_and_the_node_keeps_serving() {
    let node = Node::start(config("")).await.unwrap();
    let http = Http::new(&node);
    let ok = http.post("/whip/r", &publish_offer(), None).await;
    assert_eq!(ok.status().as_u16(), 201);

    let (s, why) = status_and_reason(http.post("/whip/r", "this is not sdp", None).await).await;
    assert_eq!(s, 400, "{why}");
    assert_eq!(why.trim().lines().count(), 1, "one-line reason: {why:?}");

    let no_video_codec = publish_offer()
        .replace("a=rtpmap:96 VP8/90000", "a=rtpmap:96 XYZ/90000")
        .replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 ABC/8000");
    let (s, why) = status_and_reason(http.post("/whip/r", &no_video_codec, None).await).await;
    assert!(s == 406 || s == 422, "no codec in common: {s} {why}");

    let passive = publish_offer().replace("a=setup:actpass", "a=setup:passive");
    let (s, why) = status_and_reason(http.post("/whip/r", &passive, None).await).await;
    assert_eq!(s, 422, "{why}");

    let wrong_type = http
        .client
        .post(format!("{}/whip/r", http.base))
        .header("content-type", "text/plain")
        .body(publish_offer())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status().as_u16(), 415);

    // Nobody has connected yet, so the room has no publisher to watch.
    let (s, why) =
        status_and_reason(http.post("/whep/nowhere", &publish_offer(), None).await).await;
    assert_eq!(s, 404, "{why}");
    let (s, why) = status_and_reason(
        http.post("/whep/nowhere/0123456789abcdef", &publish_offer(), None)
            .await,
    )
    .await;
    assert_eq!(s, 404, "{why}");
    let list = http
        .client
        .get(format!("{}/rooms/nowhere", http.base))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status().as_u16(), 404);

    let ok = http.post("/whip/r", &publish_offer(), None).await;
    assert_eq!(ok.status().as_u16(), 201, "still serving");
    node.shutdown().await;
}

#[tokio::test]
async fn capacity_is_a_503_with_retry_after() {
    let node = Node::start(config("[limits]\nmax_sessions = 1\n"))
        .await
        .unwrap();
    let http = Http::new(&node);
    assert_eq!(
        http.post("/whip/r", &publish_offer(), None)
            .await
            .status()
            .as_u16(),
        201
    );
    let full = http.post("/whip/r", &publish_offer(), None).await;
    assert_eq!(full.status().as_u16(), 503);
    assert!(full.headers().contains_key("retry-after"));
    node.shutdown().await;
}

#[tokio::test]
async fn tokens_gate_publish_and_subscribe_per_room() {
    let node = Node::start(config("[auth]\nhs256_secrets = [\"s3cret\"]\n"))
        .await
        .unwrap();
    let http = Http::new(&node);
    let key = sluice_control::auth::MintKey::Hs256(b"s3cret".to_vec());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let mint = |room: &str, publish: bool, subscribe: bool| {
        sluice_control::auth::mint(
            &key,
            &sluice_control::auth::Claims {
                sub: None,
                room: room.into(),
                publish,
                subscribe,
                exp,
                nbf: None,
            },
        )
        .unwrap()
    };
    let (s, _) = status_and_reason(http.post("/whip/r", &publish_offer(), None).await).await;
    assert_eq!(s, 401, "no token");
    let (s, _) = status_and_reason(
        http.post("/whip/r", &publish_offer(), Some("garbage"))
            .await,
    )
    .await;
    assert_eq!(s, 401, "malformed token");
    let wrong_key = sluice_control::auth::mint(
        &sluice_control::auth::MintKey::Hs256(b"other".to_vec()),
        &sluice_control::auth::Claims {
            sub: None,
            room: "r".into(),
            publish: true,
            subscribe: true,
            exp,
            nbf: None,
        },
    )
    .unwrap();
    let (s, _) = status_and_reason(
        http.post("/whip/r", &publish_offer(), Some(&wrong_key))
            .await,
    )
    .await;
    assert_eq!(s, 401, "wrong key");
    let (s, _) = status_and_reason(
        http.post(
            "/whip/r",
            &publish_offer(),
            Some(&mint("other-room", true, true)),
        )
        .await,
    )
    .await;
    assert_eq!(s, 403, "other room");
    let (s, _) = status_and_reason(
        http.post("/whip/r", &publish_offer(), Some(&mint("r", false, true)))
            .await,
    )
    .await;
    assert_eq!(s, 403, "subscribe-only token cannot publish");
    let resp = http
        .post("/whip/r", &publish_offer(), Some(&mint("r", true, false)))
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    node.shutdown().await;
}

#[tokio::test]
async fn cors_preflight_allows_other_origins() {
    let node = Node::start(config("")).await.unwrap();
    let client = reqwest::Client::new();
    let resp = client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/whip/r", node.base_url()),
        )
        .header("origin", "https://example.org")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, authorization",
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let post = client
        .post(format!("{}/whip/r", node.base_url()))
        .header("origin", "https://example.org")
        .header("content-type", "application/sdp")
        .body(publish_offer())
        .send()
        .await
        .unwrap();
    let expose = post.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        expose.contains("location") && expose.contains("x-publisher-id"),
        "{expose}"
    );
    node.shutdown().await;
}
