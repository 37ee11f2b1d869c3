//! Janus VideoRoom as the server instead of a Sluice node: a small adapter over the
//! Janus HTTP API (docs/janus.md has the message sequence) that returns the same
//! [`Publisher`] and [`Subscriber`] as WHIP/WHEP, so load generators drive either.
//!
//! - Publisher: `join` as publisher, `configure` with our offer (`rid_order: "lmh"` when
//!   simulcasting: our rids are listed lowest first), Janus's answer from the event long
//!   poll, trickle `completed`, ICE (we control) and DTLS (we are the server), then wait
//!   for `webrtcup` so subscribers may join.
//! - Subscriber: `join` as subscriber to one feed, Janus's offer from the long poll, our
//!   receive-only answer with `start`, trickle `completed`, ICE (Janus controls and
//!   nominates) and DTLS (we are the client), `webrtcup`.
//!
//! One Janus session per [`JanusRoom`], one handle per peer connection. A background
//! task keeps exactly one long poll outstanding on the session, which both collects the
//! events and keeps the session alive (each poll counts as a keepalive) while the room
//! or any publisher or subscriber made from it lives; the last one to go destroys the
//! session.

use super::answer::Answer;
use super::hangup::Hangup;
use super::local_answer::AnswerSpec;
use super::publisher::PublishOffer;
use super::transport::{self, Roles};
use super::{ClientError, ClientOptions, Credentials, Publisher, Subscriber, random_string};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Events a long poll may return at once.
const MAX_EVENTS: usize = 10;
/// Janus holds a poll up to 30 s; give it room before calling the poll dead.
const POLL_TIMEOUT: Duration = Duration::from_secs(40);
/// Synchronous requests answer in milliseconds on a healthy server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Events nobody claimed (media, slowlink...) are kept up to this many, oldest dropped.
const MAX_UNCLAIMED: usize = 1024;
/// Publishers a created room takes (Janus's `publishers`; subscribers are unlimited).
pub const ROOM_PUBLISHERS: u32 = 1000;

/// A VideoRoom on a Janus server, and the Janus session that talks to it.
pub struct JanusRoom {
    api: Arc<Session>,
    room: u64,
    /// The handle room requests (create, destroy) go through.
    control: u64,
}

impl std::fmt::Debug for JanusRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JanusRoom")
            .field("session", &self.api.url)
            .field("room", &self.room)
            .finish_non_exhaustive()
    }
}

impl JanusRoom {
    /// Opens a session on the Janus API at `api_url` (e.g. `http://10.77.0.2:8088/janus`)
    /// and creates VideoRoom `room_id` (VP8, Opus, transport-wide CC, not permanent,
    /// [`ROOM_PUBLISHERS`] publishers); a room that already exists is used as it is.
    pub async fn create(api_url: &str, room_id: u64) -> Result<Self, ClientError> {
        let api = Session::open(api_url).await?;
        let control = api.attach().await?;
        let created = api
            .message(
                control,
                json!({
                    "request": "create",
                    "room": room_id,
                    "permanent": false,
                    "description": "sluice bench",
                    "publishers": ROOM_PUBLISHERS,
                    "videocodec": "vp8",
                    "audiocodec": "opus",
                    "fir_freq": 0,
                    "notify_joining": false,
                    "audiolevel_event": false,
                    "transport_wide_cc_ext": true,
                }),
                None,
            )
            .await;
        match created {
            Ok(_) => {}
            // 427: the room exists already.
            Err(ClientError::Janus { code: 427, .. }) => {}
            Err(e) => return Err(e),
        }
        Ok(Self {
            api,
            room: room_id,
            control,
        })
    }

    pub fn id(&self) -> u64 {
        self.room
    }

    /// Publishes audio and/or video (three rid layers with `opts.simulcast`). The
    /// publisher's `id` is its feed id, for [`JanusRoom::subscribe`]. Returns once Janus
    /// reported the peer connection up (`webrtcup`), so subscribers can join at once.
    /// (`opts.token` and `opts.region` mean nothing to Janus and are not sent.)
    pub async fn publish(&self, opts: &ClientOptions) -> Result<Publisher, ClientError> {
        let deadline = tokio::time::Instant::now() + opts.timeout;
        let handle = self.api.attach().await?;
        let leg = Leg {
            api: Arc::clone(&self.api),
            handle,
        };
        let joined = self
            .api
            .message(
                handle,
                json!({
                    "request": "join",
                    "ptype": "publisher",
                    "room": self.room,
                    "display": format!("sluice-{}", random_string(6)),
                }),
                None,
            )
            .await?;
        let feed = plugin_data(&joined)
            .and_then(|d| d.get("id"))
            .and_then(Value::as_u64)
            .ok_or_else(|| unexpected("joined without a publisher id", &joined))?;
        let offer = PublishOffer::new(opts).await?;
        let mut jsep = json!({"type": "offer", "sdp": offer.sdp});
        if opts.simulcast {
            jsep["rid_order"] = json!("lmh");
        }
        let configured = self
            .api
            .message(
                handle,
                json!({"request": "configure", "audio": opts.audio, "video": opts.video}),
                Some(jsep),
            )
            .await?;
        let answer = jsep_sdp(&configured, "answer")?;
        self.api.trickle_completed(handle).await?;
        let publisher = Publisher::connect(
            offer,
            &answer,
            feed.to_string(),
            self.api.handle_url(handle),
            Hangup::Janus(leg),
            opts,
        )
        .await?;
        self.api.webrtcup(handle, deadline).await?;
        Ok(publisher)
    }

    /// Subscribes to the publisher with feed id `feed` (a [`Publisher::id`]): all its
    /// streams, one video stream whatever it simulcasts (Janus forwards the top layer
    /// by default).
    pub async fn subscribe(
        &self,
        feed: &str,
        opts: &ClientOptions,
    ) -> Result<Subscriber, ClientError> {
        if !opts.audio && !opts.video {
            return Err(ClientError::Options(
                "subscribe needs audio or video".into(),
            ));
        }
        let feed: u64 = feed
            .parse()
            .map_err(|_| ClientError::Options(format!("Janus feed ids are numbers: {feed:?}")))?;
        let deadline = tokio::time::Instant::now() + opts.timeout;
        let handle = self.api.attach().await?;
        let leg = Leg {
            api: Arc::clone(&self.api),
            handle,
        };
        let attached = self
            .api
            .message(
                handle,
                json!({
                    "request": "join",
                    "ptype": "subscriber",
                    "room": self.room,
                    "streams": [{"feed": feed}],
                }),
                None,
            )
            .await?;
        let offer = Answer::parse(&jsep_sdp(&attached, "offer")?)?;
        let creds = Credentials::generate(opts)?;
        let bound = transport::bind(opts.bind).await?;
        let answer = AnswerSpec {
            ice_ufrag: creds.ufrag.clone(),
            ice_pwd: creds.pwd.clone(),
            fingerprint_sha256: creds.announced_fingerprint(opts),
            candidate: bound.local,
            audio: opts.audio,
            video: opts.video,
        }
        .to_sdp(&offer)?;
        self.api
            .message(
                handle,
                json!({"request": "start"}),
                Some(json!({"type": "answer", "sdp": answer})),
            )
            .await?;
        self.api.trickle_completed(handle).await?;
        let roles = Roles::answerer(&offer);
        let subscriber = Subscriber::connect(
            creds,
            bound,
            offer,
            roles,
            self.api.handle_url(handle),
            Hangup::Janus(leg),
            opts,
        )
        .await?;
        self.api.webrtcup(handle, deadline).await?;
        Ok(subscriber)
    }

    /// Destroys the room (its publishers and subscribers are hung up).
    pub async fn destroy(self) -> Result<(), ClientError> {
        self.api
            .message(
                self.control,
                json!({"request": "destroy", "room": self.room}),
                None,
            )
            .await
            .map(drop)
    }
}

/// One peer connection's handle, kept by its publisher or subscriber so the session
/// outlives the room value while it is in use.
pub(super) struct Leg {
    api: Arc<Session>,
    handle: u64,
}

impl Leg {
    /// Detaching hangs up the peer connection and leaves the room.
    pub(super) async fn detach(&self) -> Result<(), ClientError> {
        self.api
            .request(
                &self.api.handle_url(self.handle),
                json!({"janus": "detach"}),
            )
            .await
            .map(drop)
    }
}

/// Events from the long poll, waiting to be claimed.
#[derive(Default)]
struct Events {
    queue: Mutex<VecDeque<Value>>,
    arrived: Notify,
    /// Why the last poll failed, for timeout messages.
    last_error: Mutex<Option<String>>,
}

impl Events {
    fn push(&self, events: impl IntoIterator<Item = Value>) {
        {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            for e in events {
                if q.len() >= MAX_UNCLAIMED {
                    q.pop_front();
                }
                q.push_back(e);
            }
        }
        self.arrived.notify_waiters();
    }

    fn take(&self, matches: &impl Fn(&Value) -> bool) -> Option<Value> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let i = q.iter().position(matches)?;
        q.remove(i)
    }

    async fn wait(
        &self,
        deadline: tokio::time::Instant,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Value, ClientError> {
        loop {
            // Registered before looking, so an event pushed in between still wakes us.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(e) = self.take(&matches) {
                return Ok(e);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let poll = self
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .map(|e| format!(" (last long poll error: {e})"))
                    .unwrap_or_default();
                return Err(ClientError::WaitTimeout(format!(
                    "no Janus {what} event{poll}"
                )));
            }
        }
    }
}

/// A Janus session: its URL, the HTTP client and the long-poll task.
struct Session {
    http: reqwest::Client,
    /// `{api}/{session id}`.
    url: String,
    events: Arc<Events>,
    poller: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.poller.abort();
        // Tear the session down now rather than at Janus's session timeout; at runtime
        // shutdown this may not run, and the timeout does it.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let http = self.http.clone();
            let url = self.url.clone();
            rt.spawn(async move {
                let body = json!({"janus": "destroy", "transaction": random_string(12)});
                let _ = http
                    .post(url)
                    .json(&body)
                    .timeout(REQUEST_TIMEOUT)
                    .send()
                    .await;
            });
        }
    }
}

impl Session {
    async fn open(api_url: &str) -> Result<Arc<Self>, ClientError> {
        let http = reqwest::Client::new();
        let api = api_url.trim_end_matches('/').to_owned();
        let created = post(&http, &api, json!({"janus": "create"})).await?;
        let id = created
            .pointer("/data/id")
            .and_then(Value::as_u64)
            .ok_or_else(|| unexpected("create without a session id", &created))?;
        let url = format!("{api}/{id}");
        let events = Arc::new(Events::default());
        let poller = tokio::spawn(long_poll(http.clone(), url.clone(), Arc::clone(&events)));
        Ok(Arc::new(Self {
            http,
            url,
            events,
            poller,
        }))
    }

    fn handle_url(&self, handle: u64) -> String {
        format!("{}/{handle}", self.url)
    }

    async fn request(&self, url: &str, body: Value) -> Result<Value, ClientError> {
        post(&self.http, url, body).await
    }

    async fn attach(&self) -> Result<u64, ClientError> {
        let r = self
            .request(
                &self.url,
                json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
            )
            .await?;
        r.pointer("/data/id")
            .and_then(Value::as_u64)
            .ok_or_else(|| unexpected("attach without a handle id", &r))
    }

    /// A VideoRoom request: answered at once (`success`), or acknowledged and answered
    /// by an event with the same transaction. Either way the plugin's answer, or
    /// [`ClientError::Janus`] with the plugin's error.
    async fn message(
        &self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<Value, ClientError> {
        let transaction = random_string(12);
        let mut req = json!({"janus": "message", "transaction": transaction, "body": body});
        if let Some(j) = jsep {
            req["jsep"] = j;
        }
        let r = self.request(&self.handle_url(handle), req).await?;
        let answer = match r.get("janus").and_then(Value::as_str) {
            Some("ack") => {
                let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
                self.events
                    .wait(deadline, "plugin", |e| {
                        e.get("transaction").and_then(Value::as_str) == Some(&transaction)
                            && e.get("janus").and_then(Value::as_str) == Some("event")
                    })
                    .await?
            }
            _ => r,
        };
        if let Some(d) = plugin_data(&answer)
            && let Some(code) = d.get("error_code").and_then(Value::as_i64)
        {
            let reason = d.get("error").and_then(Value::as_str).unwrap_or_default();
            return Err(ClientError::Janus {
                code,
                reason: reason.to_owned(),
            });
        }
        Ok(answer)
    }

    /// Our candidates are all in the SDP (half trickle, as Janus does itself).
    async fn trickle_completed(&self, handle: u64) -> Result<(), ClientError> {
        self.request(
            &self.handle_url(handle),
            json!({"janus": "trickle", "candidate": {"completed": true}}),
        )
        .await
        .map(drop)
    }

    /// Janus's own word that ICE and DTLS are done on this handle.
    async fn webrtcup(
        &self,
        handle: u64,
        deadline: tokio::time::Instant,
    ) -> Result<(), ClientError> {
        self.events
            .wait(deadline, "webrtcup", |e| {
                e.get("janus").and_then(Value::as_str) == Some("webrtcup")
                    && e.get("sender").and_then(Value::as_u64) == Some(handle)
            })
            .await
            .map(drop)
    }
}

/// POSTs a Janus API request (a transaction added if missing); a `"janus": "error"`
/// answer is [`ClientError::Janus`].
async fn post(http: &reqwest::Client, url: &str, mut body: Value) -> Result<Value, ClientError> {
    if body.get("transaction").is_none() {
        body["transaction"] = json!(random_string(12));
    }
    let resp = http
        .post(url)
        .json(&body)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| ClientError::Request(format!("{url}: {e}")))?;
    let status = resp.status().as_u16();
    let text = resp
        .text()
        .await
        .map_err(|e| ClientError::Request(format!("{url}: {e}")))?;
    if !(200..300).contains(&status) {
        return Err(ClientError::Http { status, body: text });
    }
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| ClientError::Answer(format!("Janus answered non-JSON ({e}): {text}")))?;
    if v.get("janus").and_then(Value::as_str) == Some("error") {
        let code = v
            .pointer("/error/code")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let reason = v
            .pointer("/error/reason")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return Err(ClientError::Janus {
            code,
            reason: reason.to_owned(),
        });
    }
    Ok(v)
}

/// Keeps one long poll outstanding on the session for as long as it lives.
async fn long_poll(http: reqwest::Client, url: String, events: Arc<Events>) {
    let poll_url = format!("{url}?maxev={MAX_EVENTS}");
    loop {
        let got = async {
            let resp = http.get(&poll_url).timeout(POLL_TIMEOUT).send().await?;
            resp.json::<Value>().await
        }
        .await;
        match got {
            Ok(Value::Array(list)) => events.push(list.into_iter().filter(|e| !is_keepalive(e))),
            Ok(e) if is_keepalive(&e) => {}
            Ok(e) => events.push([e]),
            Err(e) => {
                *events.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                // A server that is gone refuses at once; do not spin.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn is_keepalive(e: &Value) -> bool {
    e.get("janus").and_then(Value::as_str) == Some("keepalive")
}

/// `plugindata.data` of a plugin answer or event.
fn plugin_data(v: &Value) -> Option<&Value> {
    v.pointer("/plugindata/data")
}

/// The SDP of the event's JSEP of type `kind`.
fn jsep_sdp(event: &Value, kind: &str) -> Result<String, ClientError> {
    let jsep = event
        .get("jsep")
        .ok_or_else(|| unexpected(&format!("no JSEP {kind}"), event))?;
    if jsep.get("type").and_then(Value::as_str) != Some(kind) {
        return Err(unexpected(&format!("JSEP is not an {kind}"), event));
    }
    jsep.get("sdp")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| unexpected("JSEP without SDP", event))
}

fn unexpected(what: &str, v: &Value) -> ClientError {
    ClientError::Answer(format!("Janus: {what}: {v}"))
}
