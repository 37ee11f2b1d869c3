// Two Chromiums open the demo page on the same room and press Join; each must end up
// showing the other's video, decoded. Then one presses Leave and the other must drop its
// tile. Usage: node demo_page.mjs <base_url> [<second_base_url>]: with a second URL,
// page y uses another node of a cascade.
// SLUICE_BROWSER_SCREENSHOTS=<dir> saves what each page shows once both see each other.

import { check, log, MEDIA_TIMEOUT_MS, poll, roomListing, runScript } from './lib.mjs';

const MIN_FRAMES_DECODED = 30;

// Runs in a demo page: what it shows, from window.sluiceDemo.
async function pageState() {
  const demo = window.sluiceDemo;
  const watching = {};
  for (const [id, { pc, video }] of Object.entries(demo.watching)) {
    const stats = await window.__sluiceStats(pc);
    const inbound = (kind) => stats.inbound.find((s) => s.kind === kind) || {};
    watching[id] = {
      connectionState: pc.connectionState,
      inDocument: video.isConnected,
      videoSize: `${video.videoWidth}x${video.videoHeight}`,
      framesDecoded: inbound('video').framesDecoded || 0,
      codec: inbound('video').codec,
      audioPackets: inbound('audio').packetsReceived || 0,
    };
  }
  return {
    publisherId: demo.publisherId,
    publishing: demo.publisher && demo.publisher.pc.connectionState,
    watching,
    tiles: document.querySelectorAll('figure[data-publisher]').length,
    errors: demo.errors,
    status: document.getElementById('status').textContent,
  };
}

// True when `viewer` shows `publisher`'s video with frames decoded.
function sees(viewer, publisher) {
  const w = publisher.publisherId && viewer.watching[publisher.publisherId];
  return !!w && w.framesDecoded >= MIN_FRAMES_DECODED && w.inDocument && w.videoSize !== '0x0';
}

runScript('demo_page', async ({ base, watchBase, launch, diagnose }) => {
  const room = `demo-page-${process.pid}-${Date.now()}`;
  const x = await launch('x');
  const y = await launch('y');
  for (const b of [x, y]) {
    diagnose(b.name, () => b.page.evaluate(pageState));
    diagnose(`${b.name}-publisher`, () => b.page.evaluate(() => window.__sluiceStats(window.sluiceDemo.publisher && window.sluiceDemo.publisher.pc)));
  }
  diagnose('room', () => roomListing(base, room));

  for (const [b, node] of [[x, base], [y, watchBase]]) {
    const response = await b.page.goto(`${node}/?room=${encodeURIComponent(room)}`);
    check(response && response.status() === 200, `${b.name}: the demo page did not load`, response && response.status());
    const prefilled = await b.page.inputValue('#room');
    check(prefilled === room, `${b.name}: the room field is not prefilled from ?room=`, prefilled);
    await b.page.click('#join');
  }

  const started = Date.now();
  const both = await poll('each page to show the other', MEDIA_TIMEOUT_MS, 1000, async () => {
    const [sx, sy] = await Promise.all([x.page.evaluate(pageState), y.page.evaluate(pageState)]);
    const state = { seconds: (Date.now() - started) / 1000, x: sx, y: sy };
    log(`pages: ${JSON.stringify(state)}`);
    check(sx.errors.length === 0 && sy.errors.length === 0, 'a demo page shows an error', { x: sx.errors, y: sy.errors });
    state.done = sees(sx, sy) && sees(sy, sx);
    return state;
  });
  if (process.env.SLUICE_BROWSER_SCREENSHOTS) {
    for (const b of [x, y]) {
      const path = `${process.env.SLUICE_BROWSER_SCREENSHOTS}/demo-${b.name}.png`;
      await b.page.screenshot({ path });
      log(`screenshot: ${path}`);
    }
  }
  for (const [name, s] of [['x', both.x], ['y', both.y]]) {
    check(!s.watching[s.publisherId], `${name} watches itself`, s);
    check(Object.keys(s.watching).length === 1 && s.tiles === 1, `${name} shows other tiles than the one peer`, s);
  }

  // Leave: y's sessions end, x is told (publisher-left) and drops y's tile.
  const yId = both.y.publisherId;
  await y.page.click('#leave');
  const after = await poll('x to drop the tile of the publisher that left', 15_000, 250, async () => {
    const [sx, sy] = await Promise.all([x.page.evaluate(pageState), y.page.evaluate(pageState)]);
    return { done: !sx.watching[yId] && sx.tiles === 0 && sy.publisherId === null, x: sx, y: sy };
  });
  let listing;
  for (const node of new Set([base, watchBase])) {
    listing = await poll(`the room on ${node} to list only x`, 10_000, 250, async () => {
      const l = await roomListing(node, room);
      const ids = (l.publishers || []).map((p) => p.id);
      return { done: ids.length === 1 && ids[0] === both.x.publisherId, listing: l };
    });
  }

  return {
    secondsToVideo: both.seconds,
    x: { publisherId: both.x.publisherId, sees: both.x.watching[yId] },
    y: { publisherId: yId, sees: both.y.watching[both.x.publisherId] },
    afterLeave: { xTiles: after.x.tiles, room: listing.listing },
  };
});
