"""A stand-in WHIP/WHEP server made of aiortc, for checking the interop clients alone.

Not part of any test: it lets the GStreamer publisher, the Chromium watcher and the
aiortc client be run against a known-good peer, so a failure against the node can be
told apart from a broken client script. It answers the same URLs as the node:
POST /whip/{room} (201, Location, X-Publisher-Id), POST /whep/{room}[/{id}],
DELETE /resources/{id}; with CORS. Media is relayed through aiortc (decoded and
re-encoded), so it is slow and only good for a few streams.

    target/interop-venv/bin/python tests/interop/mock_sfu.py --listen 127.0.0.1:8089
"""

import argparse
import asyncio
import itertools
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaBlackhole, MediaRelay

LOOP = asyncio.new_event_loop()
RELAY = MediaRelay()
IDS = itertools.count(1)
PUBLISHERS = {}  # room -> {id: {kind: track}}
RESOURCES = {}  # id -> RTCPeerConnection


def log(msg):
    print(msg, file=sys.stderr, flush=True)


async def publish(room, offer):
    pc = RTCPeerConnection()
    pid = str(next(IDS))
    tracks = PUBLISHERS.setdefault(room, {}).setdefault(pid, {})
    sink = MediaBlackhole()

    @pc.on("track")
    def _track(track):
        log(f"publisher {pid}: {track.kind} track")
        tracks[track.kind] = track
        # Someone must pull frames even before a watcher comes, or the receiver stalls.
        sink.addTrack(RELAY.subscribe(track))

    @pc.on("connectionstatechange")
    async def _state():
        log(f"publisher {pid}: {pc.connectionState}")
        if pc.connectionState == "connected":
            await sink.start()

    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    await answer(pc)
    RESOURCES[pid] = pc
    return pid, pc.localDescription.sdp


async def subscribe(room, pid, offer):
    pubs = PUBLISHERS.get(room, {})
    if pid is None and pubs:
        pid = list(pubs)[-1]
    tracks = pubs.get(pid)
    if tracks is None:
        return None, None
    pc = RTCPeerConnection()
    sid = str(next(IDS))

    @pc.on("connectionstatechange")
    def _state():
        log(f"subscriber {sid}: {pc.connectionState}")

    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    for kind, track in tracks.items():
        pc.addTrack(RELAY.subscribe(track))
    await answer(pc)
    RESOURCES[sid] = pc
    return sid, pc.localDescription.sdp


async def delete(rid):
    pc = RESOURCES.pop(rid, None)
    if pc is None:
        return False
    await pc.close()
    return True


async def answer(pc):
    """Answer as the node does: DTLS server (setup:passive), so the client is the DTLS
    client and its certificate (webrtcbin's RSA one) is the one that gets verified."""
    desc = await pc.createAnswer()
    sdp = desc.sdp.replace("a=setup:active", "a=setup:passive")
    await pc.setLocalDescription(RTCSessionDescription(sdp=sdp, type="answer"))


def run(coro):
    return asyncio.run_coroutine_threadsafe(coro, LOOP).result(timeout=30)


class Handler(BaseHTTPRequestHandler):
    def cors(self):
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Methods", "POST, DELETE, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Content-Type, Authorization")
        self.send_header("Access-Control-Expose-Headers", "Location, X-Publisher-Id")

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        self.cors()
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_OPTIONS(self):
        self.reply(204)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        m = re.fullmatch(r"/(whip|whep)/([^/]+)(?:/([^/]+))?", self.path)
        if not m:
            return self.reply(404, b"no such endpoint")
        kind, room, pid = m.groups()
        try:
            if kind == "whip":
                rid, answer = run(publish(room, body))
                extra = [("X-Publisher-Id", rid)]
            else:
                rid, answer = run(subscribe(room, pid, body))
                extra = []
                if rid is None:
                    return self.reply(404, b"no such publisher")
        except Exception as e:
            log(f"{kind} failed: {e!r}")
            return self.reply(400, str(e).encode())
        self.reply(
            201,
            answer.encode(),
            [("Content-Type", "application/sdp"), ("Location", f"/resources/{rid}"), *extra],
        )

    def do_DELETE(self):
        m = re.fullmatch(r"/resources/([^/]+)", self.path)
        ok = bool(m) and run(delete(m.group(1)))
        self.reply(200 if ok else 404)

    def do_GET(self):
        m = re.fullmatch(r"/rooms/([^/]+)", self.path)
        if not m:
            return self.reply(404)
        pubs = PUBLISHERS.get(m.group(1), {})
        body = {"publishers": [{"id": p, "tracks": list(t)} for p, t in pubs.items()]}
        self.reply(200, json.dumps(body).encode(), [("Content-Type", "application/json")])

    def log_message(self, fmt, *args):
        log(fmt % args)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", default="127.0.0.1:8089")
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log(f"mock SFU on http://{host}:{server.server_address[1]}")
    try:
        LOOP.run_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
