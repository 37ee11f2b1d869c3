#!/usr/bin/python3
"""Watch a WHEP endpoint with headless Chromium and report what it decoded.

Serves watch.html on 127.0.0.1 (a secure context, so WebRTC is available), starts
Chromium on it with a fresh profile, and waits for the page to POST its final report:
getStats() of the inbound video and audio, the transport (DTLS/SRTP) and the selected
candidate pair. Needs nothing beyond the standard library and a Chromium binary.

Prints one JSON object: {"ok": ..., "error": ..., "stats": ..., "logs": [...], ...}.
ok means the page decoded at least --min-frames video frames. Exit status 0 when ok.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--enable-logging=stderr",
    "--v=0",
]


class Reports:
    def __init__(self):
        self.lock = threading.Lock()
        self.latest = None
        self.final = threading.Event()

    def put(self, report):
        with self.lock:
            self.latest = report
        if report.get("final"):
            self.final.set()

    def get(self):
        with self.lock:
            return self.latest


def serve(reports):
    page = (HERE / "watch.html").read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("#")[0].split("?")[0] != "/watch.html":
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                reports.put(json.loads(body))
            except ValueError:
                pass
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def find_chromium(explicit):
    for candidate in [explicit, os.environ.get("CHROMIUM"), "/usr/bin/chromium", "chromium", "chromium-browser"]:
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--whep", required=True, help="WHEP endpoint URL")
    ap.add_argument("--token")
    ap.add_argument("--min-frames", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--chromium", help="Chromium binary (default: $CHROMIUM or /usr/bin/chromium)")
    args = ap.parse_args()

    result = {"ok": False, "error": None}
    chromium = find_chromium(args.chromium)
    if chromium is None:
        result["error"] = "Chromium not found (install it with scripts/install-interop-deps.sh)"
        print(json.dumps(result))
        return 1

    reports = Reports()
    server = serve(reports)
    fragment = urllib.parse.urlencode(
        {k: v for k, v in (("whep", args.whep), ("minFrames", args.min_frames), ("token", args.token)) if v}
    )
    url = f"http://127.0.0.1:{server.server_address[1]}/watch.html#{fragment}"
    home = tempfile.mkdtemp(prefix="sluice-chromium-")
    log_path = Path(home) / "chromium.log"
    env = {**os.environ, "HOME": home}
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={home}/profile", url],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: we end the renderers with it
        )
    try:
        got_final = reports.final.wait(args.timeout)
        exited = proc.poll()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        server.shutdown()

    report = reports.get() or {}
    stats = report.get("stats") or {}
    video = stats.get("video") or {}
    decoded = video.get("framesDecoded") or 0
    result.update(
        ok=bool(got_final) and decoded >= args.min_frames and not report.get("error"),
        error=report.get("error"),
        frames_decoded=decoded,
        elapsed_s=round(time.monotonic() - started, 3),
        chromium=chromium,
        stats=stats,
        logs=report.get("logs", []),
        resource=report.get("resource"),
        offer=report.get("offer"),
        answer=report.get("answer"),
    )
    if not got_final and result["error"] is None:
        result["error"] = (
            f"no final report from the page in {args.timeout} s "
            f"(chromium {'exited with ' + str(exited) if exited is not None else 'still running'}, "
            f"{decoded} frames decoded so far)"
        )
    if not result["ok"]:
        try:
            lines = log_path.read_text(errors="replace").splitlines()
            result["chromium_log_tail"] = [l for l in lines if "ERROR" in l or "WARNING" in l][-40:]
        except OSError:
            pass
    shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
