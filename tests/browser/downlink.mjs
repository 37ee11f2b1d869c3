// Downlink adaptation: Chromium A publishes its fake camera (1280x720, VP8 simulcast
// q/h/f) over WHIP from the root network namespace; Chromium B watches over WHEP from
// inside a network namespace whose veth toward the node is shaped with tbf. B must reach
// the top layer, drop to a lower one (still decoding) while its downlink is limited, and
// come back to the top layer once the limit is lifted.
//
// Usage: node downlink.mjs <base_url>, as root, with
//   SLUICE_DOWNLINK_NETNS  the namespace B runs in (it reaches the node at <base_url>)
//   SLUICE_DOWNLINK_DEV    the root-namespace end of the veth: its egress is the
//                          node-to-watcher direction, where the limit goes
//   SLUICE_DOWNLINK_RATE   the limit (tc rate syntax), 400kbit unless set
// Same output protocol as the other scripts (lib.mjs): one JSON line on stdout.

import { chromium } from 'playwright-core';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CHROMIUM, check, CheckFailed, log, poll, roomListing } from './lib.mjs';

const run = promisify(execFile);

const NETNS = process.env.SLUICE_DOWNLINK_NETNS || '';
const DEV = process.env.SLUICE_DOWNLINK_DEV || '';
const RATE = process.env.SLUICE_DOWNLINK_RATE || '400kbit';

// Three phases of up to 60-90 s each, plus setup: more than lib.mjs's whole-script limit.
const SCRIPT_TIMEOUT_MS = 270_000;
const UP_TIMEOUT_MS = 60_000;
const DOWN_TIMEOUT_MS = 60_000;
// The loss rule raises the estimate 8% a second: from ~0.2 Mbit/s back to what the top
// layer needs (~0.8 Mbit/s from the fake camera, up to ~2.5 from a real one) takes 20 to
// 35 s, plus a 2.5 s hold per layer.
const RECOVER_TIMEOUT_MS = 90_000;
const SAMPLE_MS = 1000;
// Seconds at the lower layer that must show decoded frames before phase 2 passes.
const LIMITED_SAMPLES = 4;
const MIN_FRAMES_WHILE_LIMITED = 20;
const RIDS = ['q', 'h', 'f'];

const CHROMIUM_FLAGS = [
  '--headless=new',
  '--no-sandbox',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--autoplay-policy=no-user-gesture-required',
];

const STATS_JS = join(dirname(fileURLToPath(import.meta.url)), 'stats.js');

// lib.mjs launches every browser the same way; here B runs in another network namespace
// (through a wrapper the launcher execs, so playwright's pipe still reaches it) and A
// needs the node's non-loopback origin treated as secure for getUserMedia.
async function launch(name, { netns, args = [] } = {}) {
  const root = await mkdtemp(join(tmpdir(), `sluice-${name}-`));
  const profile = join(root, 'profile');
  const home = join(root, 'home');
  await mkdir(profile);
  await mkdir(home);
  let executablePath = CHROMIUM;
  if (netns) {
    executablePath = join(root, 'chromium-in-netns');
    await writeFile(executablePath, `#!/bin/sh\nexec ip netns exec '${netns}' '${CHROMIUM}' "$@"\n`);
    await chmod(executablePath, 0o755);
  }
  log(`${name}: launching ${CHROMIUM}${netns ? ` in netns ${netns}` : ''}`);
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath,
      headless: false,
      args: [...CHROMIUM_FLAGS, ...args],
      env: { ...process.env, HOME: home },
      timeout: 30_000,
    });
  } catch (e) {
    await rm(root, { recursive: true, force: true });
    throw e;
  }
  await context.addInitScript({ path: STATS_JS });
  const page = context.pages()[0] || (await context.newPage());
  page.on('console', (m) => log(`${name}: console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log(`${name}: page error: ${e.message}`));
  return {
    name,
    page,
    async close() {
      await context.close().catch(() => {});
      await rm(root, { recursive: true, force: true }).catch(() => {});
    },
  };
}

async function tc(...args) {
  log(`tc ${args.join(' ')}`);
  await run('tc', args);
}

async function qdisc() {
  try {
    const { stdout } = await run('tc', ['-s', 'qdisc', 'show', 'dev', DEV]);
    return stdout.trim().replace(/\s+/g, ' ');
  } catch (e) {
    return `unavailable: ${e.message}`;
  }
}

// Runs in page A: video only, VP8 simulcast, lowest layer first.
async function publishInPage(room) {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 } });
  const pc = new RTCPeerConnection();
  window.__pc = pc;
  const video = pc.addTransceiver(stream.getVideoTracks()[0], {
    direction: 'sendonly',
    streams: [stream],
    sendEncodings: [
      { rid: 'q', scaleResolutionDownBy: 4 },
      { rid: 'h', scaleResolutionDownBy: 2 },
      { rid: 'f', scaleResolutionDownBy: 1 },
    ],
  });
  const isVp8 = (c) => c.mimeType.toLowerCase() === 'video/vp8';
  const codecs = RTCRtpReceiver.getCapabilities('video').codecs;
  video.setCodecPreferences([...codecs.filter(isVp8), ...codecs.filter((c) => !isVp8(c))]);
  await pc.setLocalDescription();
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    setTimeout(resolve, 2000);
    pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
  });
  const response = await fetch(`/whip/${encodeURIComponent(room)}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp' },
    body: pc.localDescription.sdp,
  });
  const body = await response.text();
  const result = {
    status: response.status,
    publisherId: response.headers.get('X-Publisher-Id'),
    camera: (({ width, height }) => `${width}x${height}`)(stream.getVideoTracks()[0].getSettings()),
  };
  if (response.status !== 201) return { ...result, error: body.trim() };
  try {
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
  } catch (e) {
    return { ...result, error: `setRemoteDescription: ${e.message}` };
  }
  return result;
}

// Runs in page B: one recvonly video section, played (Chromium decodes for a sink).
async function watchInPage({ room, publisherId }) {
  const pc = new RTCPeerConnection();
  window.__pc = pc;
  pc.addTransceiver('video', { direction: 'recvonly' });
  const media = document.createElement('video');
  media.autoplay = true;
  media.muted = true;
  document.body.append(media);
  pc.addEventListener('track', (e) => {
    media.srcObject = new MediaStream([e.track]);
    media.play().catch((err) => console.error(`play: ${err.message}`));
  });
  await pc.setLocalDescription();
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    setTimeout(resolve, 2000);
    pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
  });
  const response = await fetch(`/whep/${encodeURIComponent(room)}/${encodeURIComponent(publisherId)}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp' },
    body: pc.localDescription.sdp,
  });
  const body = await response.text();
  const result = { status: response.status };
  if (response.status !== 201) return { ...result, error: body.trim() };
  // What the estimate depends on: the feedback the node asked this browser for.
  result.answer = body.split(/\r?\n/).filter((l) => /^(m=|a=(rtcp-fb|extmap|candidate))/.test(l));
  try {
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
  } catch (e) {
    return { ...result, error: `setRemoteDescription: ${e.message}` };
  }
  return result;
}

const stats = (b) => b.page.evaluate(() => window.__sluiceStats(window.__pc));

// One sample a second of what B receives and what A sends; the timeline is the failure
// diagnostics and part of the result.
class Sampler {
  constructor(publisher, watcher) {
    this.publisher = publisher;
    this.watcher = watcher;
    this.timeline = [];
    this.started = Date.now();
    this.phase = 'setup';
  }

  async sample() {
    const [sent, received] = await Promise.all([stats(this.publisher), stats(this.watcher)]);
    const prev = this.timeline[this.timeline.length - 1];
    const video = (received && received.inbound.find((s) => s.kind === 'video')) || {};
    const layers = {};
    for (const rid of RIDS) {
      const o = (sent && sent.outbound.find((s) => s.kind === 'video' && s.rid === rid)) || {};
      layers[rid] = { width: o.frameWidth || 0, bytesSent: o.bytesSent || 0, fps: o.framesPerSecond || 0, limit: o.qualityLimitationReason };
    }
    const s = {
      t: +((Date.now() - this.started) / 1000).toFixed(1),
      phase: this.phase,
      width: video.frameWidth || 0,
      height: video.frameHeight || 0,
      framesDecoded: video.framesDecoded || 0,
      keyFramesDecoded: video.keyFramesDecoded || 0,
      bytesReceived: video.bytesReceived || 0,
      packetsLost: video.packetsLost || 0,
      nackCount: video.nackCount || 0,
      pliCount: video.pliCount || 0,
      connection: received && received.connectionState,
      layers,
    };
    const dt = prev ? s.t - prev.t : 0;
    s.kbps = dt > 0 ? Math.round(((s.bytesReceived - prev.bytesReceived) * 8) / dt / 1000) : null;
    s.decodedPerSec = dt > 0 ? Math.round((s.framesDecoded - prev.framesDecoded) / dt) : null;
    // Sent layers whose byte count grew since the last sample: the ones A still sends.
    s.sending = prev ? RIDS.filter((rid) => s.layers[rid].bytesSent > prev.layers[rid].bytesSent) : [];
    s.layer = this.layerOf(s);
    this.timeline.push(s);
    log(`${s.phase}: ${s.width}x${s.height} layer ${s.layer} decoded ${s.framesDecoded} (+${s.decodedPerSec}/s) ` +
      `${s.kbps} kbit/s lost ${s.packetsLost} nack ${s.nackCount} pli ${s.pliCount}; ` +
      `A sends ${RIDS.map((r) => `${r}:${s.layers[r].width}`).join(' ')} [${s.sending.join(',')}]`);
    return s;
  }

  // Which simulcast layer B decodes: the one whose width A currently encodes at. (A
  // starved CPU can make A scale every layer down, so fixed widths would misjudge.)
  layerOf(s) {
    if (!s.width) return null;
    let best = null;
    for (const rid of RIDS) {
      const w = s.layers[rid].width;
      if (w && (best === null || Math.abs(w - s.width) < Math.abs(s.layers[best].width - s.width))) best = rid;
    }
    return best;
  }

  // The last `n` samples (all of them in the current phase), or null if there are fewer.
  last(n) {
    const inPhase = this.timeline.filter((s) => s.phase === this.phase);
    return inPhase.length >= n ? inPhase.slice(-n) : null;
  }

  compact() {
    return this.timeline.map((s) =>
      `${s.t}s ${s.phase} ${s.width}x${s.height}(${s.layer}) dec ${s.framesDecoded} +${s.decodedPerSec}/s ` +
      `${s.kbps}kbps lost ${s.packetsLost} pli ${s.pliCount} A[${s.sending.join(',')}] ` +
      `f ${s.layers.f.width} ${s.layers.f.limit}`);
  }
}

// B decodes A's top layer, A sends it at a real resolution, and frames keep coming.
function atTop(samples) {
  return samples.every((s) => s.layer === 'f' && s.layers.f.width > s.layers.h.width && s.decodedPerSec > 0);
}

async function body(base, browsers, diagnostics) {
  check(NETNS && DEV, 'SLUICE_DOWNLINK_NETNS and SLUICE_DOWNLINK_DEV must be set');
  const room = `downlink-${process.pid}-${Date.now()}`;
  // One host candidate for A (its default-route interface): with several (loopback, the
  // veth's host end, other tests' interfaces) Chromium may nominate a second pair after
  // DTLS. Following that is the ICE tests' business; here it would only add noise.
  const a = await launch('publisher', {
    args: [`--unsafely-treat-insecure-origin-as-secure=${base}`, '--force-webrtc-ip-handling-policy=default_public_interface_only'],
  });
  browsers.push(a);
  const b = await launch('watcher', { netns: NETNS });
  browsers.push(b);
  diagnostics.set('publisher', () => stats(a));
  diagnostics.set('watcher', () => stats(b));
  diagnostics.set('room', () => roomListing(base, room));
  diagnostics.set('qdisc', qdisc);

  await a.page.goto(`${base}/`);
  await b.page.goto(`${base}/`);
  const whip = await a.page.evaluate(publishInPage, room);
  log(`WHIP: ${JSON.stringify(whip)}`);
  check(whip.status === 201 && !whip.error && whip.publisherId, 'WHIP POST was not answered 201 with a usable answer', whip);
  await poll('the room to list the publisher', 20_000, 250, async () => {
    const listing = await roomListing(base, room);
    return { done: (listing.publishers || []).some((p) => p.id === whip.publisherId), listing };
  });
  const whep = await b.page.evaluate(watchInPage, { room, publisherId: whip.publisherId });
  log(`WHEP: ${JSON.stringify(whep)}`);
  check(whep.status === 201 && !whep.error, 'WHEP POST was not answered 201 with a usable answer', whep);
  diagnostics.set('whep', () => whep);

  const sampler = new Sampler(a, b);
  diagnostics.set('timeline', () => sampler.compact());
  const phase = async (name, what, timeoutMs, done) => {
    sampler.phase = name;
    const started = Date.now();
    await poll(`${what} (phase "${name}")`, timeoutMs, SAMPLE_MS, async () => {
      const s = await sampler.sample();
      return { done: done(), t: s.t, width: s.width, layer: s.layer, sending: s.sending };
    });
    return +((Date.now() - started) / 1000).toFixed(1);
  };

  // 1. Unlimited: up to the top layer.
  const up = await phase('unlimited', 'the watcher to reach the top layer with no limit', UP_TIMEOUT_MS, () => {
    const recent = sampler.last(2);
    return !!recent && atTop(recent);
  });
  const top = sampler.timeline[sampler.timeline.length - 1];
  log(`phase 1: top layer ${top.width}x${top.height} after ${up} s`);

  // 2. Limited: a lower layer, still decoded, while A still sends the top one (so the
  // drop is the node's choice for B, not A giving up the layer).
  await tc('qdisc', 'replace', 'dev', DEV, 'root', 'tbf', 'rate', RATE, 'burst', '16kb', 'latency', '200ms');
  const down = await phase('limited', `the watcher to drop to a lower layer and keep decoding under ${RATE}`, DOWN_TIMEOUT_MS, () => {
    const recent = sampler.last(LIMITED_SAMPLES);
    if (!recent) return false;
    const decoded = recent[recent.length - 1].framesDecoded - recent[0].framesDecoded;
    return recent.every((s) => s.layer && s.layer !== 'f' && s.width < top.width && s.sending.includes('f')) &&
      decoded >= MIN_FRAMES_WHILE_LIMITED;
  });
  const limited = sampler.last(LIMITED_SAMPLES);
  const low = limited[limited.length - 1];
  const limitedQdisc = await qdisc();
  log(`phase 2: down to ${low.width}x${low.height} (${low.layer}) after ${down} s; ${limitedQdisc}`);

  // 3. Lifted: back to the top layer.
  await tc('qdisc', 'del', 'dev', DEV, 'root');
  const recovered = await phase('lifted', 'the watcher to return to the top layer once the limit is lifted', RECOVER_TIMEOUT_MS, () => {
    const recent = sampler.last(2);
    return !!recent && atTop(recent);
  });
  const back = sampler.timeline[sampler.timeline.length - 1];
  log(`phase 3: back to ${back.width}x${back.height} after ${recovered} s`);

  return {
    rate: RATE,
    unlimited: { seconds: up, width: top.width, height: top.height },
    limited: {
      seconds: down,
      width: low.width,
      height: low.height,
      layer: low.layer,
      framesDecoded: low.framesDecoded - limited[0].framesDecoded,
      kbps: low.kbps,
      qdisc: limitedQdisc,
    },
    lifted: { seconds: recovered, width: back.width, height: back.height },
    timeline: sampler.compact(),
  };
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const base = (process.argv[2] || '').replace(/\/+$/, '');
if (!/^https?:\/\//.test(base)) {
  process.stdout.write(JSON.stringify({ ok: false, error: 'usage: node downlink.mjs <base_url>' }) + '\n');
  process.exit(2);
}
const browsers = [];
const diagnostics = new Map();
let result;
try {
  result = { ok: true, ...(await withTimeout(body(base, browsers, diagnostics), SCRIPT_TIMEOUT_MS, 'downlink')) };
} catch (e) {
  const snapshot = {};
  for (const [label, fn] of diagnostics) {
    try {
      snapshot[label] = await withTimeout(Promise.resolve().then(fn), 5_000, `diagnostics ${label}`);
    } catch (err) {
      snapshot[label] = `unavailable: ${err.message}`;
    }
  }
  result = { ok: false, error: e instanceof CheckFailed ? e.message : String((e && e.stack) || e), diagnostics: snapshot };
  log(`FAILED: ${result.error}`);
  log(`diagnostics: ${JSON.stringify(snapshot, null, 1)}`);
} finally {
  // The namespace's owner deletes the veth (and the limit with it); lifting it here too
  // leaves nothing behind when the script is run by hand.
  if (DEV) await run('tc', ['qdisc', 'del', 'dev', DEV, 'root']).catch(() => {});
  for (const b of browsers) await b.close();
}
process.stdout.write(JSON.stringify(result) + '\n');
process.exit(result.ok ? 0 : 1);
