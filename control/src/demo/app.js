// Sluice demo: publish the camera over WHIP (VP8 simulcast q/h/f) and watch every other
// publisher in the room over WHEP, following the room's Server-Sent Events.
'use strict';

// The node is ICE-lite and learns our address from our connectivity checks, so the offer
// needs no particular candidate; waiting briefly just gives it the ones that are cheap.
const ICE_GATHERING_TIMEOUT_MS = 2000;

// What the page is doing, exposed for the browser tests and for poking at in devtools.
const state = (window.sluiceDemo = {
  room: null,
  publisherId: null,
  publisher: null, // { pc, stream, resource }
  watching: {}, // publisher id -> { pc, video, tile, resource }
  events: null,
  errors: [],
  others: [], // other cluster members' URLs, where to go if this node dies
});

const $ = (id) => document.getElementById(id);

function showError(message) {
  state.errors.push(message);
  console.error(message);
  $('error').textContent = message;
  $('error').hidden = false;
}

function setStatus(text) {
  $('status').textContent = text;
}

function setJoined(joined) {
  $('join').disabled = joined;
  $('room').disabled = joined;
  $('leave').disabled = !joined;
}

function waitForIceGathering(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ICE_GATHERING_TIMEOUT_MS);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

// POSTs our offer to a WHIP or WHEP endpoint and applies the answer.
async function negotiate(pc, endpoint) {
  await pc.setLocalDescription(await pc.createOffer());
  await waitForIceGathering(pc);
  const response = await fetch(endpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp' },
    body: pc.localDescription.sdp,
  });
  const body = await response.text();
  if (response.status !== 201) {
    throw new Error(`POST ${endpoint}: ${response.status} ${body.trim()}`);
  }
  const location = response.headers.get('Location');
  if (!location) throw new Error(`POST ${endpoint}: the answer has no Location header`);
  await pc.setRemoteDescription({ type: 'answer', sdp: body });
  return { resource: new URL(location, response.url).href, headers: response.headers };
}

// Ends a WHIP/WHEP session. keepalive lets it go out while the page unloads.
function deleteResource(url) {
  return fetch(url, { method: 'DELETE', keepalive: true }).catch(() => {});
}

// The node forwards VP8; offering it first keeps Chromium from picking another codec.
function preferVp8(transceiver) {
  const caps = RTCRtpReceiver.getCapabilities && RTCRtpReceiver.getCapabilities('video');
  if (!caps || !transceiver.setCodecPreferences) return;
  const isVp8 = (c) => c.mimeType.toLowerCase() === 'video/vp8';
  transceiver.setCodecPreferences([...caps.codecs.filter(isVp8), ...caps.codecs.filter((c) => !isVp8(c))]);
}

// Autoplay with sound may be refused (no user gesture yet); muted video beats no video.
function play(video) {
  video.play().catch(() => {
    video.muted = true;
    video.play().catch(() => {});
  });
}

async function publish(room) {
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { width: 1280, height: 720 },
    audio: true,
  });
  $('local').srcObject = stream;
  $('self').hidden = false;
  const pc = new RTCPeerConnection();
  state.publisher = { pc, stream, resource: null };
  for (const track of stream.getAudioTracks()) {
    pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
  }
  for (const track of stream.getVideoTracks()) {
    const transceiver = pc.addTransceiver(track, {
      direction: 'sendonly',
      streams: [stream],
      sendEncodings: [
        { rid: 'q', scaleResolutionDownBy: 4 },
        { rid: 'h', scaleResolutionDownBy: 2 },
        { rid: 'f', scaleResolutionDownBy: 1 },
      ],
    });
    preferVp8(transceiver);
  }
  pc.addEventListener('connectionstatechange', () => {
    if (pc.connectionState !== 'failed') return;
    // The node is gone: rejoin from another member it listed, if it listed any.
    const next = state.others.find((url) => url !== location.origin);
    if (next && state.room) moveTo(next, state.room);
    else showError('publishing failed: the connection to the node was lost');
  });
  const { resource, headers } = await negotiate(pc, `/whip/${encodeURIComponent(room)}`);
  state.publisher.resource = resource;
  state.publisherId = headers.get('X-Publisher-Id');
  if (!state.publisherId) throw new Error('the WHIP answer has no X-Publisher-Id header');
}

async function watch(publisher) {
  const id = publisher.id;
  if (!id || id === state.publisherId || state.watching[id]) return;
  const pc = new RTCPeerConnection();
  const kinds = publisher.tracks && publisher.tracks.length ? publisher.tracks.map((t) => t.kind) : ['audio', 'video'];
  for (const kind of kinds) {
    const transceiver = pc.addTransceiver(kind, { direction: 'recvonly' });
    if (kind === 'video') preferVp8(transceiver);
  }

  const stream = new MediaStream();
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  video.srcObject = stream;
  pc.addEventListener('track', (e) => {
    stream.addTrack(e.track);
    play(video);
  });
  const tile = document.createElement('figure');
  tile.className = 'tile';
  tile.dataset.publisher = id;
  const caption = document.createElement('figcaption');
  tile.append(video, caption);
  $('grid').append(tile);
  const label = () => (caption.textContent = `${id} · ${pc.connectionState}`);
  label();

  const entry = { pc, video, tile, resource: null };
  state.watching[id] = entry;
  pc.addEventListener('connectionstatechange', () => {
    label();
    if (pc.connectionState === 'failed' && state.watching[id] === entry) {
      showError(`lost the connection watching ${id}`);
      unwatch(id);
    }
  });
  try {
    entry.resource = (await negotiate(pc, `/whep/${encodeURIComponent(state.room)}/${encodeURIComponent(id)}`)).resource;
  } catch (e) {
    if (state.watching[id] === entry) {
      showError(`cannot watch ${id}: ${e.message}`);
      unwatch(id);
    }
    return;
  }
  // The publisher may have left (or we did) while the offer was in flight.
  if (state.watching[id] !== entry) deleteResource(entry.resource);
}

function unwatch(id) {
  const entry = state.watching[id];
  if (!entry) return Promise.resolve();
  delete state.watching[id];
  entry.pc.close();
  entry.tile.remove();
  return entry.resource ? deleteResource(entry.resource) : Promise.resolve();
}

function parseEvent(e) {
  try {
    return JSON.parse(e.data);
  } catch {
    showError(`unreadable ${e.type} event: ${e.data}`);
    return null;
  }
}

// Opened only once we know our own publisher id, so we never subscribe to ourselves. On
// (re)connect the node replays a publisher-joined for everyone present.
function listen(room) {
  const events = new EventSource(`/rooms/${encodeURIComponent(room)}/events`);
  state.events = events;
  events.addEventListener('publisher-joined', (e) => {
    const p = parseEvent(e);
    if (p) watch(p);
  });
  events.addEventListener('publisher-left', (e) => {
    const p = parseEvent(e);
    if (p) unwatch(p.id);
  });
  // The node is draining: rejoin from the node it names (the page reloads from there).
  events.addEventListener('move', (e) => {
    const m = parseEvent(e);
    if (m && m.url) moveTo(m.url, room);
  });
  events.addEventListener('open', () => setStatus(`in room "${room}" as ${state.publisherId}`));
  events.addEventListener('error', () => {
    setStatus('room events interrupted, reconnecting…');
    // Events and media both lost: the node died. Rejoin elsewhere without waiting for
    // ICE to give up (which takes half a minute).
    const pc = state.publisher && state.publisher.pc;
    const next = state.others.find((url) => url !== location.origin);
    if (pc && pc.connectionState !== 'connected' && next) moveTo(next, room);
  });
}

// The other live members, fetched once joined: a node that dies cannot say where to go.
async function rememberCluster() {
  try {
    const cluster = await (await fetch('/cluster')).json();
    state.others = (cluster.members || [])
      .filter((m) => m.id !== cluster.self && m.state === 'alive' && m.http)
      .map((m) => m.http);
  } catch {
    state.others = [];
  }
}

async function moveTo(url, room) {
  setStatus(`this node is draining; moving to ${url}…`);
  await leave();
  window.location.href = `${url}/?room=${encodeURIComponent(room)}&join=1`;
}

async function join(room) {
  $('error').hidden = true;
  setJoined(true);
  state.room = room;
  history.replaceState(null, '', `?room=${encodeURIComponent(room)}`);
  setStatus('joining…');
  try {
    await publish(room);
    listen(room);
    rememberCluster();
  } catch (e) {
    showError(`join failed: ${e.message}`);
    await leave();
  }
}

async function leave() {
  if (state.events) state.events.close();
  state.events = null;
  const deletions = Object.keys(state.watching).map(unwatch);
  const pub = state.publisher;
  state.publisher = null;
  state.publisherId = null;
  if (pub) {
    pub.pc.close();
    for (const track of pub.stream.getTracks()) track.stop();
    if (pub.resource) deletions.push(deleteResource(pub.resource));
  }
  $('self').hidden = true;
  $('local').srcObject = null;
  setJoined(false);
  setStatus('not connected');
  await Promise.all(deletions);
}

const params = new URLSearchParams(location.search);
$('room').value = params.get('room') || 'demo';
// Arriving from a draining node: join straight away.
if (params.get('join') === '1') join($('room').value.trim() || 'demo');
$('join-form').addEventListener('submit', (e) => {
  e.preventDefault();
  join($('room').value.trim() || 'demo');
});
$('leave').addEventListener('click', () => leave());
window.addEventListener('pagehide', () => leave());
window.addEventListener('unhandledrejection', (e) => showError(String(e.reason)));
