//! Clients that move when their node drains or dies: they listen to the room's event
//! stream on the node they are connected to and, on its `move` event, POST again to the
//! node it names (following placement's redirect if any), then end the old session. When
//! the node stops answering at all (its stream ends and it refuses connections), they
//! POST to the other cluster members it listed when they connected, in its order. A
//! [`RoamingPublisher`] moves before its next send (a new WHIP session, so a new
//! publisher id); a [`RoamingSubscriber`] moves by itself in the background, to the same
//! publisher if it is still listed, else to the room's latest. (Its mover runs on a
//! thread of its own: a session's handshake future is not `Send`.)

use super::{ClientError, ClientOptions, Publisher, Subscriber};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a moving subscriber retries while its publisher is not yet listed at the
/// new node (the room's state may still be on its way).
const RESUBSCRIBE_FOR: Duration = Duration::from_secs(5);

/// The scheme, host and port of a URL: the node a resource lives on.
pub fn origin(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    let host = u.host_str()?;
    Some(match u.port() {
        Some(p) => format!("{}://{host}:{p}", u.scheme()),
        None => format!("{}://{host}", u.scheme()),
    })
}

/// Consecutive refused reconnections of the event stream that mean the node is gone.
const GONE_AFTER: u32 = 2;

/// The first `move` of a room's event stream on one node, or the node's death.
#[derive(Debug)]
pub struct MoveWatch {
    rx: watch::Receiver<Option<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for MoveWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MoveWatch {
    /// Listens to `{base}/rooms/{room}/events`; reconnects if the stream breaks while
    /// the node is still up.
    pub fn start(base: &str, room: &str) -> Result<Self, ClientError> {
        let url = super::http::Signaling::url(base, &["rooms", room, "events"])?;
        let cluster = super::http::Signaling::url(base, &["cluster"])?;
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            let others = other_members(&http, cluster).await;
            let mut refused = 0;
            loop {
                match read_stream(&http, url.clone()).await {
                    Stream::Move(to) => {
                        let _ = tx.send(Some(vec![to]));
                        return;
                    }
                    Stream::Ended => refused = 0,
                    Stream::Refused => refused += 1,
                }
                if refused >= GONE_AFTER && !others.is_empty() {
                    let _ = tx.send(Some(others));
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Ok(Self { rx, task })
    }

    /// Where to move (the first that takes the session), once the node said so or died.
    pub fn target(&self) -> Option<Vec<String>> {
        self.rx.borrow().clone()
    }

    pub async fn wait(&mut self) -> Vec<String> {
        loop {
            if let Some(to) = self.rx.borrow_and_update().clone() {
                return to;
            }
            if self.rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

enum Stream {
    Move(String),
    /// The stream ended (or never answered 200): worth another try.
    Ended,
    /// Nobody answered.
    Refused,
}

/// Reads one event stream until a `move` with a URL.
async fn read_stream(http: &reqwest::Client, url: reqwest::Url) -> Stream {
    let mut resp = match http.get(url).send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(_) => return Stream::Ended,
        Err(_) => return Stream::Refused,
    };
    let mut buf = String::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            if let Some(to) = parse_move(&event) {
                return Stream::Move(to);
            }
        }
    }
    Stream::Ended
}

/// The HTTP URLs of the node's live fellow members (`GET /cluster`), its own left out.
async fn other_members(http: &reqwest::Client, cluster: reqwest::Url) -> Vec<String> {
    let Ok(resp) = http.get(cluster).send().await else {
        return Vec::new();
    };
    let Ok(v) = resp.json::<serde_json::Value>().await else {
        return Vec::new();
    };
    let this = v.get("self").and_then(|s| s.as_str()).unwrap_or_default();
    v.get("members")
        .and_then(|m| m.as_array())
        .into_iter()
        .flatten()
        .filter(|m| m.get("id").and_then(|i| i.as_str()) != Some(this))
        .filter(|m| m.get("state").and_then(|s| s.as_str()) == Some("alive"))
        .filter_map(|m| m.get("http").and_then(|h| h.as_str()).map(str::to_owned))
        .filter(|h| !h.is_empty())
        .collect()
}

/// The target URL of one SSE event, if it is a `move` that names one.
fn parse_move(event: &str) -> Option<String> {
    let mut name = "message";
    let mut data = String::new();
    for line in event.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            name = v.trim();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim());
        }
    }
    if name != "move" {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&data).ok()?;
    v.get("url")?.as_str().map(str::to_owned)
}

/// A publisher that moves when its node drains.
#[derive(Debug)]
pub struct RoamingPublisher {
    room: String,
    opts: ClientOptions,
    publisher: Publisher,
    moves: MoveWatch,
    moved: u32,
}

impl RoamingPublisher {
    pub async fn publish(
        base: &str,
        room: &str,
        opts: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let publisher = super::publish(base, room, opts).await?;
        let node = origin(&publisher.location).unwrap_or_else(|| base.to_owned());
        Ok(Self {
            room: room.to_owned(),
            opts: opts.clone(),
            moves: MoveWatch::start(&node, room)?,
            publisher,
            moved: 0,
        })
    }

    pub fn current(&self) -> &Publisher {
        &self.publisher
    }

    /// Times it moved.
    pub fn moves(&self) -> u32 {
        self.moved
    }

    /// Moves now if its node asked or died.
    pub async fn follow(&mut self) -> Result<(), ClientError> {
        let Some(targets) = self.moves.target() else {
            return Ok(());
        };
        let mut last = ClientError::Options("nowhere to move".into());
        let mut moved = None;
        for to in targets {
            match super::publish(&to, &self.room, &self.opts).await {
                Ok(p) => {
                    moved = Some((p, to));
                    break;
                }
                Err(e) => last = e,
            }
        }
        let Some((next, to)) = moved else {
            return Err(last);
        };
        let node = origin(&next.location).unwrap_or(to);
        self.moves = MoveWatch::start(&node, &self.room)?;
        let old = std::mem::replace(&mut self.publisher, next);
        self.moved += 1;
        // The old node may already be gone; the new session stands either way.
        let _ = old.close().await;
        Ok(())
    }

    pub async fn send_audio(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        self.follow().await?;
        self.publisher.send_audio(payload).await
    }

    pub async fn send_video(
        &mut self,
        layer: usize,
        data: &[u8],
        keyframe: bool,
    ) -> Result<(), ClientError> {
        self.follow().await?;
        self.publisher.send_video(layer, data, keyframe).await
    }

    pub async fn close(self) -> Result<(), ClientError> {
        self.publisher.close().await
    }
}

/// A subscriber that moves by itself when its node drains.
#[derive(Debug)]
pub struct RoamingSubscriber {
    current: Arc<Mutex<Option<Subscriber>>>,
    moved: Arc<AtomicU32>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: watch::Sender<bool>,
}

impl Drop for RoamingSubscriber {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl RoamingSubscriber {
    pub async fn subscribe(
        base: &str,
        room: &str,
        publisher: Option<&str>,
        opts: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let first = super::subscribe(base, room, publisher, opts).await?;
        let node = origin(&first.location).unwrap_or_else(|| base.to_owned());
        let moves = MoveWatch::start(&node, room)?;
        let current = Arc::new(Mutex::new(Some(first)));
        let moved = Arc::new(AtomicU32::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = watch::channel(false);
        let (room, publisher, opts) = (room.to_owned(), publisher.map(str::to_owned), opts.clone());
        let (cur, mov, err) = (
            Arc::clone(&current),
            Arc::clone(&moved),
            Arc::clone(&errors),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Options(format!("mover runtime: {e}")))?;
        std::thread::Builder::new()
            .name("roaming-subscriber".into())
            .spawn(move || {
                rt.block_on(async move {
                    let mover = roam(moves, room, publisher, opts, cur, mov, err);
                    tokio::select! {
                        () = mover => {}
                        _ = stopped.wait_for(|s| *s) => {}
                    }
                });
            })
            .map_err(|e| ClientError::Options(format!("mover thread: {e}")))?;
        Ok(Self {
            current,
            moved,
            errors,
            stop,
        })
    }

    /// Reads the current session.
    pub fn with<R>(&self, f: impl FnOnce(&Subscriber) -> R) -> Option<R> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(f)
    }

    pub fn moves(&self) -> u32 {
        self.moved.load(Ordering::Relaxed)
    }

    /// Moves that failed, with why.
    pub fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub async fn close(self) -> Result<(), ClientError> {
        let _ = self.stop.send(true);
        let sub = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match sub {
            Some(s) => s.close().await,
            None => Ok(()),
        }
    }
}

async fn roam(
    mut moves: MoveWatch,
    room: String,
    publisher: Option<String>,
    opts: ClientOptions,
    current: Arc<Mutex<Option<Subscriber>>>,
    moved: Arc<AtomicU32>,
    errors: Arc<Mutex<Vec<String>>>,
) {
    loop {
        let targets = moves.wait().await;
        let mut next = None;
        for to in targets {
            match resubscribe(&to, &room, publisher.as_deref(), &opts).await {
                Ok(s) => {
                    next = Some((s, to));
                    break;
                }
                Err(e) => note(&errors, format!("moving to {to}: {e}")),
            }
        }
        let Some((next, to)) = next else {
            return;
        };
        let node = origin(&next.location).unwrap_or_else(|| to.clone());
        moves = match MoveWatch::start(&node, &room) {
            Ok(m) => m,
            Err(e) => {
                note(&errors, e.to_string());
                return;
            }
        };
        let old = current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(next);
        moved.fetch_add(1, Ordering::Relaxed);
        if let Some(old) = old {
            let _ = old.close().await;
        }
    }
}

/// Keeps why a move failed, for [`RoamingSubscriber::errors`].
fn note(errors: &Mutex<Vec<String>>, why: String) {
    errors.lock().unwrap_or_else(|p| p.into_inner()).push(why);
}

/// The same publisher at the new node once it is listed there, else the room's latest.
async fn resubscribe(
    to: &str,
    room: &str,
    publisher: Option<&str>,
    opts: &ClientOptions,
) -> Result<Subscriber, ClientError> {
    let deadline = Instant::now() + RESUBSCRIBE_FOR;
    loop {
        match super::subscribe(to, room, publisher, opts).await {
            Err(ClientError::Http { status: 404, .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(ClientError::Http { status: 404, .. }) if publisher.is_some() => {
                return super::subscribe(to, room, None, opts).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn move_events_and_origins() {
        assert_eq!(
            parse_move("event: move\ndata: {\"node\":\"b\",\"url\":\"http://127.0.0.1:9\"}\n\n"),
            Some("http://127.0.0.1:9".into())
        );
        assert_eq!(
            parse_move("event: move\ndata: {\"node\":\"b\",\"url\":null}\n\n"),
            None
        );
        assert_eq!(
            parse_move("event: publisher-joined\ndata: {\"url\":\"x\"}\n\n"),
            None
        );
        assert_eq!(parse_move("event: move\ndata: not json\n\n"), None);
        assert_eq!(
            origin("http://127.0.0.1:8081/resources/abc").as_deref(),
            Some("http://127.0.0.1:8081")
        );
        assert_eq!(
            origin("https://sfu.example/x").as_deref(),
            Some("https://sfu.example")
        );
        assert_eq!(origin("nope"), None);
    }
}
