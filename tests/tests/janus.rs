//! Our WebRTC test client against Janus VideoRoom (the `sluice bench` comparison peer):
//! it publishes and subscribes through `client::janus`, so Janus's full-ICE agent,
//! its offers and its simulcast handling are exercised by the same client the bench
//! drives. Janus runs in a network namespace (`scripts/janus-peer.sh up`, which needs
//! root); the client binds the host end of the veth.
//!
//! Skipped only when not root; a missing janus fails with the command that installs it.

use anyhow::{Context, Result, bail, ensure};
use sluice_control::client::janus::JanusRoom;
use sluice_control::client::{
    Arrival, ClientOptions, Publisher, ReceivedPacket, Subscriber, vp8_data,
};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

const API: &str = "http://10.77.0.2:8088/janus";
/// The host end of the veth to the namespace Janus runs in.
const HOST_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1));
const FRAMES: usize = 60;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Janus up in its namespace, once per test process (the tests run in parallel).
/// `Ok(false)`: not root, skip.
fn janus_up() -> Result<bool> {
    static UP: Mutex<bool> = Mutex::new(false);
    let mut up = UP.lock().unwrap_or_else(|p| p.into_inner());
    if *up {
        return Ok(true);
    }
    if std::fs::metadata("/proc/self")?.uid() != 0 {
        println!(
            "SKIPPED: the Janus tests need root (scripts/janus-peer.sh makes a network namespace)"
        );
        return Ok(false);
    }
    let installed = ["/usr/bin/janus", "/usr/local/bin/janus"]
        .iter()
        .any(|p| Path::new(p).exists());
    ensure!(
        installed,
        "janus is not installed: run scripts/install-deps.sh (it installs the janus package)"
    );
    let out = std::process::Command::new(repo_root().join("scripts/janus-peer.sh"))
        .arg("up")
        .output()
        .context("running scripts/janus-peer.sh up")?;
    if !out.status.success() {
        bail!(
            "scripts/janus-peer.sh up failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    *up = true;
    Ok(true)
}

fn opts() -> ClientOptions {
    ClientOptions {
        bind: HOST_IP,
        timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    }
}

fn room_id() -> u64 {
    u64::from(rand_u32()) + 1_000_000
}

fn rand_u32() -> u32 {
    // Distinct per run and per test without another dependency.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.subsec_nanos() ^ std::process::id().rotate_left(16)
}

/// The SSRC Janus's offer gives the subscriber's `kind` stream.
fn offered_ssrc(sub: &Subscriber, kind: &str) -> Result<u32> {
    sub.answer
        .media
        .iter()
        .find(|m| m.kind == kind)
        .and_then(|m| m.ssrcs.first().copied())
        .with_context(|| format!("Janus offered no {kind} SSRC"))
}

fn audio_payload(i: usize) -> Vec<u8> {
    format!("audio frame {i:04}").into_bytes()
}

fn video_data(layer: usize, i: usize) -> Vec<u8> {
    format!("layer {layer} frame {i:04} ")
        .repeat(8)
        .into_bytes()
}

/// Every packet arrived once, in order, with consecutive sequence numbers.
fn assert_in_order(kind: &str, packets: &[ReceivedPacket]) {
    for w in packets.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq.wrapping_add(1),
            "{kind}: sequence gap or reorder"
        );
    }
    assert!(
        packets
            .iter()
            .all(|p| p.arrival == Arrival::InOrder && !p.rtx),
        "{kind}: late or repaired packets"
    );
}

async fn connect(room: &JanusRoom, publisher: &ClientOptions) -> Result<(Publisher, Subscriber)> {
    let publisher = room
        .publish(publisher)
        .await
        .context("publishing to Janus")?;
    let subscriber = room
        .subscribe(&publisher.id, &opts())
        .await
        .context("subscribing from Janus")?;
    Ok((publisher, subscriber))
}

#[tokio::test]
async fn publish_and_subscribe_through_janus() -> Result<()> {
    if !janus_up()? {
        return Ok(());
    }
    let room = JanusRoom::create(API, room_id()).await?;
    let (mut publisher, subscriber) = connect(&room, &opts()).await?;
    let audio = offered_ssrc(&subscriber, "audio")?;
    let video = offered_ssrc(&subscriber, "video")?;

    for i in 0..FRAMES {
        publisher.send_audio(&audio_payload(i)).await?;
        publisher
            .send_video(0, &video_data(0, i), i % 20 == 0)
            .await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = subscriber
        .wait_for(Duration::from_secs(5), |s| {
            s.stream(audio).is_some_and(|a| a.packets >= FRAMES as u64)
                && s.stream(video).is_some_and(|v| v.packets >= FRAMES as u64)
        })
        .await?;
    assert_eq!(stats.srtp_errors, 0);
    assert_eq!(stats.rtp_errors, 0);

    let got_audio = subscriber.packets(audio);
    assert_in_order("audio", &got_audio);
    let payloads: Vec<Vec<u8>> = got_audio.iter().map(|p| p.payload.clone()).collect();
    let sent: Vec<Vec<u8>> = (0..FRAMES).map(audio_payload).collect();
    assert_eq!(payloads, sent, "audio payloads as sent, in order");

    let got_video = subscriber.packets(video);
    assert_in_order("video", &got_video);
    let mut keyframes = 0;
    for (i, p) in got_video.iter().enumerate() {
        let (key, _, data) = vp8_data(&p.payload).context("VP8 descriptor and header kept")?;
        assert_eq!(data, video_data(0, i), "video frame {i}");
        assert_eq!(key, i % 20 == 0, "keyframe flag of frame {i}");
        keyframes += usize::from(key);
    }
    assert_eq!(got_video.len(), FRAMES);
    assert_eq!(keyframes, FRAMES.div_ceil(20));

    // Janus's ICE checks were answered (it is a full agent) and it answered ours.
    let ice = subscriber.stats().ice;
    assert!(ice.requests_answered > 0 && ice.responses > 0, "{ice:?}");
    let ice = publisher.stats().ice;
    assert!(ice.requests_answered > 0 && ice.responses > 0, "{ice:?}");

    subscriber.close().await?;
    publisher.close().await?;
    room.destroy().await?;
    Ok(())
}

#[tokio::test]
async fn simulcast_subscriber_gets_the_top_layer() -> Result<()> {
    if !janus_up()? {
        return Ok(());
    }
    let room = JanusRoom::create(API, room_id() + 1).await?;
    let simulcast = ClientOptions {
        audio: false,
        simulcast: true,
        ..opts()
    };
    let (mut publisher, subscriber) = connect(&room, &simulcast).await?;
    let video = offered_ssrc(&subscriber, "video")?;

    for i in 0..FRAMES {
        for layer in 0..3 {
            publisher
                .send_video(layer, &video_data(layer, i), i % 10 == 0)
                .await?;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    subscriber
        .wait_for(Duration::from_secs(5), |s| {
            s.stream(video).is_some_and(|v| v.packets >= 20)
        })
        .await?;
    // Let what is in flight arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = subscriber.packets(video);
    assert_in_order("video", &got);
    let layers: Vec<usize> = got
        .iter()
        .map(|p| {
            vp8_data(&p.payload)
                .and_then(|(_, _, d)| d.get(6).copied())
                .map_or(usize::MAX, |b| usize::from(b - b'0'))
        })
        .collect();
    // Janus starts on the first layer it can and moves up at a top-layer keyframe;
    // from then on only the top layer is forwarded.
    let first_top = layers
        .iter()
        .position(|&l| l == 2)
        .context(format!("no top-layer packet among {layers:?}"))?;
    assert!(
        layers[first_top..].iter().all(|&l| l == 2),
        "left the top layer: {layers:?}"
    );
    let top = &got[first_top..];
    assert!(top.len() >= 20, "{} top-layer packets", top.len());
    // Top-layer frames arrive intact and consecutive.
    let first = vp8_data(&top[0].payload)
        .map(|(_, _, d)| d.to_vec())
        .unwrap_or_default();
    let start = (0..FRAMES)
        .find(|&i| video_data(2, i) == first)
        .context("first top-layer frame is not one we sent")?;
    for (k, p) in top.iter().enumerate() {
        let (_, _, data) = vp8_data(&p.payload).context("VP8 kept")?;
        assert_eq!(
            data,
            video_data(2, start + k),
            "top-layer frame {}",
            start + k
        );
    }
    assert_eq!(
        start + top.len(),
        FRAMES,
        "every top-layer frame after the switch"
    );

    subscriber.close().await?;
    publisher.close().await?;
    room.destroy().await?;
    Ok(())
}
