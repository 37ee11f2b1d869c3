//! Offers as real clients write them (fixtures/), answered and read back with the `sdp`
//! crate.

use std::io::Cursor;
use std::net::SocketAddr;

use sdp::{MediaDescription, SessionDescription};
use sluice_dataplane::router::Codec;

use super::codec::{H264Profile, h264_profile};
use super::simulcast::rank;
use super::*;

const CHROME_WHIP: &str = include_str!("fixtures/chrome_whip_simulcast.sdp");
const CHROME_WHEP: &str = include_str!("fixtures/chrome_whep_recvonly.sdp");
const GSTREAMER: &str = include_str!("fixtures/gstreamer_webrtcbin.sdp");
const AIORTC: &str = include_str!("fixtures/aiortc_sendrecv.sdp");

const LOCAL_FINGERPRINT: &str = "5A:1B:33:C4:0D:E6:7F:80:91:A2:B3:C4:D5:E6:F7:08:19:2A:3B:4C:5D:6E:7F:80:91:A2:B3:C4:D5:E6:F7:08";

/// Fixtures are stored with LF; clients send CRLF.
fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

fn local() -> LocalDescription {
    LocalDescription {
        ice_ufrag: "sLu1".into(),
        ice_pwd: "sluicePwd0123456789abcdef".into(),
        fingerprint_sha256: LOCAL_FINGERPRINT.into(),
        candidates: vec![
            "192.0.2.10:3478".parse::<SocketAddr>().unwrap(),
            "[2001:db8::10]:3478".parse::<SocketAddr>().unwrap(),
        ],
    }
}

fn parse(text: &str) -> Offer {
    parse_offer(&crlf(text)).unwrap_or_else(|e| panic!("offer rejected: {e}"))
}

fn read_back(answer: &str) -> SessionDescription {
    assert!(answer.ends_with("\r\n"), "answer lines end in CRLF");
    assert!(
        !answer.replace("\r\n", "").contains(['\r', '\n']),
        "bare CR or LF"
    );
    SessionDescription::unmarshal(&mut Cursor::new(answer.as_bytes()))
        .unwrap_or_else(|e| panic!("answer does not parse: {e}\n{answer}"))
}

fn attrs<'a>(m: &'a MediaDescription, key: &str) -> Vec<&'a str> {
    m.attributes
        .iter()
        .filter(|a| a.key == key)
        .map(|a| a.value.as_deref().unwrap_or(""))
        .collect()
}

fn session_attrs<'a>(d: &'a SessionDescription, key: &str) -> Vec<&'a str> {
    d.attributes
        .iter()
        .filter(|a| a.key == key)
        .map(|a| a.value.as_deref().unwrap_or(""))
        .collect()
}

fn direction(m: &MediaDescription) -> &'static str {
    let found: Vec<&'static str> = ["sendrecv", "sendonly", "recvonly", "inactive"]
        .into_iter()
        .filter(|d| m.has_attribute(d))
        .collect();
    assert_eq!(found.len(), 1, "one direction per m-section");
    found[0]
}

fn formats(m: &MediaDescription) -> Vec<u8> {
    m.media_name
        .formats
        .iter()
        .map(|f| f.parse().unwrap())
        .collect()
}

fn rtpmap(m: &MediaDescription, pt: u8) -> Option<String> {
    attrs(m, "rtpmap")
        .into_iter()
        .find_map(|v| v.strip_prefix(&format!("{pt} ")).map(str::to_owned))
}

fn fmtp(m: &MediaDescription, pt: u8) -> Option<String> {
    attrs(m, "fmtp")
        .into_iter()
        .find_map(|v| v.strip_prefix(&format!("{pt} ")).map(str::to_owned))
}

fn rtcp_fb(m: &MediaDescription, pt: u8) -> Vec<String> {
    attrs(m, "rtcp-fb")
        .into_iter()
        .filter_map(|v| v.strip_prefix(&format!("{pt} ")).map(str::to_owned))
        .collect()
}

fn extmaps(m: &MediaDescription) -> Vec<String> {
    attrs(m, "extmap").into_iter().map(str::to_owned).collect()
}

/// What every answer must satisfy for Chromium, webrtcbin and aiortc alike; returns
/// the answer read back.
fn check_answer(answer: &str, offer: &Offer) -> SessionDescription {
    let d = read_back(answer);
    let l = local();
    assert!(d.has_attribute("ice-lite"));
    assert_eq!(session_attrs(&d, "ice-ufrag"), [l.ice_ufrag.as_str()]);
    assert_eq!(session_attrs(&d, "ice-pwd"), [l.ice_pwd.as_str()]);
    let fp = format!("sha-256 {LOCAL_FINGERPRINT}");
    assert_eq!(session_attrs(&d, "fingerprint"), [fp.as_str()]);
    assert_eq!(session_attrs(&d, "setup"), ["passive"]);
    let bundle: Vec<&str> = session_attrs(&d, "group")
        .first()
        .map(|g| g.split_whitespace().skip(1).collect())
        .unwrap_or_default();

    assert_eq!(d.media_descriptions.len(), offer.media.len());
    for (m, o) in d.media_descriptions.iter().zip(&offer.media) {
        assert_eq!(m.media_name.media, o.media);
        assert_eq!(attrs(m, "mid").first().copied(), o.mid.as_deref());
        // webrtcbin: a fingerprint at both levels is an error; setup in every section.
        assert!(attrs(m, "fingerprint").is_empty());
        assert!(attrs(m, "ice-ufrag").is_empty());
        assert_eq!(attrs(m, "setup"), ["passive"]);
        // aiortc: every m-line payload type has an rtpmap, every fmtp one too.
        if o.kind.is_some() && m.media_name.port.value != 0 {
            for pt in formats(m) {
                assert!(rtpmap(m, pt).is_some(), "pt {pt} has no rtpmap");
            }
        }
        for f in attrs(m, "fmtp") {
            let pt: u8 = f.split(' ').next().unwrap().parse().unwrap();
            assert!(rtpmap(m, pt).is_some(), "fmtp for pt {pt} without rtpmap");
        }
        let mid = o.mid.as_deref().unwrap_or("");
        if m.media_name.port.value == 0 {
            assert!(!bundle.contains(&mid), "rejected mid {mid} in BUNDLE");
            assert!(attrs(m, "candidate").is_empty());
            if o.kind.is_some() {
                assert_eq!(direction(m), "inactive");
                assert!(m.has_attribute("rtcp-mux"), "aiortc needs rtcp-mux");
                assert_eq!(formats(m).len(), 1);
            }
        } else {
            assert_eq!(m.media_name.port.value, 9);
            assert!(m.has_attribute("rtcp-mux"));
            if offer.bundle.is_some() {
                assert!(bundle.contains(&mid), "accepted mid {mid} not in BUNDLE");
            }
            let candidates = attrs(m, "candidate");
            assert_eq!(
                candidates,
                [
                    "1 1 udp 2130706431 192.0.2.10 3478 typ host",
                    "2 1 udp 2130706175 2001:db8::10 3478 typ host",
                ]
            );
            assert!(m.has_attribute("end-of-candidates"));
        }
    }
    d
}

#[test]
fn chrome_whip_simulcast() {
    let offer = parse(CHROME_WHIP);
    assert_eq!(offer.ice_ufrag, "Hb9q");
    assert_eq!(offer.ice_pwd, "kX2vQm7sW0pLr4dN8tYc1eZa");
    assert_eq!(offer.fingerprint.algorithm, "sha-256");
    assert_eq!(offer.fingerprint.value.len(), 32);
    assert_eq!(offer.fingerprint.value[..3], [0x10, 0x6e, 0xec]);
    assert_eq!(offer.setup, Setup::ActPass);
    assert_eq!(
        offer.bundle.as_deref(),
        Some(&["0".to_owned(), "1".to_owned()][..])
    );
    assert_eq!(offer.media[1].simulcast_send, ["f", "h", "q"]);

    let answer = answer_publish(&offer, &local()).unwrap();
    let d = check_answer(&answer.sdp, &offer);
    assert_eq!(session_attrs(&d, "group"), ["BUNDLE 0 1"]);

    let audio = &d.media_descriptions[0];
    assert_eq!(direction(audio), "recvonly");
    assert_eq!(formats(audio), [111]);
    assert_eq!(rtpmap(audio, 111).as_deref(), Some("opus/48000/2"));
    assert_eq!(
        fmtp(audio, 111).as_deref(),
        Some("minptime=10;useinbandfec=1")
    );
    assert_eq!(rtcp_fb(audio, 111), ["transport-cc"]);
    assert_eq!(
        extmaps(audio),
        [
            format!("1 {URI_AUDIO_LEVEL}"),
            format!("2 {URI_ABS_SEND_TIME}"),
            format!("3 {URI_TRANSPORT_CC}"),
            format!("4 {URI_MID}"),
        ]
    );
    assert!(audio.has_attribute("rtcp-rsize"));
    assert!(attrs(audio, "rid").is_empty());

    let video = &d.media_descriptions[1];
    assert_eq!(direction(video), "recvonly");
    assert_eq!(
        formats(video),
        [96, 97],
        "VP8 (first offered) and its RTX only"
    );
    assert_eq!(rtpmap(video, 96).as_deref(), Some("VP8/90000"));
    assert_eq!(rtpmap(video, 97).as_deref(), Some("rtx/90000"));
    assert_eq!(fmtp(video, 97).as_deref(), Some("apt=96"));
    assert_eq!(
        rtcp_fb(video, 96),
        ["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"]
    );
    assert_eq!(
        extmaps(video),
        [
            format!("2 {URI_ABS_SEND_TIME}"),
            format!("3 {URI_TRANSPORT_CC}"),
            format!("4 {URI_MID}"),
            format!("10 {URI_RID}"),
            format!("11 {URI_REPAIRED_RID}"),
        ],
        "toffset, video-orientation, playout-delay... are not answered"
    );
    assert_eq!(attrs(video, "rid"), ["f recv", "h recv", "q recv"]);
    assert_eq!(attrs(video, "simulcast"), ["recv f;h;q"]);
    assert!(attrs(video, "msid").is_empty() && attrs(video, "ssrc").is_empty());

    assert_eq!(
        answer.extensions,
        sluice_dataplane::rtp::ExtensionIds {
            mid: 4,
            rid: 10,
            repaired_rid: 11,
            transport_cc: 3,
            abs_send_time: 2,
            audio_level: 1,
        }
    );
    assert_eq!(
        answer.ext_uris,
        [
            (1, URI_AUDIO_LEVEL.to_owned()),
            (2, URI_ABS_SEND_TIME.to_owned()),
            (3, URI_TRANSPORT_CC.to_owned()),
            (4, URI_MID.to_owned()),
            (10, URI_RID.to_owned()),
            (11, URI_REPAIRED_RID.to_owned()),
        ]
    );

    assert_eq!(answer.tracks.len(), 2);
    let a = &answer.tracks[0];
    assert_eq!((a.mid.as_str(), a.kind), ("0", MediaKind::Audio));
    assert_eq!(a.codec.codec, Codec::Opus);
    assert_eq!((a.codec.payload_type, a.codec.channels), (111, Some(2)));
    assert_eq!(a.rtx_payload_type, None);
    assert!(!a.simulcast);
    assert_eq!(a.layers.len(), 1);
    assert_eq!(a.layers[0].ssrc, Some(2873926105));
    assert_eq!(a.layers[0].rid, None);

    let v = &answer.tracks[1];
    assert_eq!((v.mid.as_str(), v.kind), ("1", MediaKind::Video));
    assert_eq!((v.codec.codec, v.codec.name.as_str()), (Codec::Vp8, "VP8"));
    assert_eq!((v.codec.payload_type, v.codec.clock_rate), (96, 90_000));
    assert_eq!(v.rtx_payload_type, Some(97));
    assert!(v.simulcast);
    let rids: Vec<&[u8]> = v.layers.iter().map(|l| l.rid.as_deref().unwrap()).collect();
    assert_eq!(rids, [b"q", b"h", b"f"], "lowest quality first");
    assert!(v.layers.iter().all(|l| l.ssrc.is_none()));
}

/// Moves `first` to the front of the video m-line's format list (setCodecPreferences).
fn prefer(offer: &str, first: u8) -> String {
    let old = offer
        .lines()
        .find(|l| l.starts_with("m=video"))
        .unwrap()
        .to_owned();
    let mut parts: Vec<String> = old.split(' ').map(str::to_owned).collect();
    let pos = parts
        .iter()
        .skip(3)
        .position(|p| *p == first.to_string())
        .unwrap()
        + 3;
    let pt = parts.remove(pos);
    parts.insert(3, pt);
    offer.replace(&old, &parts.join(" "))
}

#[test]
fn whip_answers_the_offerers_first_supported_codec() {
    // (preferred pt, answered codec, rtx, name)
    let cases = [
        (98, 98, 99, "VP9"),     // VP9 profile 0
        (106, 106, 107, "H264"), // constrained baseline, packetization-mode 1
        (102, 102, 103, "H264"), // baseline
        (127, 127, 125, "H264"), // main
        (112, 112, 113, "H264"), // high
        (45, 45, 46, "AV1"),
        // H.264 packetization-mode 0 is skipped for the next offered (VP8).
        (104, 96, 97, "VP8"),
        // RED is not a primary codec we forward.
        (114, 96, 97, "VP8"),
    ];
    for (first, pt, rtx, name) in cases {
        let offer = parse(&prefer(CHROME_WHIP, first));
        let answer = answer_publish(&offer, &local()).unwrap();
        let d = check_answer(&answer.sdp, &offer);
        let video = &d.media_descriptions[1];
        assert_eq!(formats(video), [pt, rtx], "preferring {first}");
        assert_eq!(fmtp(video, rtx), Some(format!("apt={pt}")));
        let track = &answer.tracks[1];
        assert_eq!(track.codec.name, name);
        assert_eq!(track.codec.payload_type, pt);
        assert_eq!(track.rtx_payload_type, Some(rtx));
        let offered_fmtp = offer.media[1]
            .codecs
            .iter()
            .find(|c| c.payload_type == pt)
            .unwrap()
            .fmtp
            .clone();
        assert_eq!(fmtp(video, pt), offered_fmtp);
        assert_eq!(track.codec.fmtp, offered_fmtp);
    }
}

/// The sources a room would hold after the Chrome WHIP publish above.
fn chrome_sources() -> Vec<SourceTrack> {
    let published = answer_publish(&parse(CHROME_WHIP), &local()).unwrap();
    published
        .tracks
        .iter()
        .enumerate()
        .map(|(i, t)| SourceTrack {
            track_id: 1000 + i as u64,
            stream_id: "alice".into(),
            kind: t.kind,
            codec: t.codec.clone(),
            rtx_payload_type: t.rtx_payload_type,
            ext_uris: published.ext_uris.clone(),
        })
        .collect()
}

#[test]
fn chrome_whep_recvonly() {
    let offer = parse(CHROME_WHEP);
    let sources = chrome_sources();
    let answer = answer_subscribe(&offer, &local(), &sources).unwrap();
    let d = check_answer(&answer.sdp, &offer);
    assert_eq!(session_attrs(&d, "group"), ["BUNDLE 0 1"]);
    assert_eq!(session_attrs(&d, "msid-semantic"), ["WMS *"]);

    let audio = &d.media_descriptions[0];
    assert_eq!(direction(audio), "sendonly");
    assert_eq!(formats(audio), [111]);
    assert_eq!(attrs(audio, "msid"), ["alice 1000"]);
    let subs = &answer.subscriptions;
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[0].track_id, 1000);
    assert_eq!(subs[0].mid, "0");
    assert_eq!(subs[0].payload_type, 111);
    assert_eq!(subs[0].rtx, None);
    assert_eq!(
        attrs(audio, "ssrc"),
        [format!("{} cname:sluice", subs[0].ssrc)]
    );
    // No mid or rid: forwarded packets carry the publisher's.
    assert_eq!(
        extmaps(audio),
        [
            format!("1 {URI_AUDIO_LEVEL}"),
            format!("2 {URI_ABS_SEND_TIME}"),
            format!("3 {URI_TRANSPORT_CC}"),
        ]
    );

    let video = &d.media_descriptions[1];
    assert_eq!(direction(video), "sendonly");
    assert_eq!(formats(video), [96, 97]);
    assert_eq!(attrs(video, "msid"), ["alice 1001"]);
    let (rtx_ssrc, rtx_pt) = subs[1].rtx.unwrap();
    assert_eq!((subs[1].track_id, subs[1].mid.as_str()), (1001, "1"));
    assert_eq!((subs[1].payload_type, rtx_pt), (96, 97));
    assert_eq!(
        attrs(video, "ssrc-group"),
        [format!("FID {} {rtx_ssrc}", subs[1].ssrc)]
    );
    assert_eq!(
        attrs(video, "ssrc"),
        [
            format!("{} cname:sluice", subs[1].ssrc),
            format!("{rtx_ssrc} cname:sluice")
        ]
    );
    assert_eq!(
        extmaps(video),
        [
            format!("2 {URI_ABS_SEND_TIME}"),
            format!("3 {URI_TRANSPORT_CC}")
        ]
    );
    assert!(attrs(video, "rid").is_empty() && attrs(video, "simulcast").is_empty());

    let ssrcs = [subs[0].ssrc, subs[1].ssrc, rtx_ssrc];
    assert!(ssrcs.iter().all(|s| *s != 0));
    assert!(ssrcs[0] != ssrcs[1] && ssrcs[1] != ssrcs[2] && ssrcs[0] != ssrcs[2]);

    assert_eq!(
        answer.extensions,
        sluice_dataplane::rtp::ExtensionIds {
            transport_cc: 3,
            abs_send_time: 2,
            audio_level: 1,
            ..Default::default()
        }
    );

    // The publisher negotiated 1 audio level, 2 abs-send-time, 3 TWCC, 4 mid, 10 rid,
    // 11 repaired rid. Shared URIs keep their meaning; mid/rid move to an id the
    // subscriber did not negotiate (4: lowest of 1..=14 not in the answer).
    let audio_map = &subs[0].ext_remap;
    assert_eq!(audio_map[1], 1);
    assert_eq!(audio_map[2], 2);
    assert_eq!(audio_map[3], 3);
    for pub_id in [4, 10, 11] {
        assert_eq!(audio_map[pub_id], 4);
    }
    let video_map = &subs[1].ext_remap;
    // Audio level is not negotiated on the video m-section.
    assert_eq!(video_map[1], 4);
    assert_eq!((video_map[2], video_map[3]), (2, 3));
    let used: Vec<usize> = (0..256).filter(|i| video_map[*i] != 0).collect();
    assert_eq!(used, [1, 2, 3, 4, 10, 11], "unused entries stay 0");
}

#[test]
fn whep_remap_avoids_every_id_the_subscriber_negotiated() {
    // A subscriber with audio level on 4 (the publisher's mid id), TWCC on 12 and mid on
    // 9: the publisher's mid, rid and repaired rid must land on 1, the lowest id the
    // answer leaves unused.
    let offer_text = CHROME_WHEP
        .replace(
            "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
            "a=extmap:12 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        )
        .replace(
            "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
            "a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid",
        )
        .replace(
            "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
            "a=extmap:4 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        );
    let offer = parse(&offer_text);
    let answer = answer_subscribe(&offer, &local(), &chrome_sources()).unwrap();
    check_answer(&answer.sdp, &offer);
    assert_eq!(
        answer.extensions,
        sluice_dataplane::rtp::ExtensionIds {
            transport_cc: 12,
            abs_send_time: 2,
            audio_level: 4,
            ..Default::default()
        }
    );
    let map = &answer.subscriptions[0].ext_remap;
    assert_eq!(map[1], 4, "audio level: publisher 1 -> subscriber 4");
    assert_eq!(map[2], 2, "abs-send-time keeps 2");
    assert_eq!(map[3], 12, "TWCC: publisher 3 -> subscriber 12");
    for pub_id in [4, 10, 11] {
        assert_eq!(
            map[pub_id], 1,
            "publisher id {pub_id} -> 1, unused by the subscriber"
        );
    }
    let video_map = &answer.subscriptions[1].ext_remap;
    assert_eq!(video_map[4], 1);
    assert_eq!(video_map[1], 1, "audio level is not negotiated on video");
}

#[test]
fn whep_h264_matches_profile_and_mode_not_level() {
    let mut sources = chrome_sources();
    sources[1].codec = CodecSpec {
        codec: Codec::H264,
        name: "H264".into(),
        payload_type: 126,
        clock_rate: 90_000,
        channels: None,
        fmtp: Some("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e034".into()),
        rtcp_fb: vec![],
    };
    let offer = parse(CHROME_WHEP);
    let answer = answer_subscribe(&offer, &local(), &sources).unwrap();
    let d = check_answer(&answer.sdp, &offer);
    let video = &d.media_descriptions[1];
    // 102 is baseline (42001f), 106 constrained baseline like the source.
    assert_eq!(formats(video), [106, 107]);
    assert_eq!(
        fmtp(video, 106).as_deref(),
        Some("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f")
    );
    assert_eq!(answer.subscriptions[1].payload_type, 106);
    assert_eq!(answer.subscriptions[1].rtx.map(|r| r.1), Some(107));

    // High profile goes to 112, VP9 profile 2 to 100.
    sources[1].codec.fmtp = Some("packetization-mode=1;profile-level-id=640c1f".into());
    let no_constrained_high = answer_subscribe(&offer, &local(), &sources[1..]);
    assert!(matches!(
        no_constrained_high,
        Err(SdpError::NoCommonCodec(_))
    ));
    sources[1].codec.fmtp = Some("packetization-mode=1;profile-level-id=640032".into());
    let answer = answer_subscribe(&offer, &local(), &sources).unwrap();
    assert_eq!(answer.subscriptions[1].payload_type, 112);
    sources[1].codec = CodecSpec {
        codec: Codec::Vp9,
        name: "VP9".into(),
        fmtp: Some("profile-id=2".into()),
        ..sources[1].codec.clone()
    };
    let answer = answer_subscribe(&offer, &local(), &sources).unwrap();
    assert_eq!(answer.subscriptions[1].payload_type, 100);
}

#[test]
fn whep_sources_that_cannot_be_sent() {
    let offer = parse(CHROME_WHEP);
    let mut sources = chrome_sources();
    // A video source in a codec this subscriber lacks: its m-section goes inactive,
    // the audio one is still sent.
    sources[1].codec.name = "H265".into();
    sources[1].codec.codec = Codec::Other;
    let answer = answer_subscribe(&offer, &local(), &sources).unwrap();
    let d = check_answer(&answer.sdp, &offer);
    assert_eq!(direction(&d.media_descriptions[0]), "sendonly");
    let video = &d.media_descriptions[1];
    assert_eq!(direction(video), "inactive");
    assert_eq!(video.media_name.port.value, 9, "inactive, not rejected");
    assert!(attrs(video, "msid").is_empty() && attrs(video, "ssrc").is_empty());
    assert_eq!(answer.subscriptions.len(), 1);

    // Nothing at all can be sent.
    let err = answer_subscribe(&offer, &local(), &sources[1..]).unwrap_err();
    assert!(matches!(err, SdpError::NoCommonCodec(_)), "{err}");
}

#[test]
fn whep_extra_sections_are_inactive_and_extra_sources_wait() {
    // Two audio sources, one audio m-section: the first source is sent.
    let offer = parse(CHROME_WHEP);
    let mut sources = chrome_sources();
    let mut second_audio = sources[0].clone();
    second_audio.track_id = 2000;
    sources.insert(0, second_audio);
    let answer = answer_subscribe(&offer, &local(), &sources[..2]).unwrap();
    let d = check_answer(&answer.sdp, &offer);
    assert_eq!(answer.subscriptions.len(), 1);
    assert_eq!(answer.subscriptions[0].track_id, 2000);
    assert_eq!(direction(&d.media_descriptions[1]), "inactive");
    assert_eq!(formats(&d.media_descriptions[1]), [96, 97]);
}

#[test]
fn gstreamer_webrtcbin_publish() {
    let offer = parse(GSTREAMER);
    assert_eq!(offer.ice_ufrag, "ZxS+0gaBbS9m5S/PzDUlO3FoZVeQy5ql");
    assert_eq!(offer.fingerprint.value[0], 0xd6);
    let answer = answer_publish(&offer, &local()).unwrap();
    let d = check_answer(&answer.sdp, &offer);
    assert_eq!(session_attrs(&d, "group"), ["BUNDLE video0 audio1"]);

    let video = &d.media_descriptions[0];
    assert_eq!(attrs(video, "mid"), ["video0"]);
    assert_eq!(direction(video), "recvonly");
    assert_eq!(formats(video), [96, 97]);
    assert_eq!(
        rtcp_fb(video, 96),
        ["nack", "nack pli", "ccm fir", "transport-cc"]
    );
    assert_eq!(extmaps(video), [format!("1 {URI_TRANSPORT_CC}")]);
    let audio = &d.media_descriptions[1];
    assert_eq!(direction(audio), "recvonly");
    assert_eq!(rtpmap(audio, 111).as_deref(), Some("opus/48000/2"));

    assert_eq!(
        answer.extensions,
        sluice_dataplane::rtp::ExtensionIds {
            transport_cc: 1,
            ..Default::default()
        },
        "no mid extension offered: routing falls back to SSRCs"
    );
    let v = &answer.tracks[0];
    assert_eq!((v.mid.as_str(), v.codec.codec), ("video0", Codec::Vp8));
    assert_eq!(v.layers.len(), 1);
    assert_eq!(v.layers[0].ssrc, Some(2046620478));
    assert_eq!(v.layers[0].rtx_ssrc, Some(4012834154));
    let a = &answer.tracks[1];
    assert_eq!((a.mid.as_str(), a.codec.codec), ("audio1", Codec::Opus));
    assert_eq!(a.codec.name, "opus");
    assert_eq!(a.layers[0].ssrc, Some(3482131416));
    assert_eq!(a.layers[0].rtx_ssrc, None);
}

#[test]
fn aiortc_sendrecv_publish_and_subscribe() {
    let offer = parse(AIORTC);
    assert_eq!(offer.setup, Setup::ActPass);
    assert_eq!(offer.fingerprint.algorithm, "sha-256");
    assert_eq!(offer.fingerprint.value[0], 0x08);

    let answer = answer_publish(&offer, &local()).unwrap();
    let d = check_answer(&answer.sdp, &offer);
    let audio = &d.media_descriptions[0];
    assert_eq!(direction(audio), "recvonly");
    assert_eq!(formats(audio), [96]);
    assert_eq!(rtpmap(audio, 96).as_deref(), Some("opus/48000/2"));
    assert!(!audio.has_attribute("rtcp-rsize"), "not offered");
    let video = &d.media_descriptions[1];
    assert_eq!(direction(video), "recvonly");
    assert_eq!(formats(video), [97, 98]);
    assert_eq!(rtcp_fb(video, 97), ["nack", "nack pli", "goog-remb"]);
    assert_eq!(answer.extensions.mid, 1);
    assert_eq!(answer.extensions.abs_send_time, 3);
    assert_eq!(answer.extensions.audio_level, 2);
    assert_eq!(answer.tracks[0].layers[0].ssrc, Some(1750294420));
    assert_eq!(answer.tracks[1].layers[0].ssrc, Some(2404521146));
    assert_eq!(answer.tracks[1].layers[0].rtx_ssrc, Some(3383358402));

    // The same offer as a WHEP subscriber: answered sendonly.
    let answer = answer_subscribe(&offer, &local(), &chrome_sources()).unwrap();
    let d = check_answer(&answer.sdp, &offer);
    assert_eq!(direction(&d.media_descriptions[0]), "sendonly");
    assert_eq!(direction(&d.media_descriptions[1]), "sendonly");
    assert_eq!(formats(&d.media_descriptions[0]), [96]);
    assert_eq!(formats(&d.media_descriptions[1]), [97, 98]);
    let offered: Vec<u32> = [1750294420, 2404521146, 3383358402].into();
    for s in &answer.subscriptions {
        assert!(!offered.contains(&s.ssrc));
    }
    assert_eq!(
        extmaps(&d.media_descriptions[0]),
        [format!("2 {URI_AUDIO_LEVEL}")],
        "mid is not answered to a subscriber"
    );
}

#[test]
fn rejected_sections_keep_their_place() {
    // A data channel and a stopped transceiver: both port 0, out of BUNDLE.
    let text = CHROME_WHIP.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 2")
        + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\n\
           c=IN IP4 0.0.0.0\n\
           a=ice-ufrag:Hb9q\n\
           a=ice-pwd:kX2vQm7sW0pLr4dN8tYc1eZa\n\
           a=fingerprint:sha-256 10:6E:EC:F3:87:BC:C4:DB:98:78:75:F5:04:ED:42:CE:64:D8:01:15:6E:AB:35:92:B6:A1:60:7A:48:21:ED:2E\n\
           a=setup:actpass\n\
           a=mid:2\n\
           a=sctp-port:5000\n\
           a=max-message-size:262144\n\
           m=video 0 UDP/TLS/RTP/SAVPF 96\n\
           c=IN IP4 0.0.0.0\n\
           a=mid:3\n\
           a=inactive\n\
           a=rtcp-mux\n\
           a=rtpmap:96 VP8/90000\n";
    let offer = parse(&text);
    let answer = answer_publish(&offer, &local()).unwrap();
    let d = check_answer(&answer.sdp, &offer);
    assert_eq!(session_attrs(&d, "group"), ["BUNDLE 0 1"]);
    let dc = &d.media_descriptions[2];
    assert_eq!(dc.media_name.port.value, 0);
    assert_eq!(dc.media_name.formats, ["webrtc-datachannel"]);
    assert_eq!(attrs(dc, "mid"), ["2"]);
    let stopped = &d.media_descriptions[3];
    assert_eq!(stopped.media_name.port.value, 0);
    assert_eq!(rtpmap(stopped, 96).as_deref(), Some("VP8/90000"));
    assert_eq!(answer.tracks.len(), 2);
}

#[test]
fn without_bundle_only_the_first_section_is_accepted() {
    let offer = parse(&GSTREAMER.replace("a=group:BUNDLE video0 audio1\n", ""));
    assert!(offer.bundle.is_none());
    let answer = answer_publish(&offer, &local()).unwrap();
    let d = check_answer(&answer.sdp, &offer);
    assert!(
        session_attrs(&d, "group").is_empty(),
        "an answer cannot add BUNDLE"
    );
    assert_eq!(d.media_descriptions[0].media_name.port.value, 9);
    assert_eq!(d.media_descriptions[1].media_name.port.value, 0);
    assert_eq!(answer.tracks.len(), 1);
}

#[test]
fn simulcast_needs_the_rid_extension() {
    let text = CHROME_WHIP.replace(
        "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\n",
        "",
    );
    let offer = parse(&text);
    let answer = answer_publish(&offer, &local()).unwrap();
    let d = check_answer(&answer.sdp, &offer);
    let video = &d.media_descriptions[1];
    assert!(attrs(video, "rid").is_empty() && attrs(video, "simulcast").is_empty());
    let v = &answer.tracks[1];
    assert!(!v.simulcast);
    assert_eq!(v.layers.len(), 1);
    assert_eq!((v.layers[0].ssrc, v.layers[0].rid.as_ref()), (None, None));
}

#[test]
fn simulcast_paused_and_unannounced_rids() {
    let text = CHROME_WHIP
        .replace("a=simulcast:send f;h;q", "a=simulcast:send f;~h;q,x;z")
        .replace(
            "a=rid:q send",
            "a=rid:q send\na=rid:x send pt=96;max-width=320",
        );
    let offer = parse(&text);
    let answer = answer_publish(&offer, &local()).unwrap();
    let d = check_answer(&answer.sdp, &offer);
    let video = &d.media_descriptions[1];
    // h is paused, z has no a=rid line; of "q,x" the first alternative is taken.
    assert_eq!(attrs(video, "rid"), ["f recv", "q recv"]);
    assert_eq!(attrs(video, "simulcast"), ["recv f;q"]);
    let rids: Vec<&[u8]> = answer.tracks[1]
        .layers
        .iter()
        .map(|l| l.rid.as_deref().unwrap())
        .collect();
    assert_eq!(rids, [b"q", b"f"]);
}

#[test]
fn layer_ranking() {
    let r = |v: &[&str]| rank(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(r(&["f", "h", "q"]), ["q", "h", "f"]);
    assert_eq!(r(&["h", "m", "l"]), ["l", "m", "h"]);
    assert_eq!(r(&["h", "l"]), ["l", "h"]);
    assert_eq!(r(&["f", "h"]), ["h", "f"]);
    assert_eq!(r(&["HIGH", "low", "mid"]), ["low", "mid", "HIGH"]);
    assert_eq!(r(&["high", "medium", "low"]), ["low", "medium", "high"]);
    assert_eq!(r(&["2", "0", "1"]), ["0", "1", "2"]);
    assert_eq!(r(&["r10", "r2", "r1"]), ["r1", "r2", "r10"]);
    // Unknown names keep the offer's order.
    assert_eq!(r(&["c", "a", "b"]), ["c", "a", "b"]);
    assert_eq!(r(&["q", "m", "f"]), ["q", "m", "f"]);
}

#[test]
fn h264_profiles() {
    let p = |plid: &str| {
        h264_profile(Some(&format!(
            "packetization-mode=1;profile-level-id={plid}"
        )))
    };
    assert_eq!(p("42e01f"), Some(H264Profile::ConstrainedBaseline));
    assert_eq!(p("42C028"), Some(H264Profile::ConstrainedBaseline));
    assert_eq!(p("4d801f"), Some(H264Profile::ConstrainedBaseline));
    assert_eq!(p("42001f"), Some(H264Profile::Baseline));
    assert_eq!(p("4d0032"), Some(H264Profile::Main));
    assert_eq!(p("640c1f"), Some(H264Profile::ConstrainedHigh));
    assert_eq!(p("640034"), Some(H264Profile::High));
    assert_eq!(p("f4001f"), Some(H264Profile::PredictiveHigh444));
    assert_eq!(p("6e001f"), None);
    assert_eq!(p("42e0"), None);
    assert_eq!(p("zz001f"), None);
    assert_eq!(h264_profile(None), Some(H264Profile::ConstrainedBaseline));
}

#[test]
fn fingerprint_choice() {
    // sha-384 listed first: sha-256 is still the one taken.
    let text = AIORTC.replace(
        "a=fingerprint:sha-256 08:3F:7C:5D:ED:2E:21:3F:08:B6:74:A9:3F:19:C8:D0:14:F1:6E:09:6C:58:6F:03:93:38:86:27:1C:5A:48:CD\n",
        "",
    );
    let offer = parse(&text);
    assert_eq!(offer.fingerprint.algorithm, "sha-384");
    assert_eq!(offer.fingerprint.value.len(), 48);
    let text = CHROME_WHIP.replace("sha-256 10:6E", "SHA-256 10:6e");
    assert_eq!(parse(&text).fingerprint.algorithm, "sha-256");
    // Unknown hashes alone are not enough.
    let text = CHROME_WHIP.replace("sha-256 10:6E", "md5 10:6E");
    assert!(matches!(parse_offer(&text), Err(SdpError::Unsupported(_))));
    // A known hash of the wrong length is malformed.
    let text = CHROME_WHIP.replace(":ED:2E\n", "\n");
    assert!(matches!(parse_offer(&text), Err(SdpError::Malformed(_))));
}

#[test]
fn line_endings_and_session_level_transport() {
    // LF-only offers parse too; transport attributes may sit at session level.
    let text = GSTREAMER
        .replace("a=ice-ufrag:ZxS+0gaBbS9m5S/PzDUlO3FoZVeQy5ql\n", "")
        .replace("a=ice-pwd:8ylzJ2UWJHCG2/GnI9cBcOWBfZ2u8ZeB\n", "")
        .replace(
            "a=ice-options:trickle\n",
            "a=ice-options:trickle\na=ice-ufrag:sess\na=ice-pwd:sessionlevelpassword00\n",
        );
    let offer = parse_offer(&text).unwrap();
    assert_eq!(
        (offer.ice_ufrag.as_str(), offer.ice_pwd.as_str()),
        ("sess", "sessionlevelpassword00")
    );
    // setup:active is fine: we are passive either way. No setup at all means active.
    let active = parse(&CHROME_WHIP.replace("a=setup:actpass", "a=setup:active"));
    assert_eq!(active.setup, Setup::Active);
    let none = parse(&CHROME_WHIP.replace("a=setup:actpass\n", ""));
    assert_eq!(none.setup, Setup::Active);
}

fn err(text: &str) -> SdpError {
    match parse_offer(&crlf(text)) {
        Err(e) => e,
        Ok(offer) => answer_publish(&offer, &local()).map(|_| ()).unwrap_err(),
    }
}

#[test]
fn malformed_offers() {
    for text in [
        "",
        "hello",
        "v=0\n",
        "o=- 1 1 IN IP4 0.0.0.0\ns=-\nt=0 0\n",
        "v=1\no=- 1 1 IN IP4 0.0.0.0\ns=-\nt=0 0\nm=audio 9 UDP/TLS/RTP/SAVPF 111\n",
        "v=0\no=- 1 1 IN IP4 0.0.0.0\ns=-\nt=0 0\nm=audio 99999 UDP/TLS/RTP/SAVPF 111\n",
    ] {
        assert!(matches!(err(text), SdpError::Malformed(_)), "{text:?}");
    }
    let cases = [
        ("a=rtpmap:96 VP8/90000", "a=rtpmap:96 VP8"),
        ("a=rtpmap:96 VP8/90000", "a=rtpmap:300 VP8/90000"),
        (
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
            "m=video 9 UDP/TLS/RTP/SAVPF 96 x97",
        ),
        ("a=mid:1", "a=mid:0"),
        ("a=mid:1", "a=mid:a-mid-longer-than-sixteen"),
        ("a=extmap:10 urn", "a=extmap:0 urn"),
        ("a=extmap:10 urn", "a=extmap:10/sideways urn"),
        ("a=rid:q send", "a=rid:q sideways"),
        ("a=rid:q send", "a=rid:q!x send"),
        ("a=simulcast:send f;h;q", "a=simulcast:send"),
        ("a=simulcast:send f;h;q", "a=simulcast:up f;h;q"),
        ("a=ssrc:2873926105 cname", "a=ssrc:x cname"),
        ("a=ice-ufrag:Hb9q", "a=ice-ufrag:Hb 9q"),
        ("a=setup:actpass", "a=setup:sometimes"),
        // One id, two URIs, in two bundled m-sections.
        (
            "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
            "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
        ),
        // ...or in one.
        (
            "a=extmap:13 urn:3gpp:video-orientation",
            "a=extmap:2 urn:3gpp:video-orientation",
        ),
    ];
    for (from, to) in cases {
        let text = fixture_with(from).replacen(from, to, 1);
        assert!(
            matches!(err(&text), SdpError::Malformed(_)),
            "{to:?}: {:?}",
            err(&text)
        );
    }
    // Control characters, and a bare CR that would split a line in our answer.
    let text = CHROME_WHIP.replace("a=mid:1", "a=mid:1\0");
    assert!(matches!(parse_offer(&text), Err(SdpError::Malformed(_))));
    let text = crlf(CHROME_WHIP).replace("a=fmtp:111 minptime=10", "a=fmtp:111 minptime=10\ra=x");
    assert!(matches!(parse_offer(&text), Err(SdpError::Malformed(_))));
    // Size cap.
    let text = crlf(CHROME_WHIP) + &"a=x-padding:0123456789\r\n".repeat(MAX_OFFER_BYTES / 20);
    assert!(matches!(parse_offer(&text), Err(SdpError::Malformed(_))));
}

/// The fixture a malformed-case edit applies to.
fn fixture_with(line: &str) -> &'static str {
    if CHROME_WHIP.contains(line) {
        CHROME_WHIP
    } else {
        GSTREAMER
    }
}

#[test]
fn unsupported_offers() {
    let cases = [
        // No fingerprint anywhere.
        CHROME_WHIP
            .lines()
            .filter(|l| !l.starts_with("a=fingerprint"))
            .collect::<Vec<_>>()
            .join("\n"),
        // No ICE credentials.
        CHROME_WHIP
            .lines()
            .filter(|l| !l.starts_with("a=ice-pwd"))
            .collect::<Vec<_>>()
            .join("\n"),
        CHROME_WHIP.replace("a=setup:actpass", "a=setup:passive"),
        CHROME_WHIP.replace("a=setup:actpass", "a=setup:holdconn"),
        CHROME_WHIP.replace("a=extmap-allow-mixed", "a=ice-lite"),
        // WHIP offers send.
        CHROME_WHIP.replace("a=sendonly", "a=recvonly"),
        CHROME_WHEP.to_owned(),
        // No rtcp-mux: nothing can share our one port.
        CHROME_WHIP.replace("a=rtcp-mux\n", ""),
        // Not DTLS-SRTP.
        CHROME_WHIP.replace("UDP/TLS/RTP/SAVPF", "RTP/AVP"),
        // All inactive: nothing to publish.
        CHROME_WHIP.replace("a=sendonly", "a=inactive"),
        // A mid URI on two ids across the bundle.
        CHROME_WHIP.replacen(
            "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
            "a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid",
            1,
        ),
    ];
    for text in cases {
        let e = err(&text);
        assert!(matches!(e, SdpError::Unsupported(_)), "{e}");
    }
    // WHEP offers receive.
    let offer = parse(CHROME_WHIP);
    let e = answer_subscribe(&offer, &local(), &chrome_sources()).unwrap_err();
    assert!(matches!(e, SdpError::Unsupported(_)), "{e}");
}

#[test]
fn no_common_codec() {
    let text = "v=0\n\
        o=- 1 1 IN IP4 0.0.0.0\n\
        s=-\n\
        t=0 0\n\
        a=group:BUNDLE 0 1\n\
        a=ice-ufrag:abcd\n\
        a=ice-pwd:abcdefghijklmnopqrstuv\n\
        a=fingerprint:sha-256 10:6E:EC:F3:87:BC:C4:DB:98:78:75:F5:04:ED:42:CE:64:D8:01:15:6E:AB:35:92:B6:A1:60:7A:48:21:ED:2E\n\
        a=setup:actpass\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 0 8 9\n\
        a=mid:0\n\
        a=sendonly\n\
        a=rtcp-mux\n\
        a=rtpmap:0 PCMU/8000\n\
        a=rtpmap:8 PCMA/8000\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96 97 98\n\
        a=mid:1\n\
        a=sendonly\n\
        a=rtcp-mux\n\
        a=rtpmap:96 H263-1998/90000\n\
        a=rtpmap:97 H264/90000\n\
        a=fmtp:97 packetization-mode=0;profile-level-id=42e01f\n\
        a=rtpmap:98 H264/90000\n\
        a=fmtp:98 packetization-mode=1;profile-level-id=f4001f\n";
    let e = err(text);
    assert!(matches!(e, SdpError::NoCommonCodec(_)), "{e}");
    // Opus in mono is not Opus as WebRTC negotiates it.
    let e = err(&text.replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:0 opus/48000"));
    assert!(matches!(e, SdpError::NoCommonCodec(_)), "{e}");
    // One forwardable m-section is enough.
    let text = text.replace("H263-1998/90000", "VP8/90000");
    let offer = parse(&text);
    let answer = answer_publish(&offer, &local()).unwrap();
    let d = check_answer(&answer.sdp, &offer);
    assert_eq!(d.media_descriptions[0].media_name.port.value, 0);
    assert_eq!(session_attrs(&d, "group"), ["BUNDLE 1"]);
    assert_eq!(answer.tracks.len(), 1);
}

#[test]
fn extension_directions_are_mirrored() {
    let text = CHROME_WHIP
        .replace(
            "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
            "a=extmap:3/sendonly http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        )
        .replace(
            "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
            "a=extmap:2/recvonly http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        );
    let offer = parse(&text);
    let answer = answer_publish(&offer, &local()).unwrap();
    let d = check_answer(&answer.sdp, &offer);
    let audio = extmaps(&d.media_descriptions[0]);
    assert!(audio.contains(&format!("3/recvonly {URI_TRANSPORT_CC}")));
    assert!(
        !audio.iter().any(|e| e.contains(URI_ABS_SEND_TIME)),
        "the offerer never sends it"
    );
    assert_eq!(answer.extensions.abs_send_time, 0);
}

// Offers captured from the real clients (CRLF as sent): GStreamer 1.22 webrtcbin, aiortc
// 1.16, Chromium 156.
const CAPTURED_GSTREAMER: &str =
    include_str!("fixtures/captured-gstreamer-1.22-webrtcbin-whip.sdp");
const CAPTURED_AIORTC_WHIP: &str = include_str!("fixtures/captured-aiortc-1.16-whip.sdp");
const CAPTURED_AIORTC_WHEP: &str = include_str!("fixtures/captured-aiortc-1.16-whep.sdp");
const CAPTURED_CHROMIUM_WHEP: &str = include_str!("fixtures/captured-chromium-156-whep.sdp");

fn parse_captured(text: &str) -> Offer {
    assert!(text.contains("\r\n"));
    parse_offer(text).unwrap_or_else(|e| panic!("offer rejected: {e}"))
}

#[test]
fn captured_gstreamer_whip_with_bundle_only_audio() {
    let offer = parse_captured(CAPTURED_GSTREAMER);
    assert_eq!((offer.media[1].port, offer.media[1].bundle_only), (0, true));
    let answer = answer_publish(&offer, &local()).unwrap();
    let d = check_answer(&answer.sdp, &offer);
    assert_eq!(session_attrs(&d, "group"), ["BUNDLE video0 audio1"]);
    let video = &d.media_descriptions[0];
    assert_eq!(formats(video), [96], "no RTX offered");
    assert_eq!(rtcp_fb(video, 96), ["nack pli", "ccm fir", "transport-cc"]);
    let audio = &d.media_descriptions[1];
    assert_eq!(audio.media_name.port.value, 9, "bundle-only is accepted");
    assert_eq!(direction(audio), "recvonly");
    assert_eq!(
        fmtp(audio, 111).as_deref(),
        Some("sprop-stereo=1;sprop-maxcapturerate=48000")
    );
    assert_eq!(answer.extensions.transport_cc, 3);
    assert_eq!(answer.extensions.mid, 0);
    let ssrcs: Vec<Option<u32>> = answer.tracks.iter().map(|t| t.layers[0].ssrc).collect();
    assert_eq!(ssrcs, [Some(4014707504), Some(2019889411)]);
    assert_eq!(answer.tracks[0].rtx_payload_type, None);
}

#[test]
fn captured_aiortc_whip_and_whep() {
    let offer = parse_captured(CAPTURED_AIORTC_WHIP);
    let answer = answer_publish(&offer, &local()).unwrap();
    let d = check_answer(&answer.sdp, &offer);
    assert_eq!(formats(&d.media_descriptions[0]), [97, 98]);
    assert_eq!(formats(&d.media_descriptions[1]), [96]);
    let v = &answer.tracks[0];
    assert_eq!((v.mid.as_str(), v.codec.codec), ("0", Codec::Vp8));
    assert_eq!(
        (v.layers[0].ssrc, v.layers[0].rtx_ssrc),
        (Some(3546478280), Some(661081142))
    );
    assert_eq!(answer.tracks[1].layers[0].ssrc, Some(3556062937));

    let offer = parse_captured(CAPTURED_AIORTC_WHEP);
    let answer = answer_subscribe(&offer, &local(), &chrome_sources()).unwrap();
    let d = check_answer(&answer.sdp, &offer);
    assert_eq!(direction(&d.media_descriptions[0]), "sendonly");
    assert_eq!(direction(&d.media_descriptions[1]), "sendonly");
    let subs: Vec<(u64, &str, u8)> = answer
        .subscriptions
        .iter()
        .map(|s| (s.track_id, s.mid.as_str(), s.payload_type))
        .collect();
    assert_eq!(
        subs,
        [(1001, "0", 97), (1000, "1", 96)],
        "sources matched by kind"
    );
    assert_eq!(answer.subscriptions[0].rtx.map(|r| r.1), Some(98));
}

#[test]
fn captured_chromium_whep() {
    let offer = parse_captured(CAPTURED_CHROMIUM_WHEP);
    let answer = answer_subscribe(&offer, &local(), &chrome_sources()).unwrap();
    let d = check_answer(&answer.sdp, &offer);
    let video = &d.media_descriptions[0];
    assert_eq!(formats(video), [96, 97]);
    assert_eq!(
        extmaps(video),
        [
            format!("2 {URI_ABS_SEND_TIME}"),
            format!("4 {URI_TRANSPORT_CC}")
        ]
    );
    let audio = &d.media_descriptions[1];
    assert_eq!(formats(audio), [111]);
    assert_eq!(
        extmaps(audio),
        [
            format!("14 {URI_AUDIO_LEVEL}"),
            format!("2 {URI_ABS_SEND_TIME}"),
            format!("4 {URI_TRANSPORT_CC}"),
        ]
    );
    // Publisher (Chrome WHIP fixture) 1 audio level, 2 abs-send-time, 3 TWCC, 4 mid:
    // here 14, 2, 4 and, for mid, 1 (the lowest id this answer leaves unused).
    let audio_sub = answer.subscriptions.iter().find(|s| s.mid == "1").unwrap();
    let map = &audio_sub.ext_remap;
    assert_eq!((map[1], map[2], map[3], map[4]), (14, 2, 4, 1));
    assert_eq!((map[10], map[11]), (1, 1));
}
