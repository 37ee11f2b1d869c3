//! The client against a stand-in node: a small axum WHIP/WHEP endpoint and a UDP port
//! that answers ICE checks with the dataplane's ICE-lite writer, accepts DTLS with
//! `crate::dtls::accept`, and decrypts (or sends) SRTP with the dataplane's SrtpContext.
//! The real node has its own end-to-end test (control/tests/client_e2e.rs).

use super::*;
use crate::dtls::{self as sdtls, SendFn, SrtpSessionKeys};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sluice_dataplane::demux::{PacketKind, classify};
use sluice_dataplane::rtp::RtpPacket;
use sluice_dataplane::srtp::SrtpContext;
use sluice_dataplane::stun::{StunMessage, binding_success};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

const NODE_UFRAG: &str = "node";
const NODE_PWD: &str = "node-password-0123456789";
const AUDIO_SSRC: u32 = 5001;
const VIDEO_SSRC: u32 = 6001;
const RTX_SSRC: u32 = 6002;

#[derive(Default)]
struct Inner {
    client_ufrag: Option<String>,
    peer: Option<SocketAddr>,
    dtls_tx: Option<mpsc::Sender<Bytes>>,
    keys: Option<SrtpSessionKeys>,
    /// Decrypted RTP from the client: (ssrc, seq, payload).
    rtp: Vec<(u32, u16, Vec<u8>)>,
    /// Decrypted RTCP datagrams from the client.
    rtcp: Vec<Vec<u8>>,
    checks: usize,
}

#[derive(Clone)]
struct Fake {
    identity: Arc<sdtls::DtlsIdentity>,
    udp: Arc<UdpSocket>,
    inner: Arc<Mutex<Inner>>,
    deletes: Arc<AtomicUsize>,
}

impl Fake {
    async fn start() -> (Self, String) {
        let udp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let fake = Fake {
            identity: Arc::new(sdtls::DtlsIdentity::generate().unwrap()),
            udp,
            inner: Arc::default(),
            deletes: Arc::default(),
        };
        tokio::spawn(fake.clone().media_loop());
        let app = Router::new()
            .route("/whip/{room}", axum::routing::post(whip))
            .route("/whep/{room}", axum::routing::post(whep))
            .route("/whep/{room}/{publisher}", axum::routing::post(whep))
            .route("/resources/{id}", axum::routing::delete(delete))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (fake, base)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    /// Answers an offer and gets ready for its DTLS.
    fn answer(&self, offer: &str, sending: bool) -> Response {
        let Ok(o) = Answer::parse(offer) else {
            return (StatusCode::BAD_REQUEST, "bad offer").into_response();
        };
        let (tx, rx) = mpsc::channel(64);
        {
            let mut inner = self.lock();
            inner.client_ufrag = Some(o.ice_ufrag.clone());
            inner.dtls_tx = Some(tx);
        }
        let me = self.clone();
        let expected = o.fingerprint.clone();
        let send: SendFn = {
            let (udp, inner) = (Arc::clone(&self.udp), Arc::clone(&self.inner));
            Arc::new(move |b: Bytes| {
                if let Some(p) = inner.lock().unwrap().peer {
                    let _ = udp.try_send_to(&b, p);
                }
            })
        };
        tokio::spawn(async move {
            let r = sdtls::accept(&me.identity, expected, rx, send, Duration::from_secs(10)).await;
            if let Ok((keys, session)) = r {
                me.lock().keys = Some(keys);
                // Keep the association until the client closes it.
                session.closed().await;
            }
        });
        let text = answer_sdp(
            self.identity.fingerprint_sha256(),
            self.udp.local_addr().unwrap(),
            &o,
            sending,
        );
        Response::builder()
            .status(201)
            .header("content-type", "application/sdp")
            .header("location", "/resources/r1")
            .header("x-publisher-id", "pub1")
            .body(axum::body::Body::from(text))
            .unwrap()
    }

    async fn media_loop(self) {
        let mut buf = vec![0u8; 2048];
        let mut inbound: Option<SrtpContext> = None;
        loop {
            let Ok((n, from)) = self.udp.recv_from(&mut buf).await else {
                return;
            };
            let d = &buf[..n];
            match classify(d) {
                PacketKind::Stun => {
                    let Ok(msg) = StunMessage::parse(d) else {
                        continue;
                    };
                    let want = format!(
                        "{NODE_UFRAG}:{}",
                        self.lock().client_ufrag.clone().unwrap_or_default()
                    );
                    if msg.username() != Some(want.as_bytes())
                        || msg.verify_integrity(NODE_PWD.as_bytes()).is_err()
                        || msg.verify_fingerprint().is_err()
                        || msg.ice_controlling().is_none()
                    {
                        continue;
                    }
                    let mut out = [0u8; 128];
                    let len = binding_success(&mut out, &msg, from, NODE_PWD.as_bytes()).unwrap();
                    {
                        let mut inner = self.lock();
                        inner.checks += 1;
                        if msg.use_candidate() {
                            inner.peer = Some(from);
                        }
                    }
                    let _ = self.udp.send_to(&out[..len], from).await;
                }
                PacketKind::Dtls => {
                    let tx = self.lock().dtls_tx.clone();
                    if let Some(tx) = tx {
                        let _ = tx.try_send(Bytes::copy_from_slice(d));
                    }
                }
                PacketKind::Rtp | PacketKind::Rtcp => {
                    if inbound.is_none() {
                        inbound = self.lock().keys.as_ref().map(|k| {
                            SrtpContext::new(k.inbound.profile, &k.inbound.key, &k.inbound.salt)
                                .unwrap()
                        });
                    }
                    let Some(ctx) = inbound.as_mut() else {
                        continue;
                    };
                    let mut p = d.to_vec();
                    if classify(d) == PacketKind::Rtp {
                        if let Ok(m) = ctx.unprotect_rtp(&mut p) {
                            let pkt = RtpPacket::parse(&p[..m]).unwrap();
                            self.lock().rtp.push((
                                pkt.ssrc(),
                                pkt.sequence_number(),
                                pkt.payload().to_vec(),
                            ));
                        }
                    } else if let Ok(m) = ctx.unprotect_rtcp(&mut p) {
                        self.lock().rtcp.push(p[..m].to_vec());
                    }
                }
                PacketKind::Unknown => {}
            }
        }
    }

    /// Sends SRTP to the client (as the node would forward to a subscriber).
    async fn send_rtp(&self, ctx: &mut SrtpContext, plain: &[u8]) {
        let mut buf = plain.to_vec();
        buf.resize(plain.len() + ctx.profile().rtp_overhead(), 0);
        let n = ctx.protect_rtp(&mut buf, plain.len()).unwrap();
        let peer = self.lock().peer.unwrap();
        self.udp.send_to(&buf[..n], peer).await.unwrap();
    }
}

fn answer_sdp(fingerprint: &str, candidate: SocketAddr, offer: &Answer, sending: bool) -> String {
    let mut s = format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=ice-lite\r\na=group:BUNDLE {}\r\n",
        offer
            .media
            .iter()
            .filter_map(|m| m.mid.clone())
            .collect::<Vec<_>>()
            .join(" ")
    );
    for m in &offer.media {
        let mid = m.mid.clone().unwrap_or_default();
        let formats: Vec<String> = m.codecs.iter().map(|c| c.0.to_string()).collect();
        s += &format!(
            "m={} 9 UDP/TLS/RTP/SAVPF {}\r\nc=IN IP4 0.0.0.0\r\n",
            m.kind,
            formats.join(" ")
        );
        s += &format!("a=ice-ufrag:{NODE_UFRAG}\r\na=ice-pwd:{NODE_PWD}\r\n");
        s += &format!("a=fingerprint:sha-256 {fingerprint}\r\na=setup:passive\r\na=mid:{mid}\r\n");
        for (id, uri) in &m.extmaps {
            s += &format!("a=extmap:{id} {uri}\r\n");
        }
        s += if sending {
            "a=sendonly\r\n"
        } else {
            "a=recvonly\r\n"
        };
        s += "a=rtcp-mux\r\n";
        for (pt, name, rate) in &m.codecs {
            let ch = if name == "opus" { "/2" } else { "" };
            s += &format!("a=rtpmap:{pt} {name}/{rate}{ch}\r\n");
        }
        for (pt, apt) in &m.rtx {
            s += &format!("a=fmtp:{pt} apt={apt}\r\n");
        }
        if let Some(sim) = &m.simulcast {
            s += &format!("a=simulcast:{}\r\n", sim.replace("send", "recv"));
        }
        if sending && m.kind == "audio" {
            s += &format!("a=ssrc:{AUDIO_SSRC} cname:node\r\n");
        }
        if sending && m.kind == "video" {
            s += &format!("a=ssrc-group:FID {VIDEO_SSRC} {RTX_SSRC}\r\n");
            s += &format!("a=ssrc:{VIDEO_SSRC} cname:node\r\na=ssrc:{RTX_SSRC} cname:node\r\n");
        }
        s += &format!(
            "a=candidate:1 1 udp 2130706431 {} {} typ host\r\na=end-of-candidates\r\n",
            candidate.ip(),
            candidate.port()
        );
    }
    s
}

async fn whip(State(f): State<Fake>, Path(room): Path<String>, body: String) -> Response {
    if room == "missing" {
        return (StatusCode::NOT_FOUND, "no such room").into_response();
    }
    f.answer(&body, false)
}

async fn whep(State(f): State<Fake>, body: String) -> Response {
    f.answer(&body, true)
}

async fn delete(State(f): State<Fake>) -> StatusCode {
    f.deletes.fetch_add(1, Ordering::SeqCst);
    StatusCode::OK
}

fn opts() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(10),
        rtcp_interval: Duration::from_millis(50),
        ..ClientOptions::default()
    }
}

async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn publisher_media_arrives_decrypted_with_extensions() {
    let (fake, base) = Fake::start().await;
    let mut o = opts();
    o.simulcast = true;
    let mut p = publish(&base, "room1", &o).await.expect("publish");
    assert_eq!(p.id, "pub1");
    assert_eq!(p.location, format!("{base}/resources/r1"));
    let ssrcs = p.ssrcs();
    assert_eq!(ssrcs.len(), 4, "audio + three layers");
    assert!(fake.lock().checks >= 1);

    p.send_audio(b"opus-1").await.unwrap();
    for layer in 0..3 {
        p.send_video(layer, format!("frame-{layer}").as_bytes(), true)
            .await
            .unwrap();
        p.send_video(layer, b"delta", false).await.unwrap();
    }
    eventually("7 packets at the fake node", || fake.lock().rtp.len() == 7).await;
    let rtp = fake.lock().rtp.clone();
    assert_eq!(rtp[0], (ssrcs[0], rtp[0].1, b"opus-1".to_vec()));
    for layer in 0..3 {
        let (ssrc, seq0, key) = &rtp[1 + 2 * layer];
        let (ssrc1, seq1, delta) = &rtp[2 + 2 * layer];
        assert_eq!((ssrc, ssrc1), (&ssrcs[1 + layer], &ssrcs[1 + layer]));
        assert_eq!(*seq1, seq0.wrapping_add(1));
        assert!(vp8_data(key).unwrap().0);
        assert_eq!(
            vp8_data(key).unwrap().2,
            format!("frame-{layer}").as_bytes()
        );
        assert_eq!(
            vp8_data(delta).unwrap(),
            (false, vp8_data(delta).unwrap().1, &b"delta"[..])
        );
    }
    let stats = p.stats();
    assert_eq!(stats.ice_state, Some(IceState::Connected));
    assert_eq!(stats.streams.iter().map(|s| s.packets).sum::<u64>(), 7);
    assert_eq!(stats.streams[1].rid.as_deref(), Some("q"));
    // Sender reports reach the node too.
    eventually("a sender report", || !fake.lock().rtcp.is_empty()).await;
    assert_eq!(fake.lock().rtcp[0][1], 200);
    p.close().await.unwrap();
    assert_eq!(fake.deletes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn http_errors_carry_status_and_body() {
    let (_fake, base) = Fake::start().await;
    let err = publish(&base, "missing", &opts()).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert!(err.to_string().contains("no such room"), "{err}");
    // Nothing listening: a request error, not an HTTP status.
    let err = publish("http://127.0.0.1:9", "r", &opts())
        .await
        .unwrap_err();
    assert_eq!(err.status(), None);
}

#[tokio::test]
async fn subscriber_tracks_continuity_and_repairs_with_nack_and_rtx() {
    let (fake, base) = Fake::start().await;
    let sub = subscribe(&base, "room1", Some("pub1"), &opts())
        .await
        .expect("subscribe");
    eventually("keys at the fake node", || fake.lock().keys.is_some()).await;
    let k = fake.lock().keys.clone().unwrap();
    let mut out = SrtpContext::new(k.outbound.profile, &k.outbound.key, &k.outbound.salt).unwrap();

    let video = |seq: u16, data: &[u8], key: bool| {
        rtp::write_packet(
            96,
            true,
            seq,
            3000 * u32::from(seq),
            VIDEO_SSRC,
            &[],
            &vp8_payload(seq, key, 0, data),
            0,
        )
    };
    // 65534, 65535, (0 lost), 1: across the wrap with one gap.
    fake.send_rtp(&mut out, &video(65534, b"a", true)).await;
    fake.send_rtp(&mut out, &video(65535, b"b", false)).await;
    fake.send_rtp(&mut out, &video(1, b"d", false)).await;
    fake.send_rtp(
        &mut out,
        &rtp::write_packet(111, false, 7, 960, AUDIO_SSRC, &[], b"opus", 0),
    )
    .await;
    let s = sub
        .wait_for(Duration::from_secs(5), |s| s.packets() == 4)
        .await
        .expect("four packets");
    let v = s.stream(VIDEO_SSRC).unwrap();
    assert_eq!(
        (v.packets, v.gaps, v.missing_now, v.keyframes),
        (3, 1, 1, 1)
    );

    // The subscriber NACKs seq 0; repair it over RTX (PT 97, OSN first).
    eventually("a NACK for seq 0", || {
        fake.lock().rtcp.iter().any(|c| {
            let mut counts = RtcpCounts::default();
            counts
                .count(c)
                .iter()
                .any(|(ssrc, lost)| *ssrc == VIDEO_SSRC && lost.contains(&0))
        })
    })
    .await;
    let mut rtx_payload = 0u16.to_be_bytes().to_vec();
    rtx_payload.extend_from_slice(&vp8_payload(0, false, 0, b"c"));
    fake.send_rtp(
        &mut out,
        &rtp::write_packet(97, true, 500, 0, RTX_SSRC, &[], &rtx_payload, 0),
    )
    .await;
    let s = sub
        .wait_for(Duration::from_secs(5), |s| s.packets() == 5)
        .await
        .expect("repaired");
    let v = s.stream(VIDEO_SSRC).unwrap();
    assert_eq!(
        (v.missing_now, v.out_of_order, v.rtx, v.duplicates),
        (0, 1, 1, 0)
    );
    let data: Vec<Vec<u8>> = sub
        .packets(VIDEO_SSRC)
        .iter()
        .map(|p| vp8_data(&p.payload).unwrap().2.to_vec())
        .collect();
    assert_eq!(
        data,
        vec![b"a".to_vec(), b"b".to_vec(), b"d".to_vec(), b"c".to_vec()]
    );
    assert_eq!(s.stream(AUDIO_SSRC).unwrap().packets, 1);
    assert!(s.reports_sent >= 1 && s.nacks_sent >= 1);
    assert_eq!(s.srtp_errors, 0);

    sub.request_keyframe(VIDEO_SSRC).await.unwrap();
    eventually("a PLI", || {
        fake.lock().rtcp.iter().any(|c| {
            let mut counts = RtcpCounts::default();
            counts.count(c);
            counts.pli > 0
        })
    })
    .await;
    sub.close().await.unwrap();
}
