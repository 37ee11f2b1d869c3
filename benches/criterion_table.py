#!/usr/bin/env python3
"""Turns criterion results (target/criterion) into the README's packet-core table.

Reads the median of each benchmark from one run and prints Markdown with the ratios the
packet-core acceptance asks for: ours vs the raw AEAD (the crypto limit) and ours vs
webrtc-srtp, plus our parsers vs the webrtc-rs crates. Exit status 1 if a target ratio
is missed, so a script can gate on it.
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")


def ns(group, bench):
    path = root / group / bench.replace("/", "_") / "new" / "estimates.json"
    if not path.exists():
        # criterion stores the benchmark id "a/b" in the directory "a_b"
        return None
    return json.loads(path.read_text())["median"]["point_estimate"]


def fmt(v):
    return "—" if v is None else (f"{v/1000:.2f} µs" if v >= 1000 else f"{v:.0f} ns")


ok = True
print("| SRTP, one packet | size | sluice | raw AEAD seal+open (ring) | sluice / raw | webrtc-srtp | sluice / webrtc-srtp |")
print("|---|---|---|---|---|---|---|")
for profile, label in [("gcm", "AEAD_AES_128_GCM"), ("cm_sha1_80", "AES_CM_128_HMAC_SHA1_80")]:
    g = f"srtp_{profile}"
    for size in (160, 1200):
        ours = ns(g, f"sluice_protect_unprotect/{size}")
        # The primitive the SRTP code uses for GCM (ring; see dataplane/src/srtp/cipher.rs).
        raw = ns(g, f"ring_seal_open/{size}") if profile == "gcm" else None
        theirs = ns(g, f"webrtc_srtp_protect_unprotect/{size}")
        r_raw = ours / raw if ours and raw else None
        r_w = ours / theirs if ours and theirs else None
        print(f"| {label} protect+unprotect | {size} | {fmt(ours)} | {fmt(raw)} | "
              f"{'—' if r_raw is None else f'{r_raw:.2f}x'} | {fmt(theirs)} | "
              f"{'—' if r_w is None else f'{r_w:.2f}x'} |")
        if profile == "gcm" and size == 1200:
            if r_raw is None or r_raw > 1.15 or r_w is None or r_w > 0.35:
                ok = False
    for size in (160, 1200):
        print(f"| {label} protect only | {size} | {fmt(ns(g, f'sluice_protect/{size}'))} | | | | |")
        print(f"| {label} unprotect only | {size} | {fmt(ns(g, f'sluice_unprotect/{size}'))} | | | | |")

print()
print("| AES-128-GCM primitive, seal+open | size | aws-lc-rs | ring |")
print("|---|---|---|---|")
for size in (160, 1200):
    print(f"| raw | {size} | {fmt(ns('srtp_gcm', f'aws_lc_rs_seal_open/{size}'))} | "
          f"{fmt(ns('srtp_gcm', f'ring_seal_open/{size}'))} |")

print()
print("| parse / rewrite | sluice | webrtc-rs crate | speed-up |")
print("|---|---|---|---|")
rows = [
    ("RTP header + extensions, 160 B", "rtp_parse", "sluice/160", "webrtc_rtp/160"),
    ("RTP header + extensions, 1200 B", "rtp_parse", "sluice/1200", "webrtc_rtp/1200"),
    ("RTCP compound RR+REMB+NACK+TWCC", "rtcp_parse", "sluice/rr_remb_nack_twcc", "webrtc_rtcp/rr_remb_nack_twcc"),
    ("STUN check (verify; ours also answers)", "stun_check", "sluice/verify_and_answer", "webrtc_stun/verify"),
    ("copy + rewrite, 160 B", "rewrite", "copy_rewrite/160", None),
    ("copy + rewrite, 1200 B", "rewrite", "copy_rewrite/1200", None),
]
for label, g, ours_id, theirs_id in rows:
    ours = ns(g, ours_id)
    theirs = ns(g, theirs_id) if theirs_id else None
    speed = f"{theirs / ours:.1f}x" if ours and theirs else "—"
    print(f"| {label} | {fmt(ours)} | {fmt(theirs)} | {speed} |")

if not ok:
    print("\nTARGET MISSED: GCM 1200 B must be <= 1.15x raw AEAD and <= 0.35x webrtc-srtp", file=sys.stderr)
sys.exit(0 if ok else 1)
