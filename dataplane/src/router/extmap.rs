//! Header-extension id translation: a publisher and a subscriber negotiate their extmap
//! ids separately, so each forwarded packet's ids are rewritten into the subscriber's.

use crate::rtp::{ExtensionForm, RtpPacket};

/// Rewrites, in place, the id of every RFC 8285 extension element of the RTP packet
/// `pkt`: id `i` becomes `map[i]`. An element whose new id is 0, or does not fit the
/// one-byte form (15 and above), is blanked into padding, which receivers skip: the
/// packet keeps its length, so nothing else moves. A malformed block is rewritten up to
/// where it breaks, the way receivers read it.
pub fn remap(pkt: &mut [u8], map: &[u8; 256]) {
    let Some((form, start, end)) = RtpPacket::parse_header(pkt).ok().and_then(|p| {
        let body = p.extension_body()?;
        let form = ExtensionForm::from_profile(p.extension_profile()?)?;
        Some((form, p.header_len() - body.len(), p.header_len()))
    }) else {
        return;
    };
    let Some(body) = pkt.get_mut(start..end) else {
        return;
    };
    let mut pos = 0;
    while let Some(&first) = body.get(pos) {
        if first == 0 {
            pos += 1;
            continue;
        }
        let (id, data_end) = match form {
            ExtensionForm::OneByte => {
                let id = first >> 4;
                if id == 15 {
                    return;
                }
                (id, pos + 2 + usize::from(first & 0x0f))
            }
            ExtensionForm::TwoByte => match body.get(pos + 1) {
                Some(&len) => (first, pos + 2 + usize::from(len)),
                None => return,
            },
        };
        let Some(element) = body.get_mut(pos..data_end) else {
            return;
        };
        let new = map[usize::from(id)];
        match form {
            _ if new == 0 => element.fill(0),
            ExtensionForm::OneByte if new >= 15 => element.fill(0),
            ExtensionForm::OneByte => element[0] = (new << 4) | (first & 0x0f),
            ExtensionForm::TwoByte => element[0] = new,
        }
        pos = data_end;
    }
}

/// The publisher's id that `map` turns into the subscriber's `id` (0 for none): where a
/// forwarded packet's transport-wide sequence number is found before remapping.
pub fn source_id(map: &[u8; 256], id: u8) -> u8 {
    if id == 0 {
        return 0;
    }
    (1..=255u8)
        .find(|&i| map[usize::from(i)] == id)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> [u8; 256] {
        std::array::from_fn(|i| i as u8)
    }

    fn packet(profile: [u8; 2], body: &[u8]) -> Vec<u8> {
        let words = (body.len() / 4) as u16;
        let mut p = vec![0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        p.extend_from_slice(&profile);
        p.extend_from_slice(&words.to_be_bytes());
        p.extend_from_slice(body);
        p.extend_from_slice(b"payload");
        p
    }

    fn ids(p: &[u8]) -> Vec<(u8, Vec<u8>)> {
        RtpPacket::parse(p)
            .unwrap()
            .extensions()
            .map(|e| {
                let e = e.unwrap();
                (e.id, e.data.to_vec())
            })
            .collect()
    }

    #[test]
    fn one_byte_ids_are_mapped_and_unmappable_ones_blanked() {
        // id 1 (1 byte), padding, id 3 (2 bytes), id 5 (1 byte), padding to a word.
        let mut p = packet(
            [0xbe, 0xde],
            &[0x10, 0xaa, 0x00, 0x31, 0xbb, 0xcc, 0x50, 0xdd],
        );
        let mut map = identity();
        map[1] = 4;
        map[3] = 0;
        map[5] = 15;
        remap(&mut p, &map);
        assert_eq!(ids(&p), vec![(4, vec![0xaa])]);
        assert!(p.ends_with(b"payload"));
    }

    #[test]
    fn two_byte_ids_are_mapped() {
        let mut p = packet([0x10, 0x00], &[0x07, 0x02, 1, 2, 0x09, 0x00, 0x00, 0x00]);
        let mut map = identity();
        map[7] = 200;
        map[9] = 0;
        remap(&mut p, &map);
        assert_eq!(ids(&p), vec![(200, vec![1, 2])]);
    }

    #[test]
    fn malformed_or_absent_blocks_are_left_alone() {
        let map = [3u8; 256];
        let mut plain = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x10, 0x20];
        let before = plain.clone();
        remap(&mut plain, &map);
        assert_eq!(plain, before);
        // An element claiming more bytes than the block holds: rewritten up to it.
        let mut p = packet([0xbe, 0xde], &[0x10, 0xaa, 0x2f, 0x00]);
        remap(&mut p, &map);
        assert_eq!(&p[16..20], &[0x30, 0xaa, 0x2f, 0x00]);
        remap(&mut [0x90, 0, 0], &map);
    }

    #[test]
    fn source_id_inverts_the_map() {
        let mut map = identity();
        map[5] = 7;
        map[7] = 9;
        assert_eq!(source_id(&map, 7), 5);
        assert_eq!(source_id(&map, 0), 0);
        map[9] = 0;
        assert_eq!(source_id(&map, 9), 7);
        let none = [0u8; 256];
        assert_eq!(source_id(&none, 3), 0);
    }
}
