// Chromium A publishes its fake camera (1280x720, VP8 simulcast q/h/f) and microphone
// over WHIP; Chromium B watches over WHEP. Passes when B decodes video and receives audio
// and A sends all three simulcast layers (which Chromium does only once the node sends
// it bandwidth feedback). Usage: node publish_watch.mjs <base_url> [<watch_base_url>]:
// with a second URL, B watches through another node of a cascade.

import { check, log, MEDIA_TIMEOUT_MS, poll, roomListing, runScript } from './lib.mjs';

const MIN_FRAMES_DECODED = 60;
const RIDS = ['q', 'h', 'f'];

// Runs in page A. The offer waits (briefly) for ICE gathering; the node is ICE-lite and
// would find us from our checks anyway.
async function publishInPage(room) {
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { width: 1280, height: 720 },
    audio: true,
  });
  const pc = new RTCPeerConnection();
  window.__pc = pc;
  pc.addTransceiver(stream.getAudioTracks()[0], { direction: 'sendonly', streams: [stream] });
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
    contentType: response.headers.get('Content-Type'),
    location: response.headers.get('Location'),
    publisherId: response.headers.get('X-Publisher-Id'),
    camera: (({ width, height, frameRate }) => ({ width, height, frameRate }))(stream.getVideoTracks()[0].getSettings()),
  };
  if (response.status !== 201) return { ...result, error: body.trim() };
  result.location = result.location && new URL(result.location, response.url).href;
  result.answer = body.split(/\r?\n/).filter((l) => /^(m=|a=(rid|simulcast|rtpmap|rtcp-fb|extmap|ice-lite|setup|candidate|mid|group))/.test(l));
  try {
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
  } catch (e) {
    return { ...result, error: `setRemoteDescription: ${e.message}` };
  }
  return result;
}

// Runs in page B.
async function watchInPage({ room, publisherId }) {
  const pc = new RTCPeerConnection();
  window.__pc = pc;
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.addTransceiver('video', { direction: 'recvonly' });
  // Chromium decodes audio only for a playing sink (totalSamplesReceived stays 0 without).
  const media = document.createElement('video');
  media.autoplay = true;
  media.srcObject = new MediaStream();
  document.body.append(media);
  pc.addEventListener('track', (e) => {
    media.srcObject.addTrack(e.track);
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
  const result = {
    status: response.status,
    contentType: response.headers.get('Content-Type'),
    location: response.headers.get('Location'),
  };
  if (response.status !== 201) return { ...result, error: body.trim() };
  result.location = result.location && new URL(result.location, response.url).href;
  result.answer = body.split(/\r?\n/).filter((l) => /^(m=|a=(rtpmap|rtcp-fb|extmap|ice-lite|setup|candidate|mid|group|ssrc))/.test(l));
  try {
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
  } catch (e) {
    return { ...result, error: `setRemoteDescription: ${e.message}` };
  }
  return result;
}

const stats = (b) => b.page.evaluate(() => window.__sluiceStats(window.__pc));

runScript('publish_watch', async ({ base, watchBase, launch, diagnose }) => {
  const room = `publish-watch-${process.pid}-${Date.now()}`;
  const a = await launch('publisher');
  const b = await launch('viewer');
  diagnose('publisher', () => stats(a));
  diagnose('viewer', () => stats(b));
  diagnose('room', () => roomListing(watchBase, room));

  // Any page on the node's origin will do: same-origin fetches, and a secure context
  // (loopback) for getUserMedia.
  await a.page.goto(`${base}/`);
  await b.page.goto(`${watchBase}/`);

  const whip = await a.page.evaluate(publishInPage, room);
  log(`WHIP: ${JSON.stringify(whip)}`);
  check(whip.status === 201 && !whip.error, 'WHIP POST was not answered 201 with a usable answer', whip);
  check(/^application\/sdp/.test(whip.contentType || ''), 'WHIP answer Content-Type', whip.contentType);
  check(whip.location, 'WHIP answer has no Location');
  check(whip.publisherId, 'WHIP answer has no X-Publisher-Id');
  diagnose('whip', () => whip);

  // A client learns about publishers from the room, so wait until it lists this one.
  const listed = await poll('the room to list the publisher', 20_000, 250, async () => {
    const listing = await roomListing(watchBase, room);
    const me = (listing.publishers || []).find((p) => p.id === whip.publisherId);
    return { done: !!me, listing, me };
  });
  const tracks = listed.me.tracks || [];
  const videoTrack = tracks.find((t) => t.kind === 'video');
  check(videoTrack && /^vp8$/i.test(videoTrack.codec) && videoTrack.simulcast === true,
    'the room lists no simulcast VP8 video track for the publisher', listed.me);
  check(tracks.some((t) => t.kind === 'audio'), 'the room lists no audio track for the publisher', listed.me);

  const whep = await b.page.evaluate(watchInPage, { room, publisherId: whip.publisherId });
  log(`WHEP: ${JSON.stringify(whep)}`);
  check(whep.status === 201 && !whep.error, 'WHEP POST was not answered 201 with a usable answer', whep);
  check(whep.location, 'WHEP answer has no Location');
  diagnose('whep', () => whep);

  let previous = null;
  const started = Date.now();
  const media = await poll('media to flow', MEDIA_TIMEOUT_MS, 1000, async () => {
    const [sent, received] = await Promise.all([stats(a), stats(b)]);
    const layers = Object.fromEntries(
      RIDS.map((rid) => {
        const now = sent.outbound.find((s) => s.kind === 'video' && s.rid === rid);
        const before = previous && previous.outbound.find((s) => s.kind === 'video' && s.rid === rid);
        return [rid, now && {
          codec: now.codec,
          bytesSent: now.bytesSent,
          growing: !!before && now.bytesSent > before.bytesSent,
          frame: `${now.frameWidth}x${now.frameHeight}@${now.framesPerSecond}`,
          qualityLimitationReason: now.qualityLimitationReason,
        }];
      }),
    );
    previous = sent;
    const video = received.inbound.find((s) => s.kind === 'video') || {};
    const audio = received.inbound.find((s) => s.kind === 'audio') || {};
    const state = {
      seconds: (Date.now() - started) / 1000,
      publisher: sent.connectionState,
      viewer: received.connectionState,
      layers,
      video: {
        codec: video.codec,
        framesDecoded: video.framesDecoded,
        frame: `${video.frameWidth}x${video.frameHeight}`,
        packetsLost: video.packetsLost,
      },
      audio: { packetsReceived: audio.packetsReceived, totalSamplesReceived: audio.totalSamplesReceived },
    };
    state.done =
      (video.framesDecoded || 0) >= MIN_FRAMES_DECODED &&
      (audio.packetsReceived || 0) > 0 &&
      (audio.totalSamplesReceived || 0) > 0 &&
      RIDS.every((rid) => layers[rid] && layers[rid].growing && layers[rid].codec === 'video/VP8');
    log(`media: ${JSON.stringify(state)}`);
    return state;
  });
  check(media.video.codec === 'video/VP8', 'the viewer decodes something other than VP8', media.video);

  // Ending the sessions: both resources answer DELETE, and the room forgets the publisher.
  const deleted = {};
  for (const [what, url] of [['whep', whep.location], ['whip', whip.location]]) {
    const response = await fetch(url, { method: 'DELETE' });
    deleted[what] = response.status;
    check(response.status >= 200 && response.status < 300, `DELETE of the ${what} resource`, {
      status: response.status,
      body: (await response.text()).trim(),
    });
  }
  for (const node of new Set([base, watchBase])) {
    await poll(`the room on ${node} to drop the publisher`, 10_000, 250, async () => {
      const listing = await roomListing(node, room);
      return { done: !(listing.publishers || []).some((p) => p.id === whip.publisherId), listing };
    });
  }

  return {
    publisherId: whip.publisherId,
    camera: `${whip.camera.width}x${whip.camera.height}`,
    secondsToMedia: media.seconds,
    layers: media.layers,
    video: media.video,
    audio: media.audio,
    deleted,
  };
});
