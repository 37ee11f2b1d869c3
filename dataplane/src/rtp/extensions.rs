//! RFC 8285 header extensions: one-byte (0xBEDE) and two-byte (0x100X) forms, and typed
//! access to the extensions an SFU routes on.

use super::RtpError;

/// The two RFC 8285 encodings of extension elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionForm {
    OneByte,
    TwoByte,
}

impl ExtensionForm {
    pub fn from_profile(profile: u16) -> Option<Self> {
        match profile {
            0xBEDE => Some(Self::OneByte),
            p if p & 0xFFF0 == 0x1000 => Some(Self::TwoByte),
            _ => None,
        }
    }
}

/// One extension element. `offset` is its data's position in the whole packet, so a
/// caller can rewrite the value in place (e.g. a new transport-wide sequence number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionElement<'a> {
    pub id: u8,
    pub data: &'a [u8],
    pub offset: usize,
}

/// Iterator over extension elements. Yields an error once and then stops if the block
/// is malformed; padding bytes are skipped.
#[derive(Debug, Clone)]
pub struct Extensions<'a> {
    form: Option<ExtensionForm>,
    body: &'a [u8],
    base: usize,
    pos: usize,
}

impl<'a> Extensions<'a> {
    pub(crate) fn new(profile: u16, body: &'a [u8], base: usize) -> Self {
        Self {
            form: ExtensionForm::from_profile(profile),
            body,
            base,
            pos: 0,
        }
    }
    pub(crate) fn empty() -> Self {
        Self {
            form: None,
            body: &[],
            base: 0,
            pos: 0,
        }
    }
    pub fn form(&self) -> Option<ExtensionForm> {
        self.form
    }

    fn stop(&mut self) {
        self.pos = self.body.len();
    }
}

impl<'a> Iterator for Extensions<'a> {
    type Item = Result<ExtensionElement<'a>, RtpError>;

    fn next(&mut self) -> Option<Self::Item> {
        let form = self.form?;
        loop {
            let &first = self.body.get(self.pos)?;
            if first == 0 {
                self.pos += 1;
                continue;
            }
            let offset = self.base + self.pos;
            let (id, data_start, data_len) = match form {
                ExtensionForm::OneByte => {
                    let id = first >> 4;
                    if id == 15 {
                        // RFC 8285 4.2: id 15 ends processing of the block.
                        self.stop();
                        return None;
                    }
                    (id, self.pos + 1, usize::from(first & 0x0f) + 1)
                }
                ExtensionForm::TwoByte => {
                    let Some(&len) = self.body.get(self.pos + 1) else {
                        self.stop();
                        return Some(Err(RtpError::ElementOverrun { offset }));
                    };
                    (first, self.pos + 2, usize::from(len))
                }
            };
            let Some(data) = self.body.get(data_start..data_start + data_len) else {
                self.stop();
                return Some(Err(RtpError::ElementOverrun { offset }));
            };
            self.pos = data_start + data_len;
            return Some(Ok(ExtensionElement {
                id,
                data,
                offset: self.base + data_start,
            }));
        }
    }
}

/// The extension ids a session negotiated in SDP (`a=extmap`). Zero means "not used".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtensionIds {
    pub mid: u8,
    pub rid: u8,
    pub repaired_rid: u8,
    pub transport_cc: u8,
    pub abs_send_time: u8,
    pub audio_level: u8,
}

/// RFC 6464 client-to-mixer audio level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioLevel {
    pub voice_activity: bool,
    /// -dBov, 0 (loudest) to 127 (silence).
    pub level: u8,
}

/// The routing-relevant extensions of one packet, read in a single pass. An element with
/// the wrong length for its type is an error rather than silently ignored, so a lying
/// peer is counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KnownExtensions<'a> {
    pub mid: Option<&'a [u8]>,
    pub rid: Option<&'a [u8]>,
    pub repaired_rid: Option<&'a [u8]>,
    pub transport_cc: Option<u16>,
    /// 6.18 fixed-point seconds, 24 bits.
    pub abs_send_time: Option<u32>,
    pub audio_level: Option<AudioLevel>,
    /// Offset of the transport-wide sequence number in the packet, for in-place rewrite.
    pub transport_cc_offset: Option<usize>,
}

impl<'a> KnownExtensions<'a> {
    pub(crate) fn read(iter: Extensions<'a>, ids: &ExtensionIds) -> Result<Self, RtpError> {
        let mut out = Self::default();
        for element in iter {
            let ExtensionElement { id, data, offset } = element?;
            if id == 0 {
                continue;
            }
            let bad = || RtpError::ElementOverrun { offset };
            if id == ids.mid {
                out.mid = Some(data);
            } else if id == ids.rid {
                out.rid = Some(data);
            } else if id == ids.repaired_rid {
                out.repaired_rid = Some(data);
            } else if id == ids.transport_cc {
                let b: [u8; 2] = data
                    .get(..2)
                    .and_then(|d| d.try_into().ok())
                    .ok_or_else(bad)?;
                out.transport_cc = Some(u16::from_be_bytes(b));
                out.transport_cc_offset = Some(offset);
            } else if id == ids.abs_send_time {
                let d = data.get(..3).ok_or_else(bad)?;
                out.abs_send_time = Some(u32::from_be_bytes([0, d[0], d[1], d[2]]));
            } else if id == ids.audio_level {
                let &b = data.first().ok_or_else(bad)?;
                out.audio_level = Some(AudioLevel {
                    voice_activity: b & 0x80 != 0,
                    level: b & 0x7f,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::RtpPacket;
    use super::*;

    fn with_ext(profile: u16, body: &[u8]) -> Vec<u8> {
        assert_eq!(body.len() % 4, 0);
        let mut p = vec![0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2];
        p.extend_from_slice(&profile.to_be_bytes());
        p.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
        p.extend_from_slice(body);
        p.extend_from_slice(b"payload");
        p
    }

    const IDS: ExtensionIds = ExtensionIds {
        mid: 1,
        rid: 2,
        repaired_rid: 3,
        transport_cc: 4,
        abs_send_time: 5,
        audio_level: 6,
    };

    #[test]
    fn one_byte_form_typed() {
        // mid "0", rid "hi", twcc 0x0102, abs-send-time, audio level, padding.
        let body = [
            0x10, b'0', 0x21, b'h', b'i', 0x41, 0x01, 0x02, 0x52, 0xaa, 0xbb, 0xcc, 0x60, 0x85, 0,
            0,
        ];
        let p = with_ext(0xBEDE, &body);
        let r = RtpPacket::parse(&p).unwrap();
        let k = r.known_extensions(&IDS).unwrap();
        assert_eq!(k.mid, Some(&b"0"[..]));
        assert_eq!(k.rid, Some(&b"hi"[..]));
        assert_eq!(k.transport_cc, Some(0x0102));
        assert_eq!(k.abs_send_time, Some(0xaabbcc));
        assert_eq!(
            k.audio_level,
            Some(AudioLevel {
                voice_activity: true,
                level: 5
            })
        );
        let off = k.transport_cc_offset.unwrap();
        assert_eq!(&p[off..off + 2], &[1, 2]);
        assert_eq!(r.payload(), b"payload");
    }

    #[test]
    fn two_byte_form_and_empty_elements() {
        let body = [3, 2, b'l', b'o', 9, 0, 0, 0];
        let p = with_ext(0x1000, &body);
        let r = RtpPacket::parse(&p).unwrap();
        let all: Vec<_> = r.extensions().map(Result::unwrap).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].data, b"");
        assert_eq!(
            r.known_extensions(&IDS).unwrap().repaired_rid,
            Some(&b"lo"[..])
        );
    }

    #[test]
    fn overrunning_element_is_an_error() {
        let p = with_ext(0xBEDE, &[0x1f, 1, 2, 3]);
        let r = RtpPacket::parse(&p).unwrap();
        assert!(matches!(
            r.extensions().next(),
            Some(Err(RtpError::ElementOverrun { offset: 16 }))
        ));
        let short_twcc = with_ext(0xBEDE, &[0x40, 1, 0, 0]);
        assert!(
            RtpPacket::parse(&short_twcc)
                .unwrap()
                .known_extensions(&IDS)
                .is_err()
        );
    }

    #[test]
    fn id_15_stops_and_unknown_profile_is_empty() {
        let p = with_ext(0xBEDE, &[0xf0, 0x10, b'x', 0]);
        assert_eq!(RtpPacket::parse(&p).unwrap().extensions().count(), 0);
        let p = with_ext(0xABCD, &[1, 2, 3, 4]);
        assert_eq!(RtpPacket::parse(&p).unwrap().extensions().count(), 0);
    }
}
