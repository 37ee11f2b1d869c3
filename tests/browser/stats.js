// Injected into every page the browser tests open (context.addInitScript): a compact
// getStats() summary, the same for test assertions and for failure diagnostics.
window.__sluiceStats = async function (pc) {
  if (!pc) return null;
  const report = await pc.getStats();
  const all = [...report.values()];
  const byId = new Map(all.map((s) => [s.id, s]));
  const codec = (s) => (byId.get(s.codecId) || {}).mimeType;
  const candidate = (id) => {
    const c = byId.get(id);
    return c && `${c.candidateType} ${c.protocol} ${c.address}:${c.port}`;
  };
  const pair = (p) =>
    p && {
      state: p.state,
      nominated: p.nominated,
      local: candidate(p.localCandidateId),
      remote: candidate(p.remoteCandidateId),
      requestsSent: p.requestsSent,
      responsesReceived: p.responsesReceived,
      requestsReceived: p.requestsReceived,
      currentRoundTripTime: p.currentRoundTripTime,
      availableOutgoingBitrate: p.availableOutgoingBitrate,
    };
  const out = {
    connectionState: pc.connectionState,
    iceConnectionState: pc.iceConnectionState,
    signalingState: pc.signalingState,
    transports: [],
    candidatePairs: [],
    outbound: [],
    inbound: [],
  };
  for (const s of all) {
    switch (s.type) {
      case 'transport':
        out.transports.push({
          iceState: s.iceState,
          iceRole: s.iceRole,
          dtlsState: s.dtlsState,
          dtlsRole: s.dtlsRole,
          srtpCipher: s.srtpCipher,
          bytesSent: s.bytesSent,
          bytesReceived: s.bytesReceived,
          selectedPair: pair(byId.get(s.selectedCandidatePairId)),
        });
        break;
      case 'candidate-pair':
        out.candidatePairs.push(pair(s));
        break;
      case 'outbound-rtp':
        out.outbound.push({
          kind: s.kind,
          rid: s.rid,
          ssrc: s.ssrc,
          codec: codec(s),
          active: s.active,
          bytesSent: s.bytesSent,
          packetsSent: s.packetsSent,
          framesEncoded: s.framesEncoded,
          keyFramesEncoded: s.keyFramesEncoded,
          frameWidth: s.frameWidth,
          frameHeight: s.frameHeight,
          framesPerSecond: s.framesPerSecond,
          targetBitrate: s.targetBitrate,
          qualityLimitationReason: s.qualityLimitationReason,
          retransmittedPacketsSent: s.retransmittedPacketsSent,
          nackCount: s.nackCount,
          pliCount: s.pliCount,
          firCount: s.firCount,
        });
        break;
      case 'inbound-rtp':
        out.inbound.push({
          kind: s.kind,
          ssrc: s.ssrc,
          codec: codec(s),
          bytesReceived: s.bytesReceived,
          packetsReceived: s.packetsReceived,
          packetsLost: s.packetsLost,
          framesReceived: s.framesReceived,
          framesDecoded: s.framesDecoded,
          keyFramesDecoded: s.keyFramesDecoded,
          framesDropped: s.framesDropped,
          frameWidth: s.frameWidth,
          frameHeight: s.frameHeight,
          totalSamplesReceived: s.totalSamplesReceived,
          jitter: s.jitter,
          nackCount: s.nackCount,
          pliCount: s.pliCount,
          firCount: s.firCount,
          decoderImplementation: s.decoderImplementation,
        });
        break;
    }
  }
  return out;
};
