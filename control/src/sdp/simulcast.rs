//! RID simulcast (RFC 8851, RFC 8853): reading `a=rid` / `a=simulcast`, choosing the
//! layers to receive and ordering them lowest quality first.

use super::SdpError;
use super::offer::{MediaOffer, malformed};

/// Most layers we receive per track; browsers send at most three or four.
pub(super) const MAX_LAYERS: usize = 4;
/// The RID header extension carries at most 16 bytes in the one-byte form.
const MAX_RID_LEN: usize = 16;

/// Naming schemes in use for simulcast layers, each lowest quality first.
const NAMED_SCHEMES: &[&[&str]] = &[
    &["q", "h", "f"],
    &["l", "m", "h"],
    &["low", "mid", "high"],
    &["low", "medium", "high"],
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RidDirection {
    Send,
    Recv,
}

/// RFC 8851 rid-syntax: 1*(ALPHA / DIGIT / "-" / "_"), bounded by the extension's size.
fn is_rid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_RID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `a=rid:<id> <send|recv> [restrictions]`. Restrictions are ignored: we answer none,
/// which leaves the sender free.
pub(super) fn parse_rid(v: &str) -> Result<(String, RidDirection), SdpError> {
    let mut tokens = v.split_whitespace();
    let (Some(id), Some(dir)) = (tokens.next(), tokens.next()) else {
        return Err(malformed("a=rid", v));
    };
    if !is_rid(id) {
        return Err(malformed("a=rid", v));
    }
    let dir = match dir {
        "send" => RidDirection::Send,
        "recv" => RidDirection::Recv,
        _ => return Err(malformed("a=rid", v)),
    };
    Ok((id.to_owned(), dir))
}

/// `a=simulcast:send q;h;f [recv ...]` -> the send streams, in order. Each stream is its
/// first alternative that is not paused (`~`); a stream with only paused alternatives is
/// left out. The pre-RFC form `send rid=q;h;f` is read too.
pub(super) fn parse_simulcast(v: &str) -> Result<Vec<String>, SdpError> {
    let bad = || malformed("a=simulcast", v);
    let mut send = Vec::new();
    let mut tokens = v.split_whitespace();
    while let Some(dir) = tokens.next() {
        let list = tokens.next().ok_or_else(bad)?;
        let list = list.strip_prefix("rid=").unwrap_or(list);
        let mut streams = Vec::new();
        for stream in list.split(';') {
            let mut chosen = None;
            for alt in stream.split(',') {
                let (paused, rid) = match alt.strip_prefix('~') {
                    Some(rid) => (true, rid),
                    None => (false, alt),
                };
                if !is_rid(rid) {
                    return Err(bad());
                }
                if !paused && chosen.is_none() {
                    chosen = Some(rid);
                }
            }
            if let Some(rid) = chosen
                && !streams.iter().any(|s| s == rid)
            {
                streams.push(rid.to_owned());
            }
        }
        match dir {
            "send" => send = streams,
            "recv" => {}
            _ => return Err(bad()),
        }
    }
    Ok(send)
}

/// The rids we receive: streams of `a=simulcast:send` that have an `a=rid ... send`, in
/// the offer's order, at most [`MAX_LAYERS`].
pub(super) fn negotiate(m: &MediaOffer) -> Vec<String> {
    m.simulcast_send
        .iter()
        .filter(|rid| m.send_rids.contains(rid))
        .take(MAX_LAYERS)
        .cloned()
        .collect()
}

/// Orders rids lowest quality first when the names say which is which (q/h/f,
/// l/m/h, low/mid/high, or numbered with a common prefix: 0/1/2, r0/r1/r2); otherwise
/// keeps the offer's order, which is the encoding order the sender chose.
pub(super) fn rank(rids: &[String]) -> Vec<String> {
    let lower: Vec<String> = rids.iter().map(|r| r.to_ascii_lowercase()).collect();
    for scheme in NAMED_SCHEMES {
        let keys: Option<Vec<usize>> = lower
            .iter()
            .map(|r| scheme.iter().position(|s| s == r))
            .collect();
        if let Some(keys) = keys {
            return sorted_by(rids, &keys);
        }
    }
    if let Some(keys) = numbered(&lower) {
        return sorted_by(rids, &keys);
    }
    rids.to_vec()
}

fn sorted_by<K: Ord + Copy>(rids: &[String], keys: &[K]) -> Vec<String> {
    let mut pairs: Vec<(K, &String)> = keys.iter().copied().zip(rids).collect();
    pairs.sort_by_key(|(k, _)| *k);
    pairs.into_iter().map(|(_, r)| r.clone()).collect()
}

/// The numbers of rids that are a common prefix plus digits.
fn numbered(rids: &[String]) -> Option<Vec<u64>> {
    let first = rids.first()?;
    let prefix = first.trim_end_matches(|c: char| c.is_ascii_digit());
    rids.iter()
        .map(|r| {
            let digits = r.strip_prefix(prefix)?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse::<u64>().ok()
        })
        .collect()
}
