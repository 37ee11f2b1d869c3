// Shared plumbing for the headless Chromium scripts run by tests/tests/browser.rs.
//
// Protocol with the Rust side: `node <script>.mjs <base_url>`; progress and diagnostics go
// to stderr, and stdout carries exactly one line of JSON, `{"ok": true, ...}` with exit
// status 0, or `{"ok": false, "error": ..., "diagnostics": ...}` with exit status 1.

import { chromium } from 'playwright-core';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CHROMIUM = process.env.SLUICE_CHROMIUM || '/usr/bin/chromium';

// The whole script, launch to teardown; the media checks poll within it.
const SCRIPT_TIMEOUT_MS = 150_000;
export const MEDIA_TIMEOUT_MS = 60_000;

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
  // The watching pages play what they receive without a click (audio is decoded only
  // for a playing sink).
  '--autoplay-policy=no-user-gesture-required',
];

const STATS_JS = join(dirname(fileURLToPath(import.meta.url)), 'stats.js');
const started = Date.now();

export function log(...parts) {
  const t = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[${t}s] ${parts.join(' ')}\n`);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class CheckFailed extends Error {}

export function check(condition, message, details) {
  if (!condition) {
    throw new CheckFailed(details === undefined ? message : `${message}: ${JSON.stringify(details)}`);
  }
}

// A Chromium of its own (profile and HOME in a fresh temp dir), so two of them share
// nothing but the node they talk to.
async function launch(name) {
  const root = await mkdtemp(join(tmpdir(), `sluice-${name}-`));
  const profile = join(root, 'profile');
  const home = join(root, 'home');
  await mkdir(profile);
  await mkdir(home);
  log(`${name}: launching ${CHROMIUM}`);
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      // Playwright would add its own --headless; ours (in the flags) picks the new mode.
      headless: false,
      args: CHROMIUM_FLAGS,
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
    context,
    page,
    async close() {
      await context.close().catch(() => {});
      await rm(root, { recursive: true, force: true }).catch(() => {});
    },
  };
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Calls `step` every `intervalMs` until it returns `{ done: true, ... }`; on timeout the
// error carries the last state it returned.
export async function poll(what, timeoutMs, intervalMs, step) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await step();
    if (last && last.done) return last;
    if (Date.now() >= deadline) {
      throw new CheckFailed(`timed out after ${timeoutMs} ms waiting for ${what}; last state: ${JSON.stringify(last)}`);
    }
    await sleep(intervalMs);
  }
}

// Runs a script body: `body({ base, watchBase, launch, diagnose })` returns the success
// details; `watchBase` is the optional second argument (another node of a cascade), else
// `base`;
// `diagnose(label, fn)` registers something to snapshot (stats, page state) on failure.
export async function runScript(name, body) {
  const base = (process.argv[2] || '').replace(/\/+$/, '');
  if (!/^https?:\/\//.test(base)) {
    process.stdout.write(JSON.stringify({ ok: false, error: `usage: node ${name}.mjs <base_url>` }) + '\n');
    process.exit(2);
  }
  const watchBase = (process.argv[3] || base).replace(/\/+$/, '');
  const browsers = [];
  const diagnostics = new Map();
  const ctx = {
    base,
    watchBase,
    launch: async (browserName) => {
      const b = await launch(browserName);
      browsers.push(b);
      return b;
    },
    diagnose: (label, fn) => diagnostics.set(label, fn),
  };
  let result;
  try {
    const details = await withTimeout(body(ctx), SCRIPT_TIMEOUT_MS, name);
    result = { ok: true, ...details };
  } catch (e) {
    const snapshot = {};
    for (const [label, fn] of diagnostics) {
      try {
        snapshot[label] = await withTimeout(Promise.resolve().then(fn), 5_000, `diagnostics ${label}`);
      } catch (err) {
        snapshot[label] = `unavailable: ${err.message}`;
      }
    }
    result = {
      ok: false,
      error: e instanceof CheckFailed ? e.message : String((e && e.stack) || e),
      diagnostics: snapshot,
    };
    log(`FAILED: ${result.error}`);
    log(`diagnostics: ${JSON.stringify(snapshot, null, 1)}`);
  } finally {
    for (const b of browsers) await b.close();
  }
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(result.ok ? 0 : 1);
}

// GET /rooms/{room} from the script itself (not a browser).
export async function roomListing(base, room) {
  const response = await fetch(`${base}/rooms/${encodeURIComponent(room)}`);
  const text = await response.text();
  if (!response.ok) return { status: response.status, error: text.trim() };
  try {
    return JSON.parse(text);
  } catch {
    return { status: response.status, error: `not JSON: ${text.slice(0, 200)}` };
  }
}
