//! The first frame on each direction's control stream. TLS has already said who the
//! peer is; the hello says which run of that node this is, so a restarted node's new
//! connection can replace the dead one at once (see `tiebreak`). The acceptor sends its
//! hello only once it keeps the connection, which is how the initiator learns that its
//! certificate was accepted and that it did not lose a simultaneous-connect race.

const MAGIC: [u8; 4] = *b"SLNK";
/// Bumped on an incompatible change of what follows the hello.
pub const VERSION: u8 = 1;
pub const HELLO_LEN: usize = 13;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Random per endpoint lifetime: a new value means the peer restarted.
    pub instance: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("hello has {0} bytes, expected {HELLO_LEN}")]
    Length(usize),
    #[error("not a sluice link hello")]
    Magic,
    #[error("link protocol version {0}, this node speaks {VERSION}")]
    Version(u8),
}

impl Hello {
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut out = [0; HELLO_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        out[5..].copy_from_slice(&self.instance.to_be_bytes());
        out
    }

    pub fn decode(data: &[u8]) -> Result<Self, HelloError> {
        let data: &[u8; HELLO_LEN] = data
            .try_into()
            .map_err(|_| HelloError::Length(data.len()))?;
        let (magic, rest) = data.split_at(4);
        if magic != MAGIC {
            return Err(HelloError::Magic);
        }
        let (version, instance) = rest.split_at(1);
        if version != [VERSION] {
            return Err(HelloError::Version(version.first().copied().unwrap_or(0)));
        }
        let instance = u64::from_be_bytes(instance.try_into().map_err(|_| HelloError::Magic)?);
        Ok(Self { instance })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let h = Hello {
            instance: 0x0123_4567_89ab_cdef,
        };
        assert_eq!(Hello::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn refuses_garbage() {
        let good = Hello { instance: 7 }.encode();
        assert_eq!(Hello::decode(&good[..12]), Err(HelloError::Length(12)));
        assert_eq!(Hello::decode(&[]), Err(HelloError::Length(0)));
        let mut bad = good;
        bad[0] = b'X';
        assert_eq!(Hello::decode(&bad), Err(HelloError::Magic));
        let mut v2 = good;
        v2[4] = 2;
        assert_eq!(Hello::decode(&v2), Err(HelloError::Version(2)));
    }
}
