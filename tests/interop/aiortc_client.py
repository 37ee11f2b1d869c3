"""aiortc as a WHIP publisher and a WHEP subscriber.

--mode both (the default) publishes a moving test pattern and a 440 Hz tone to
{base}/whip/{room}, then subscribes to that publisher through {base}/whep/{room}/{id}
and counts the video and audio frames aiortc decodes. --mode subscribe only watches
{base}/whep/{room} (the room's latest publisher). Offers are sent once ICE gathering is
complete (aiortc gathers inside setLocalDescription), the way WHIP without trickle works.

Prints one JSON object on stdout: {"ok": ..., "error": ..., "publish": {...},
"subscribe": {...}}. Exit status 0 when ok. --offer-only prints the offers aiortc would
send (publisher and subscriber) and exits without any HTTP.

Runs in the venv scripts/install-interop-deps.sh builds (target/interop-venv).
"""

import argparse
import asyncio
import fractions
import json
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from array import array

from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError
import av

START = time.monotonic()


def elapsed():
    return round(time.monotonic() - START, 3)


def log(msg, **fields):
    print(json.dumps({"t": elapsed(), "log": msg, **fields}), file=sys.stderr, flush=True)


class PatternTrack(VideoStreamTrack):
    """A moving gradient with a sliding bar: every frame differs, so the encoder sends
    real inter frames rather than near-empty ones."""

    def __init__(self, width, height):
        super().__init__()
        self.width = width
        self.height = height
        self.n = 0
        self.sent = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(width=self.width, height=self.height, format="yuv420p")
        shift = (self.n * 4) & 0xFF
        bar = (self.n * 3) % self.width
        y = frame.planes[0]
        row = bytearray(((x * 2 + shift) & 0xFF) for x in range(y.line_size))
        row[bar : bar + 16] = b"\xeb" * len(row[bar : bar + 16])
        y.update(bytes(row) * y.height)
        for i, plane in enumerate(frame.planes[1:]):
            level = (128 + (40 if i == 0 else -40) * math.sin(self.n / 15)) if self.n else 128
            plane.update(bytes([int(level) & 0xFF]) * plane.buffer_size)
        frame.pts = pts
        frame.time_base = time_base
        self.n += 1
        self.sent += 1
        return frame


class ToneTrack(MediaStreamTrack):
    """A 440 Hz tone, 20 ms frames at 48 kHz, paced in real time."""

    kind = "audio"
    RATE = 48000
    SAMPLES = 960

    def __init__(self):
        super().__init__()
        one_second = array(
            "h", (int(8000 * math.sin(2 * math.pi * 440 * i / self.RATE)) for i in range(self.RATE))
        )
        # 440 whole periods per second: the one-second table loops without a click.
        self.chunks = [
            one_second[i : i + self.SAMPLES].tobytes() for i in range(0, self.RATE, self.SAMPLES)
        ]
        self.pts = 0
        self.start = None
        self.sent = 0

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        if self.start is None:
            self.start = time.monotonic()
        else:
            self.pts += self.SAMPLES
            wait = self.start + self.pts / self.RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        frame = av.AudioFrame(format="s16", layout="mono", samples=self.SAMPLES)
        frame.planes[0].update(self.chunks[(self.pts // self.SAMPLES) % len(self.chunks)])
        frame.sample_rate = self.RATE
        frame.pts = self.pts
        frame.time_base = fractions.Fraction(1, self.RATE)
        self.sent += 1
        return frame


def prefer_codec(transceiver, kind, codec):
    if not codec:
        return
    caps = RTCRtpSender.getCapabilities(kind).codecs
    wanted = [c for c in caps if c.mimeType.lower() == f"{kind}/{codec.lower()}"]
    if not wanted:
        raise SystemExit(f"aiortc has no {kind} codec {codec}")
    rtx = [c for c in caps if c.mimeType.lower() == f"{kind}/rtx"]
    transceiver.setCodecPreferences(wanted + rtx)


def http(method, url, body=None, token=None, content_type="application/sdp"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(url, data=body.encode() if body is not None else None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode(errors="replace")


class Peer:
    """One RTCPeerConnection and what we learn about it."""

    def __init__(self, name):
        self.name = name
        self.pc = RTCPeerConnection()
        self.connection_states = []
        self.ice_states = []
        self.location = None
        self.report = {}
        self.connected = asyncio.Event()
        self.failed = asyncio.Event()

        @self.pc.on("connectionstatechange")
        def _conn():
            s = self.pc.connectionState
            self.connection_states.append(s)
            log(f"{name} connection {s}")
            if s == "connected":
                self.connected.set()
            elif s in ("failed", "closed"):
                self.failed.set()

        @self.pc.on("iceconnectionstatechange")
        def _ice():
            self.ice_states.append(self.pc.iceConnectionState)

    async def offer(self):
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def negotiate(self, url, token):
        sdp = await self.offer()
        status, headers, body = await asyncio.to_thread(http, "POST", url, sdp, token)
        headers = {k.lower(): v for k, v in headers.items()}
        self.report.update(status=status, url=url, offer=sdp)
        if status != 201:
            raise RuntimeError(f"{self.name}: POST {url} answered {status}: {body.strip()[:500]}")
        self.report["answer"] = body
        if headers.get("location"):
            self.location = urllib.parse.urljoin(url, headers["location"])
        self.report["location"] = self.location
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        return headers

    async def wait_connected(self, timeout):
        done, _ = await asyncio.wait(
            [asyncio.ensure_future(self.connected.wait()), asyncio.ensure_future(self.failed.wait())],
            timeout=timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if not self.connected.is_set():
            why = "failed" if self.failed.is_set() else f"not connected after {timeout} s"
            raise RuntimeError(
                f"{self.name}: connection {why} (connection states {self.connection_states}, ICE {self.ice_states})"
            )

    async def stats(self):
        out = []
        report = await self.pc.getStats()
        for s in report.values():
            if s.type in ("inbound-rtp", "outbound-rtp", "remote-inbound-rtp", "remote-outbound-rtp"):
                d = {"type": s.type, "kind": getattr(s, "kind", None), "ssrc": getattr(s, "ssrc", None)}
                for k in ("packetsSent", "bytesSent", "packetsReceived", "bytesReceived", "packetsLost", "jitter", "roundTripTime"):
                    if hasattr(s, k):
                        d[k] = getattr(s, k)
                out.append(d)
        return out

    def dtls_info(self):
        info = {}
        for t in self.pc.getTransceivers():
            tr = t.sender.transport
            if tr is not None:
                info["dtls_state"] = tr.state
                info["dtls_role"] = getattr(tr, "_role", None)
                ssl = getattr(tr, "_ssl", None)
                try:
                    profile = ssl.get_selected_srtp_profile() if ssl is not None else None
                except Exception:  # private API: a missing name only loses a detail
                    profile = None
                if profile:
                    info["srtp_profile"] = profile.decode()
                break
        return info

    async def finish(self, token):
        # Stats and DTLS details first: the DELETE ends the remote side's DTLS.
        self.report["stats"] = await self.stats()
        self.report.update(self.dtls_info())
        if self.location:
            status, _, _ = await asyncio.to_thread(http, "DELETE", self.location, None, token)
            self.report["delete_status"] = status
        self.report["connection_states"] = self.connection_states
        self.report["ice_states"] = self.ice_states
        await self.pc.close()


def first_codec(sdp, kind):
    """The first rtpmap of the first m= section of this kind: the codec the answer chose."""
    in_kind = False
    for line in sdp.splitlines():
        if line.startswith("m="):
            in_kind = line.startswith(f"m={kind} ")
        elif in_kind and line.startswith("a=rtpmap:"):
            return line.split(" ", 1)[1].strip()
    return None


async def consume(track, counts, key):
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        counts[key] += 1
        if key == "video_frames":
            counts["video_size"] = [frame.width, frame.height]
            counts.setdefault("first_video_frame_s", elapsed())


async def run(args):
    result = {"ok": False, "error": None, "publish": None, "subscribe": None}
    pub = sub = None
    try:
        publisher_id = args.publisher
        if args.mode == "both":
            pub = Peer("publisher")
            video = PatternTrack(args.width, args.height)
            audio = ToneTrack()
            vt = pub.pc.addTransceiver(video, direction="sendonly")
            prefer_codec(vt, "video", args.codec)
            if not args.no_audio:
                pub.pc.addTransceiver(audio, direction="sendonly")
            headers = await pub.negotiate(f"{args.base}/whip/{args.room}", args.token)
            publisher_id = headers.get("x-publisher-id")
            pub.report["publisher_id"] = publisher_id
            await pub.wait_connected(args.connect_timeout)
            log("publisher connected", publisher_id=publisher_id)
            status, _, body = await asyncio.to_thread(http, "GET", f"{args.base}/rooms/{args.room}", None, args.token)
            try:
                pub.report["room_listing"] = {"status": status, "body": json.loads(body)}
            except ValueError:
                pub.report["room_listing"] = {"status": status, "body": body[:500]}

        sub = Peer("subscriber")
        counts = {"video_frames": 0, "audio_frames": 0}
        tasks = []

        @sub.pc.on("track")
        def _track(track):
            key = "video_frames" if track.kind == "video" else "audio_frames"
            tasks.append(asyncio.ensure_future(consume(track, counts, key)))

        vt = sub.pc.addTransceiver("video", direction="recvonly")
        prefer_codec(vt, "video", args.codec)
        sub.pc.addTransceiver("audio", direction="recvonly")
        url = f"{args.base}/whep/{args.room}" + (f"/{publisher_id}" if publisher_id else "")
        await sub.negotiate(url, args.token)
        await sub.wait_connected(args.connect_timeout)
        connected_at = elapsed()
        log("subscriber connected")

        deadline = time.monotonic() + args.seconds
        want_audio = 0 if args.no_audio else args.min_audio_frames
        while time.monotonic() < deadline:
            if counts["video_frames"] >= args.min_video_frames and counts["audio_frames"] >= want_audio:
                break
            if sub.failed.is_set() or (pub and pub.failed.is_set()):
                break
            await asyncio.sleep(0.1)
        sub.report.update(counts)
        sub.report["connected_at_s"] = connected_at
        sub.report["watched_s"] = round(elapsed() - connected_at, 3)
        sub.report["video_codec"] = first_codec(sub.report.get("answer", ""), "video")
        for t in tasks:
            t.cancel()
        if pub:
            pub.report["video_frames_sent"] = video.sent
            pub.report["audio_frames_sent"] = audio.sent
        ok_video = counts["video_frames"] >= args.min_video_frames
        ok_audio = counts["audio_frames"] >= want_audio
        result["ok"] = ok_video and ok_audio
        if not result["ok"]:
            result["error"] = (
                f"decoded {counts['video_frames']} video frames (want {args.min_video_frames}) and "
                f"{counts['audio_frames']} audio frames (want {want_audio}) in {args.seconds} s"
            )
    except Exception as e:  # the report must come out whatever failed
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        for peer, key in ((pub, "publish"), (sub, "subscribe")):
            if peer is not None:
                try:
                    await peer.finish(args.token)
                except Exception as e:
                    peer.report["finish_error"] = f"{type(e).__name__}: {e}"
                result[key] = peer.report
    return result


async def offers(args):
    pub = RTCPeerConnection()
    vt = pub.addTransceiver(PatternTrack(args.width, args.height), direction="sendonly")
    prefer_codec(vt, "video", args.codec)
    pub.addTransceiver(ToneTrack(), direction="sendonly")
    await pub.setLocalDescription(await pub.createOffer())
    sub = RTCPeerConnection()
    sub.addTransceiver("video", direction="recvonly")
    sub.addTransceiver("audio", direction="recvonly")
    await sub.setLocalDescription(await sub.createOffer())
    out = {"publish_offer": pub.localDescription.sdp, "subscribe_offer": sub.localDescription.sdp}
    await pub.close()
    await sub.close()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", help="node base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--room", default="interop")
    ap.add_argument("--token")
    ap.add_argument("--mode", choices=["both", "subscribe"], default="both")
    ap.add_argument("--publisher", help="publisher id to watch in --mode subscribe (default: latest)")
    ap.add_argument("--codec", help="force a video codec: vp8 or h264")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--no-audio", action="store_true")
    ap.add_argument("--seconds", type=float, default=10, help="longest time to watch once subscribed")
    ap.add_argument("--min-video-frames", type=int, default=60)
    ap.add_argument("--min-audio-frames", type=int, default=50)
    ap.add_argument("--connect-timeout", type=float, default=10)
    ap.add_argument("--offer-only", action="store_true")
    args = ap.parse_args()
    if args.offer_only:
        print(json.dumps(asyncio.run(offers(args))))
        return 0
    if not args.base:
        ap.error("--base is required")
    args.base = args.base.rstrip("/")
    result = asyncio.run(run(args))
    result["aiortc"] = __import__("aiortc").__version__
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
