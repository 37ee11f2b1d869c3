#!/usr/bin/python3
"""Publish a test pattern and a tone with GStreamer's webrtcbin over WHIP.

videotestsrc -> vp8enc -> rtpvp8pay and audiotestsrc -> opusenc -> rtpopuspay feed a
webrtcbin (max-bundle, sendonly transceivers, its own RSA DTLS certificate). The offer
is POSTed once ICE gathering is complete (WHIP without trickle); the answer's candidates
are the only remote ones.

Runs under the system python3 (the one with the gi bindings). Prints one JSON object per
line on stdout: events as they happen ({"event": ...}) and, on exit, a summary
({"event": "summary", ...}). Exits after --seconds, or on SIGTERM/SIGINT, after DELETEing
the WHIP resource. Exit status 0 when the connection reached "connected", 1 otherwise.

--offer-only prints the offer SDP webrtcbin produced and exits without any HTTP.
"""

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

TWCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"


def emit(event, **fields):
    print(json.dumps({"event": event, "t": round(time.monotonic() - START, 3), **fields}), flush=True)


START = time.monotonic()


def pipeline_description(args):
    # The caps before webrtcbin name the payload types and header extensions the offer
    # carries. vp8enc: realtime deadline, a keyframe every second so a late watcher does
    # not wait long even if a PLI is lost.
    twcc = f",extmap-{args.twcc_id}=(string){TWCC_URI}" if args.twcc_id else ""
    video = (
        f"videotestsrc is-live=true pattern={args.pattern} "
        f"! video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1 "
        "! videoconvert ! queue max-size-buffers=2 leaky=downstream "
        f"! vp8enc deadline=1 cpu-used=8 threads=1 keyframe-max-dist={args.fps} "
        f"target-bitrate={args.video_kbps * 1000} error-resilient=partitions "
        f"! rtpvp8pay pt=96 mtu=1200 picture-id-mode=15-bit "
        f"! application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000{twcc} "
        "! webrtc."
    )
    audio = (
        "audiotestsrc is-live=true wave=sine freq=440 volume=0.3 "
        "! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=2 "
        "! opusenc bitrate=32000 frame-size=20 "
        "! rtpopuspay pt=111 mtu=1200 "
        f"! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000{twcc} "
        "! webrtc."
    )
    parts = ["webrtcbin name=webrtc bundle-policy=max-bundle latency=100"]
    if not args.no_video:
        parts.append(video)
    if not args.no_audio:
        parts.append(audio)
    return " ".join(parts)


def structure_to_dict(s):
    out = {}
    for i in range(s.n_fields()):
        name = s.nth_field_name(i)
        value = s.get_value(name)
        # GEnum values are ints too: name them first.
        if hasattr(value, "value_nick"):
            out[name] = value.value_nick
        elif isinstance(value, (int, float, str, bool)) or value is None:
            out[name] = value
        else:
            out[name] = str(value)
    return out


def ssrc_kinds(sdp):
    kinds, kind = {}, None
    for line in sdp.splitlines():
        if line.startswith("m="):
            kind = line[2:].split(" ", 1)[0]
        elif line.startswith("a=ssrc:") and kind:
            try:
                kinds[int(line[7:].split(" ", 1)[0])] = kind
            except ValueError:
                pass
    return kinds


def key_algorithm(pem):
    """The public key type of a PEM certificate, via openssl when it is there."""
    if not pem:
        return None
    try:
        text = subprocess.run(
            ["openssl", "x509", "-noout", "-text"],
            input=pem.encode(),
            capture_output=True,
            timeout=5,
            check=True,
        ).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        return None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Public Key Algorithm:"):
            return line.split(":", 1)[1].strip()
    return None


class Publisher:
    def __init__(self, args):
        self.args = args
        self.loop = GLib.MainLoop()
        self.pipe = Gst.parse_launch(pipeline_description(args))
        self.webrtc = self.pipe.get_by_name("webrtc")
        self.offer_sent = False
        self.offer_sdp = ""
        self.location = None
        self.publisher_id = None
        self.answer = None
        self.states = {"ice": [], "connection": [], "dtls": []}
        self.connected_at = None
        self.last_stats = {}
        self.error = None
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        self.webrtc.connect("notify::ice-connection-state", self.on_state, "ice", "ice-connection-state")
        self.webrtc.connect("notify::connection-state", self.on_state, "connection", "connection-state")
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)
        bus.connect("message::warning", self.on_warning)

    def transceivers(self):
        # "get-transceivers" returns a GArray that PyGObject cannot iterate; index instead.
        i = 0
        while True:
            t = self.webrtc.emit("get-transceiver", i)
            if t is None:
                return
            yield t
            i += 1

    # --- negotiation -------------------------------------------------------------
    def on_negotiation_needed(self, _element):
        for t in self.transceivers():
            t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        promise = Gst.Promise.new_with_change_func(self.on_offer_created, None)
        self.webrtc.emit("create-offer", None, promise)

    def on_offer_created(self, promise, _data):
        promise.wait()
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply else None
        if offer is None:
            GLib.idle_add(self.fail, f"create-offer failed: {reply}")
            return
        self.webrtc.emit("set-local-description", offer, None)
        # Gathering may already be complete (or never report it): post after a deadline anyway.
        GLib.timeout_add(self.args.gather_timeout_ms, self.send_offer, "gathering timeout")

    def on_gathering(self, element, _pspec):
        state = element.get_property("ice-gathering-state")
        emit("ice-gathering", state=state.value_nick)
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(self.send_offer, "gathering complete")

    def send_offer(self, reason):
        if self.offer_sent:
            return False
        desc = self.webrtc.get_property("local-description")
        if desc is None:
            return True  # not set yet; the timeout fires again
        self.offer_sent = True
        sdp = desc.sdp.as_text()
        self.offer_sdp = sdp
        emit("offer", reason=reason, sdp=sdp)
        if self.args.offer_only:
            self.loop.quit()
            return False
        threading.Thread(target=self.post_offer, args=(sdp,), daemon=True).start()
        return False

    def post_offer(self, sdp):
        req = urllib.request.Request(
            self.args.whip,
            data=sdp.encode(),
            method="POST",
            headers={"Content-Type": "application/sdp", **self.auth_header()},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status = resp.status
                answer = resp.read().decode()
                location = resp.headers.get("Location")
                publisher_id = resp.headers.get("X-Publisher-Id")
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace")
            GLib.idle_add(self.fail, f"WHIP POST answered {e.code}: {body.strip()}")
            return
        except (urllib.error.URLError, OSError) as e:
            GLib.idle_add(self.fail, f"WHIP POST failed: {e}")
            return
        GLib.idle_add(self.on_answer, status, answer, location, publisher_id)

    def auth_header(self):
        return {"Authorization": f"Bearer {self.args.token}"} if self.args.token else {}

    def on_answer(self, status, answer, location, publisher_id):
        if status != 201:
            return self.fail(f"WHIP POST answered {status}, expected 201")
        if location:
            self.location = urllib.parse.urljoin(self.args.whip, location)
        self.publisher_id = publisher_id
        self.answer = answer
        emit("answer", status=status, location=self.location, publisher_id=publisher_id, sdp=answer)
        res, msg = GstSdp.SDPMessage.new_from_text(answer)
        if res != GstSdp.SDPResult.OK:
            return self.fail(f"the answer does not parse as SDP ({res})")
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        promise = Gst.Promise.new_with_change_func(self.on_remote_set, None)
        self.webrtc.emit("set-remote-description", desc, promise)
        return False

    def on_remote_set(self, promise, _data):
        promise.wait()
        reply = promise.get_reply()
        if reply is not None and reply.has_field("error"):
            GLib.idle_add(self.fail, f"set-remote-description failed: {reply.get_value('error')}")
            return
        GLib.idle_add(self.watch_dtls)

    # --- states and stats -------------------------------------------------------
    def on_state(self, element, _pspec, key, prop):
        state = element.get_property(prop).value_nick
        GLib.idle_add(self.record_state, key, state)

    def record_state(self, key, state):
        if not self.states[key] or self.states[key][-1] != state:
            self.states[key].append(state)
            emit(f"{key}-state", state=state)
        if key == "connection" and state == "connected" and self.connected_at is None:
            self.connected_at = time.monotonic()
        if key == "connection" and state == "failed":
            self.error = self.error or "connection failed"
        return False

    def dtls_transport(self):
        for t in self.transceivers():
            sender = t.get_property("sender")
            transport = sender.get_property("transport") if sender else None
            if transport is not None:
                return transport
        return None

    def watch_dtls(self):
        transport = self.dtls_transport()
        if transport is None:
            return False
        transport.connect(
            "notify::state",
            lambda tr, _p: GLib.idle_add(self.record_state, "dtls", tr.get_property("state").value_nick),
        )
        self.record_state("dtls", transport.get_property("state").value_nick)
        return False

    def poll_stats(self):
        promise = Gst.Promise.new_with_change_func(self.on_stats, None)
        self.webrtc.emit("get-stats", None, promise)
        return True

    def on_stats(self, promise, _data):
        promise.wait()
        reply = promise.get_reply()
        if reply is None:
            return
        stats = {}

        def each(_field_id, value):
            if isinstance(value, Gst.Structure):
                d = structure_to_dict(value)
                stats.setdefault(d.get("type", "?"), []).append(d)
            return True

        reply.foreach(each)
        self.last_stats = stats

    # --- lifecycle ---------------------------------------------------------------
    def on_error(self, _bus, msg):
        err, debug = msg.parse_error()
        self.fail(f"pipeline error from {msg.src.get_name()}: {err.message} ({debug})")

    def on_warning(self, _bus, msg):
        warn, debug = msg.parse_warning()
        emit("warning", source=msg.src.get_name(), message=warn.message, debug=debug)

    def fail(self, why):
        self.error = self.error or why
        emit("error", message=why)
        self.loop.quit()
        return False

    def stop(self, reason):
        emit("stopping", reason=reason)
        self.loop.quit()
        return False

    def run(self):
        if self.pipe.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            self.error = "the pipeline would not start"
            return
        GLib.timeout_add(500, self.poll_stats)
        if self.args.seconds > 0:
            GLib.timeout_add(int(self.args.seconds * 1000), self.stop, "time is up")
        for sig in (signal.SIGTERM, signal.SIGINT):
            GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, self.stop, signal.Signals(sig).name)
        self.loop.run()

    def summary(self):
        transport = self.dtls_transport()
        certificate = transport.get_property("certificate") if transport else None
        remote_certificate = transport.get_property("remote-certificate") if transport else None
        # GStreamer 1.22 labels every outbound-rtp "audio"; the offer's a=ssrc lines say which is which.
        kinds = ssrc_kinds(self.offer_sdp)
        outbound = [
            {
                "kind": kinds.get(s.get("ssrc"), s.get("kind")),
                **{k: s.get(k) for k in ("ssrc", "packets-sent", "bytes-sent", "nack-count", "pli-count", "fir-count")},
            }
            for s in self.last_stats.get("outbound-rtp", [])
        ]
        remote_inbound = [
            {k: s.get(k) for k in ("ssrc", "packets-lost", "round-trip-time", "jitter", "fraction-lost")}
            for s in self.last_stats.get("remote-inbound-rtp", [])
        ]
        return {
            "event": "summary",
            "ok": self.error is None and "connected" in self.states["connection"],
            "error": self.error,
            "publisher_id": self.publisher_id,
            "location": self.location,
            "states": self.states,
            "connected_for_s": round(time.monotonic() - self.connected_at, 3) if self.connected_at else 0,
            "outbound_rtp": outbound,
            "remote_inbound_rtp": remote_inbound,
            "local_certificate_key": key_algorithm(certificate),
            "remote_certificate_key": key_algorithm(remote_certificate),
            "gstreamer": Gst.version_string(),
        }

    def delete_resource(self):
        if not self.location:
            return None
        req = urllib.request.Request(self.location, method="DELETE", headers=self.auth_header())
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status
        except urllib.error.HTTPError as e:
            return e.code
        except (urllib.error.URLError, OSError) as e:
            return str(e)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--whip", help="WHIP endpoint URL, e.g. http://10.77.0.1:8080/whip/room")
    ap.add_argument("--token", help="bearer token for the Authorization header")
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long (0: on a signal)")
    ap.add_argument("--offer-only", action="store_true", help="print the offer and exit")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--video-kbps", type=int, default=500)
    ap.add_argument("--pattern", default="ball")
    ap.add_argument("--twcc-id", type=int, default=3, help="offer TWCC as this extmap id (0: off)")
    ap.add_argument("--no-audio", action="store_true")
    ap.add_argument("--no-video", action="store_true")
    ap.add_argument("--gather-timeout-ms", type=int, default=3000)
    args = ap.parse_args()
    if not args.offer_only and not args.whip:
        ap.error("--whip is required unless --offer-only")

    Gst.init(None)
    missing = [
        e
        for e in ("webrtcbin", "nicesrc", "dtlssrtpenc", "vp8enc", "rtpvp8pay", "opusenc", "rtpopuspay", "videotestsrc", "audiotestsrc")
        if Gst.ElementFactory.find(e) is None
    ]
    if missing:
        emit("error", message=f"GStreamer elements missing: {', '.join(missing)} (run scripts/install-interop-deps.sh)")
        print(json.dumps({"event": "summary", "ok": False, "error": f"missing elements {missing}"}), flush=True)
        return 1

    pub = Publisher(args)
    pub.run()
    summary = pub.summary()
    summary["delete_status"] = pub.delete_resource()
    pub.pipe.set_state(Gst.State.NULL)
    if args.offer_only:
        return 0
    print(json.dumps(summary), flush=True)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
