#!/usr/bin/env python3
"""Probe the Janus VideoRoom HTTP API the way `sluice bench` will drive it.

    python3 scripts/janus/probe.py [--url http://10.77.0.2:8088/janus]
        API only (standard library): info, session, attach, create a room, list rooms,
        publisher join, hand-made simulcast offers (rid and ssrc-group) answered by Janus,
        destroy. Prints every request and response.

    <venv with aiortc>/bin/python scripts/janus/probe.py --e2e [--seconds 8]
        Also publishes a synthetic VP8+Opus stream with aiortc and subscribes to it with a
        second aiortc peer, counting the frames that arrive. Exit status 0 only if frames
        arrived.

    --dump DIR   write every SDP offer/answer into DIR (default: no files)
    --quiet      print only the summary

Start Janus first: sudo scripts/janus-peer.sh up
"""

import argparse
import json
import os
import queue
import random
import string
import sys
import threading
import time
import urllib.error
import urllib.request

VERBOSE = True
_log_lock = threading.Lock()


def log(*a):
    if VERBOSE:
        with _log_lock:
            print(*a, flush=True)


def txid():
    return "".join(random.choice(string.ascii_letters) for _ in range(12))


class JanusError(Exception):
    pass


class Janus:
    """One Janus session over the plain HTTP (REST) transport.

    Requests are POSTs of {"janus": <verb>, "transaction": <id>, ...}. Synchronous answers
    ("success", "ack", "error") come back in the HTTP response; plugin answers that carry
    JSEP arrive later as "event" messages on the long poll GET /janus/<session>, which also
    serves as the keepalive (any request resets the session timeout, 60 s by default)."""

    def __init__(self, url):
        self.url = url.rstrip("/")
        self.session = None
        self.events = {}  # handle id -> queue of events
        self.lock = threading.Lock()
        self.poller = None
        self.stop = threading.Event()

    def _http(self, method, path, body=None, timeout=10):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read().decode())

    def post(self, path, body, show=True):
        body = dict(body)
        body.setdefault("transaction", txid())
        if show:
            log(f"  -> POST {path or '/'} {json.dumps(_short(body))}")
        resp = self._http("POST", path, body)
        if show:
            log(f"  <- {json.dumps(_short(resp))}")
        if resp.get("janus") == "error":
            raise JanusError(resp["error"])
        return resp

    def info(self):
        return self._http("GET", "/info")

    def create(self):
        self.session = self.post("", {"janus": "create"})["data"]["id"]
        self.poller = threading.Thread(target=self._poll, daemon=True)
        self.poller.start()
        return self.session

    def attach(self, plugin="janus.plugin.videoroom"):
        h = self.post(f"/{self.session}", {"janus": "attach", "plugin": plugin})["data"]["id"]
        with self.lock:
            self.events.setdefault(h, queue.Queue())
        return h

    def message(self, handle, body, jsep=None):
        msg = {"janus": "message", "body": body}
        if jsep is not None:
            msg["jsep"] = jsep
        return self.post(f"/{self.session}/{handle}", msg)

    def trickle(self, handle, candidate):
        """candidate: {"candidate": "candidate:...", "sdpMid": "0", "sdpMLineIndex": 0}
        or {"completed": true} for end-of-candidates."""
        return self.post(f"/{self.session}/{handle}", {"janus": "trickle", "candidate": candidate})

    def keepalive(self):
        return self.post(f"/{self.session}", {"janus": "keepalive"}, show=False)

    def detach(self, handle):
        return self.post(f"/{self.session}/{handle}", {"janus": "detach"})

    def destroy(self):
        self.stop.set()
        try:
            self.post(f"/{self.session}", {"janus": "destroy"})
        except Exception as e:  # noqa: BLE001
            log(f"  destroy: {e}")

    def _poll(self):
        # Long poll: Janus holds the GET up to 30 s and answers with a keepalive if nothing
        # happened; maxev=N returns up to N events as a JSON array.
        while not self.stop.is_set():
            try:
                evs = self._http("GET", f"/{self.session}?rid={int(time.time()*1000)}&maxev=10", timeout=40)
            except Exception as e:  # noqa: BLE001
                if not self.stop.is_set():
                    log(f"  poll error: {e}")
                    time.sleep(0.5)
                continue
            if isinstance(evs, dict):
                evs = [evs]
            for ev in evs:
                if ev.get("janus") == "keepalive":
                    continue
                log(f"  <~ event {json.dumps(_short(ev))}")
                h = ev.get("sender")
                with self.lock:
                    q = self.events.setdefault(h, queue.Queue())
                q.put(ev)

    def wait_event(self, handle, pred=lambda ev: True, timeout=15):
        q = self.events[handle]
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise JanusError(f"no matching event on handle {handle} within {timeout}s")
            try:
                ev = q.get(timeout=left)
            except queue.Empty:
                continue
            if pred(ev):
                return ev


def _short(obj):
    """Copy of a message with SDPs elided, for printing."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "sdp" and isinstance(v, str):
                out[k] = f"<{len(v)} bytes of SDP>"
            else:
                out[k] = _short(v)
        return out
    if isinstance(obj, list):
        return [_short(x) for x in obj]
    return obj


def plugindata(resp):
    return resp.get("plugindata", {}).get("data", {})


def dump(args, name, sdp):
    if args.dump:
        os.makedirs(args.dump, exist_ok=True)
        with open(os.path.join(args.dump, name), "w") as f:
            f.write(sdp)


def sdp_facts(sdp):
    """A few lines of the SDP that the Rust client has to care about."""
    keys = ("a=ice-lite", "a=setup:", "a=extmap:", "a=simulcast", "a=rid:", "a=ssrc-group",
            "a=fingerprint", "a=ice-options", "m=", "a=rtcp-fb", "a=rtpmap", "a=fmtp",
            "a=group:BUNDLE", "a=msid", "a=candidate", "a=end-of-candidates", "a=sendonly",
            "a=recvonly", "a=sendrecv", "a=inactive", "a=rtcp-mux")
    return [line for line in sdp.splitlines() if line.startswith(keys)]


# A hand-written publisher offer: the minimum a browser-like sender sends, with simulcast.
# Used for the API-only probe (no media flows; nothing answers Janus's connectivity checks).
def handmade_offer(simulcast):
    ufrag = "abcd"
    pwd = "0123456789abcdef01234567"
    fp = ":".join("%02X" % random.randrange(256) for _ in range(32))
    lines = [
        "v=0",
        f"o=- {random.randrange(1 << 40)} 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=msid-semantic: WMS",
        "a=ice-options:trickle",
        # audio
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        f"a=ice-ufrag:{ufrag}",
        f"a=ice-pwd:{pwd}",
        f"a=fingerprint:sha-256 {fp}",
        "a=setup:actpass",
        "a=mid:0",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=sendonly",
        "a=msid:s a0",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=ssrc:1111 cname:probe",
        # video
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        f"a=ice-ufrag:{ufrag}",
        f"a=ice-pwd:{pwd}",
        f"a=fingerprint:sha-256 {fp}",
        "a=setup:actpass",
        "a=mid:1",
        "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
        "a=sendonly",
        "a=msid:s v0",
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
    ]
    if simulcast == "rid":
        lines += [
            # Chrome's order: lowest first. Janus 1.x treats the rid list as given by the
            # offer; see docs/janus.md for the ordering note.
            "a=rid:q send",
            "a=rid:h send",
            "a=rid:f send",
            "a=simulcast:send q;h;f",
        ]
    elif simulcast == "ssrc":
        lines += [
            "a=ssrc-group:SIM 2001 2002 2003",
            "a=ssrc-group:FID 2001 3001",
            "a=ssrc-group:FID 2002 3002",
            "a=ssrc-group:FID 2003 3003",
        ]
        for s in (2001, 2002, 2003, 3001, 3002, 3003):
            lines.append(f"a=ssrc:{s} cname:probe")
    else:
        lines += ["a=ssrc-group:FID 2001 3001", "a=ssrc:2001 cname:probe", "a=ssrc:3001 cname:probe"]
    lines.append("a=candidate:1 1 udp 2122260223 10.77.0.1 50000 typ host")
    lines.append("a=end-of-candidates")
    return "\r\n".join(lines) + "\r\n"


def api_probe(args, j, room):
    log("\n== info")
    info = j.info()
    log(f"  version {info['version_string']}, ice-lite {info['ice-lite']}, full-trickle {info['full-trickle']}, "
        f"ice-nomination {info.get('ice-nomination')}, local-ip {info.get('local-ip')}, plugins {list(info['plugins'])}")
    log("\n== session + attach")
    j.create()
    admin = j.attach()
    log(f"\n== create room {room}")
    r = j.message(admin, {
        "request": "create", "room": room, "permanent": False, "description": "sluice probe",
        "publishers": 16, "videocodec": "vp8", "audiocodec": "opus", "bitrate": 2_000_000,
        "bitrate_cap": True, "fir_freq": 0, "notify_joining": False, "audiolevel_event": False,
        "transport_wide_cc_ext": True, "is_private": False,
    })
    assert plugindata(r).get("videoroom") == "created", r
    log("\n== list rooms")
    r = j.message(admin, {"request": "list"})
    rooms = [x["room"] for x in plugindata(r)["list"]]
    assert room in rooms, rooms
    log(f"  rooms: {rooms}")
    r = j.message(admin, {"request": "exists", "room": room})
    assert plugindata(r).get("exists") is True

    results = {}
    for mode in ("none", "rid", "ssrc"):
        log(f"\n== hand-made publisher offer, simulcast={mode}")
        h = j.attach()
        r = j.message(h, {"request": "join", "ptype": "publisher", "room": room, "display": f"probe-{mode}"})
        # The join is answered "ack" synchronously; the "joined" arrives as an event.
        ev = j.wait_event(h, lambda e: plugindata(e).get("videoroom") == "joined")
        pub_id = plugindata(ev)["id"]
        offer = handmade_offer(mode)
        dump(args, f"handmade-{mode}-offer.sdp", offer)
        jsep = {"type": "offer", "sdp": offer}
        if mode == "rid":
            # Janus assumes the first a=rid is the HIGHEST layer ("hml") unless told
            # otherwise; our offer lists low first, as Chrome does.
            jsep["rid_order"] = "lmh"
        r = j.message(h, {"request": "configure", "audio": True, "video": True}, jsep=jsep)
        ev = j.wait_event(h, lambda e: "jsep" in e)
        ans = ev["jsep"]["sdp"]
        dump(args, f"handmade-{mode}-answer.sdp", ans)
        facts = sdp_facts(ans)
        results[mode] = facts
        log(f"  publisher id {pub_id}; answer ({ev['jsep']['type']}):")
        for line in facts:
            log(f"    {line}")
        # A subscriber to this publisher: expected to fail with 428 "No such feed", since a
        # feed only exists once its PeerConnection is up (nobody answers ICE here).
        sh = j.attach()
        j.message(sh, {"request": "join", "ptype": "subscriber", "room": room,
                       "streams": [{"feed": pub_id, "mid": "1", "substream": 2, "temporal": 2}]})
        ev = j.wait_event(sh, lambda e: "jsep" in e or "error" in plugindata(e))
        if "jsep" in ev:
            sub_offer = ev["jsep"]["sdp"]
            dump(args, f"handmade-{mode}-subscriber-offer.sdp", sub_offer)
            results[mode + "/subscriber"] = [x for x in sdp_facts(sub_offer)
                                             if x.startswith(("a=ssrc", "a=simulcast", "a=rid", "m="))]
        else:
            results[mode + "/subscriber"] = ["(expected) error " + str(plugindata(ev).get("error_code"))
                                             + ": " + str(plugindata(ev).get("error"))]
        j.detach(sh)
        j.detach(h)
    j.message(admin, {"request": "destroy", "room": room})
    j.detach(admin)
    return results


async def e2e(args, j, room, seconds):
    import asyncio
    import fractions

    import av
    from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import AudioStreamTrack

    class Synthetic(MediaStreamTrack):
        kind = "video"

        def __init__(self):
            super().__init__()
            self.n = 0
            self.t0 = None

        async def recv(self):
            fps = 15
            if self.t0 is None:
                self.t0 = time.time()
            target = self.t0 + self.n / fps
            delay = target - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            frame = av.VideoFrame(width=320, height=240, format="yuv420p")
            for p, v in zip(frame.planes, ((self.n * 7) % 255, 128, (self.n * 3) % 255)):
                p.update(bytes([v]) * p.buffer_size)
            frame.pts = self.n * (90000 // fps)
            frame.time_base = fractions.Fraction(1, 90000)
            self.n += 1
            return frame

    call = lambda f, *a, **k: asyncio.to_thread(f, *a, **k)  # noqa: E731

    r = await call(j.message, j.admin, {
        "request": "create", "room": room, "permanent": False, "publishers": 4,
        "videocodec": "vp8", "audiocodec": "opus", "bitrate": 1_000_000, "notify_joining": False,
    })
    assert plugindata(r).get("videoroom") == "created", r

    # ---- publisher: join, then configure with our offer; Janus answers in an event.
    ph = await call(j.attach)
    await call(j.message, ph, {"request": "join", "ptype": "publisher", "room": room, "display": "aiortc-pub"})
    ev = await call(j.wait_event, ph, lambda e: plugindata(e).get("videoroom") == "joined")
    pub_id = plugindata(ev)["id"]
    pub = RTCPeerConnection()
    src = Synthetic()
    pub.addTrack(AudioStreamTrack())
    pub.addTrack(src)
    await pub.setLocalDescription(await pub.createOffer())  # aiortc gathers before returning
    offer = pub.localDescription.sdp
    dump(args, "aiortc-pub-offer.sdp", offer)
    t_setup = time.time()
    await call(j.message, ph, {"request": "configure", "audio": True, "video": True},
               jsep={"type": "offer", "sdp": offer})
    # aiortc puts all candidates in the SDP (no trickle), so say end-of-candidates.
    await call(j.trickle, ph, {"completed": True})
    ev = await call(j.wait_event, ph, lambda e: "jsep" in e)
    answer = ev["jsep"]["sdp"]
    dump(args, "janus-pub-answer.sdp", answer)
    await pub.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    ev = await call(j.wait_event, ph, lambda e: e.get("janus") == "webrtcup", 15)
    log(f"  publisher webrtcup after {time.time() - t_setup:.2f}s")
    pub_answer_facts = sdp_facts(answer)

    # ---- subscriber: join as subscriber with streams; Janus sends an OFFER; we "start" with
    # our answer.
    sh = await call(j.attach)
    t_sub = time.time()
    await call(j.message, sh, {"request": "join", "ptype": "subscriber", "room": room,
                               "streams": [{"feed": pub_id}]})
    ev = await call(j.wait_event, sh, lambda e: "jsep" in e)
    soffer = ev["jsep"]["sdp"]
    dump(args, "janus-sub-offer.sdp", soffer)
    log(f"  subscriber 'attached' event streams: {json.dumps(plugindata(ev).get('streams'))}")
    sub = RTCPeerConnection()
    frames = {"video": 0, "audio": 0}
    first = {}
    done = asyncio.Event()

    @sub.on("track")
    def on_track(track):
        async def pump():
            try:
                while True:
                    await track.recv()
                    frames[track.kind] += 1
                    first.setdefault(track.kind, time.time() - t_sub)
            except Exception:  # noqa: BLE001  (MediaStreamError at the end)
                pass
        asyncio.ensure_future(pump())

    await sub.setRemoteDescription(RTCSessionDescription(sdp=soffer, type="offer"))
    await sub.setLocalDescription(await sub.createAnswer())
    sanswer = sub.localDescription.sdp
    dump(args, "aiortc-sub-answer.sdp", sanswer)
    await call(j.message, sh, {"request": "start"}, jsep={"type": "answer", "sdp": sanswer})
    await call(j.trickle, sh, {"completed": True})
    ev = await call(j.wait_event, sh, lambda e: e.get("janus") == "webrtcup", 15)
    log(f"  subscriber webrtcup after {time.time() - t_sub:.2f}s")
    roles = {}
    for name, pc in (("publisher", pub), ("subscriber", sub)):
        try:
            ice = pc.getTransceivers()[0].sender.transport.transport
            roles[name] = f"{ice.role} (ICE state {ice.state})"
        except Exception as e:  # noqa: BLE001
            roles[name] = f"? ({e})"
    log(f"  aiortc ICE roles: {roles}")

    # Keepalive while media runs (the long poll already keeps the session alive; an explicit
    # keepalive is what a client without a pending poll has to send every < 60 s).
    end = time.time() + seconds
    while time.time() < end:
        await asyncio.sleep(1)
        await call(j.keepalive)
    sent = src.n
    await pub.close()
    await sub.close()
    await call(j.message, j.admin, {"request": "destroy", "room": room})
    return {
        "sent_video_frames": sent,
        "received_video_frames": frames["video"],
        "received_audio_frames": frames["audio"],
        "first_video_frame_s": round(first.get("video", -1), 3),
        "ice_roles": roles,
        "publisher_answer": pub_answer_facts,
        "subscriber_offer": sdp_facts(soffer),
    }


def main():
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=os.environ.get("SLUICE_JANUS_URL", "http://10.77.0.2:8088/janus"))
    ap.add_argument("--e2e", action="store_true", help="publish and subscribe with aiortc")
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--dump", help="directory to write the SDPs into")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    VERBOSE = not args.quiet
    room = random.randrange(10_000_000, 99_999_999)
    j = Janus(args.url)
    try:
        j.info()
    except (urllib.error.URLError, OSError) as e:
        sys.exit(f"probe: {args.url}/info does not answer ({e}); run: sudo scripts/janus-peer.sh up")
    ok = True
    try:
        results = api_probe(args, j, room)
        print("API probe: OK (session, attach, create, list, exists, join, configure x3, destroy)")
        for mode, facts in results.items():
            if mode.endswith("/subscriber"):
                print(f"  simulcast={mode}: offer carries {facts}")
                continue
            sim = [x for x in facts if x.startswith(("a=simulcast", "a=rid", "a=ssrc-group"))]
            print(f"  simulcast={mode}: answer carries {sim or 'no simulcast lines'}")
        if args.e2e:
            import asyncio
            j.admin = j.attach()
            res = asyncio.run(e2e(args, j, room + 1, args.seconds))
            ok = res["received_video_frames"] > 0
            print(f"E2E: {'OK' if ok else 'FAILED'}: sent {res['sent_video_frames']} video frames, "
                  f"subscriber decoded {res['received_video_frames']} video and "
                  f"{res['received_audio_frames']} audio frames, first video frame after "
                  f"{res['first_video_frame_s']}s; aiortc ICE roles {res['ice_roles']}")
            if not VERBOSE:
                pass
            else:
                print("  Janus answer to the publisher:")
                for x in res["publisher_answer"]:
                    print("    " + x)
                print("  Janus offer to the subscriber:")
                for x in res["subscriber_offer"]:
                    print("    " + x)
    finally:
        j.destroy()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
