//! Framing of the reliable control stream: each message is a big-endian u32 length and
//! that many bytes. A QUIC stream is a byte stream, so the length is what keeps message
//! boundaries; the cap bounds what one peer can make us buffer.

/// Largest control message, the same bound as the state crate's stream messages
/// (`sluice_state::transport::MAX_STREAM_MESSAGE`), whose sync payloads ride here.
pub const MAX_MESSAGE: usize = 4 << 20;

/// Bytes of length prefix in front of every message.
pub const LEN_PREFIX: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame of {len} bytes exceeds the {max}-byte limit")]
pub struct FrameTooLarge {
    pub len: u64,
    pub max: usize,
}

/// The prefix for a `len`-byte message, or an error if it may not be sent.
pub fn encode_len(len: usize, max: usize) -> Result<[u8; LEN_PREFIX], FrameTooLarge> {
    match u32::try_from(len) {
        Ok(n) if len <= max => Ok(n.to_be_bytes()),
        _ => Err(FrameTooLarge {
            len: len as u64,
            max,
        }),
    }
}

/// The message length a received prefix announces, checked against `max` before
/// anything is allocated for it.
pub fn decode_len(prefix: [u8; LEN_PREFIX], max: usize) -> Result<usize, FrameTooLarge> {
    let len = u32::from_be_bytes(prefix);
    match usize::try_from(len) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(FrameTooLarge {
            len: u64::from(len),
            max,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip_up_to_the_cap() {
        for len in [0, 1, 1211, MAX_MESSAGE] {
            let prefix = encode_len(len, MAX_MESSAGE).unwrap();
            assert_eq!(decode_len(prefix, MAX_MESSAGE), Ok(len));
        }
        assert_eq!(encode_len(258, 1000).unwrap(), [0, 0, 1, 2]);
    }

    #[test]
    fn oversize_is_refused_both_ways() {
        assert_eq!(
            encode_len(MAX_MESSAGE + 1, MAX_MESSAGE),
            Err(FrameTooLarge {
                len: MAX_MESSAGE as u64 + 1,
                max: MAX_MESSAGE
            })
        );
        assert!(decode_len((MAX_MESSAGE as u32 + 1).to_be_bytes(), MAX_MESSAGE).is_err());
        assert!(decode_len([0xff; 4], MAX_MESSAGE).is_err());
    }
}
