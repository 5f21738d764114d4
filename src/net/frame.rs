//! The frames of a node-to-node connection.
//!
//! Every frame is a fixed header followed by a body (integers little-endian):
//!
//! ```text
//! offset size field
//!  0      3   magic "WNF"
//!  3      1   format version (1)
//!  4      1   kind (Hello 1, Auth 2, Data 3, Credit 4, ChannelClosed 5, Goodbye 6, Heartbeat 7)
//!  5     20   channel id: job u64, edge u32, from u32, to u32 (zero for connection frames)
//! 25      4   body length
//! 29      4   CRC-32 of bytes 0..29 and of the body
//! 33      -   body
//! ```
//!
//! The checksum covers the header as well as the body, so that a damaged channel id
//! cannot route a payload to the wrong actor. The length is checked against a limit
//! before any body is read, so that a damaged length cannot make the reader wait for
//! (or allocate) gigabytes. Decoding never panics: anything that does not match is an
//! error naming what is wrong.

use std::fmt;

/// The leading bytes of every frame.
const MAGIC: &[u8; 3] = b"WNF";
/// The only frame version this build writes and reads.
pub const FRAME_VERSION: u8 = 1;
/// Bytes of the header.
pub const HEADER_LEN: usize = 33;
/// Bytes of the header the checksum covers (all but the checksum itself).
const CHECKED_HEADER: usize = 29;
/// Bytes of a handshake nonce.
pub const NONCE_LEN: usize = 32;
/// Bytes of an authentication proof (an HMAC-SHA256 tag).
pub const PROOF_LEN: usize = 32;
/// The longest node id or cluster name a Hello may carry.
pub const MAX_NAME_LEN: usize = 255;

/// One logical channel of a connection: the records that partition `from` of edge
/// `edge` of job `job` sends to partition `to` of the next stage.
///
/// The planner assigns the numbers; the data plane only compares them. `from` is the
/// sender's index among the receiver's inputs, as the kernel's
/// [`Channel`](weir_actors::Channel) trait passes it, and is the `from` the
/// receiving mailbox sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ChannelId {
    /// The job (an attempt of a job, if the planner wants attempts kept apart).
    pub job: u64,
    /// The edge of the job graph, from one stage to the next.
    pub edge: u32,
    /// The sending partition's index among the receiver's inputs.
    pub from: u32,
    /// The receiving partition.
    pub to: u32,
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "job {} edge {} from {} to {}",
            self.job, self.edge, self.from, self.to
        )
    }
}

impl ChannelId {
    /// The channel `from -> to` of edge `edge` of job `job`.
    pub fn new(job: u64, edge: u32, from: u32, to: u32) -> Self {
        ChannelId {
            job,
            edge,
            from,
            to,
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.job.to_le_bytes());
        out[8..12].copy_from_slice(&self.edge.to_le_bytes());
        out[12..16].copy_from_slice(&self.from.to_le_bytes());
        out[16..20].copy_from_slice(&self.to.to_le_bytes());
    }

    fn read(bytes: &[u8; 20]) -> Self {
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let mut job = [0u8; 8];
        job.copy_from_slice(&bytes[0..8]);
        ChannelId {
            job: u64::from_le_bytes(job),
            edge: u32_at(8),
            from: u32_at(12),
            to: u32_at(16),
        }
    }
}

/// The first frame each end sends: who it is and its challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The sending node's id.
    pub node: String,
    /// The cluster the sending node belongs to; both ends must agree.
    pub cluster: String,
    /// A fresh random challenge; the peer's proof covers it.
    pub nonce: [u8; NONCE_LEN],
}

/// One frame of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Handshake, step 1: identity and challenge.
    Hello(Hello),
    /// Handshake, step 2: proof of the cluster secret over both challenges.
    Auth {
        /// HMAC-SHA256 tag (see [`super::auth`]).
        proof: [u8; PROOF_LEN],
    },
    /// One exchange payload (a batch or a marker) of a channel: the bytes of the
    /// exchange's codec ([`crate::exchange::codec`]), which checksums them again.
    Data {
        /// The channel the payload belongs to.
        channel: ChannelId,
        /// The encoded payload.
        payload: Vec<u8>,
    },
    /// The receiver of `channel` lets its sender send `n` more payloads.
    Credit {
        /// The channel the credits are for.
        channel: ChannelId,
        /// How many payloads (at least one).
        n: u32,
    },
    /// The end that sends this takes no further part in `channel`.
    ChannelClosed {
        /// The channel.
        channel: ChannelId,
        /// Why, for the other end's error.
        reason: String,
    },
    /// The sender closes the connection.
    Goodbye {
        /// Why, for the other end's error.
        reason: String,
    },
    /// Nothing: keeps an idle connection visibly alive.
    Heartbeat,
}

/// A frame's kind byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// [`Frame::Hello`].
    Hello = 1,
    /// [`Frame::Auth`].
    Auth = 2,
    /// [`Frame::Data`].
    Data = 3,
    /// [`Frame::Credit`].
    Credit = 4,
    /// [`Frame::ChannelClosed`].
    ChannelClosed = 5,
    /// [`Frame::Goodbye`].
    Goodbye = 6,
    /// [`Frame::Heartbeat`].
    Heartbeat = 7,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Auth,
            3 => Kind::Data,
            4 => Kind::Credit,
            5 => Kind::ChannelClosed,
            6 => Kind::Goodbye,
            7 => Kind::Heartbeat,
            _ => return None,
        })
    }
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The bytes do not start with the magic: not a weir connection, or out of step.
    #[error("not a weir connection frame (magic {0:02x?}, expected \"WNF\")")]
    Magic([u8; 3]),
    /// A frame format this build does not read.
    #[error("connection frame version {0}; this build reads version {FRAME_VERSION}")]
    Version(u8),
    /// A kind byte no version-1 frame has.
    #[error("unknown connection frame kind {0}")]
    Kind(u8),
    /// The header announces a body longer than the connection allows.
    #[error("connection frame body of {len} bytes exceeds the limit of {max} bytes")]
    TooLong {
        /// What the header says.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// Fewer bytes than the header and its length need.
    #[error("truncated connection frame: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes there are.
        available: usize,
    },
    /// The header or body does not match the checksum: the frame is damaged.
    #[error("connection frame checksum mismatch (stored {stored:08x}, computed {computed:08x}): the frame is damaged")]
    Checksum {
        /// The checksum in the header.
        stored: u32,
        /// The checksum of what arrived.
        computed: u32,
    },
    /// The body does not have the shape its kind needs.
    #[error("malformed {kind:?} frame body: {what}")]
    Body {
        /// The frame's kind.
        kind: Kind,
        /// What is wrong.
        what: &'static str,
    },
}

/// A frame's header, checked except for the checksum (which needs the body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The kind of frame.
    pub kind: Kind,
    /// The channel (zero for connection frames).
    pub channel: ChannelId,
    /// Bytes of the body that follows.
    pub len: u32,
    crc: u32,
    bytes: [u8; HEADER_LEN],
}

/// A frame as it goes on the wire: header and body apart, so that a large body is
/// never copied to prepend the header.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The header bytes.
    pub header: [u8; HEADER_LEN],
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Encoded {
    /// Header and body in one buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.body.len());
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&self.body);
        out
    }
}

fn checksum(header: &[u8], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[..CHECKED_HEADER]);
    hasher.update(body);
    hasher.finalize()
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Names are checked to fit by whoever builds a Hello; a longer one is cut
    // at a character boundary rather than making the length field lie.
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

impl Frame {
    /// The frame's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Frame::Hello(_) => Kind::Hello,
            Frame::Auth { .. } => Kind::Auth,
            Frame::Data { .. } => Kind::Data,
            Frame::Credit { .. } => Kind::Credit,
            Frame::ChannelClosed { .. } => Kind::ChannelClosed,
            Frame::Goodbye { .. } => Kind::Goodbye,
            Frame::Heartbeat => Kind::Heartbeat,
        }
    }

    /// Encodes the frame. A body longer than `u32::MAX` bytes cannot be framed; the
    /// connection refuses such payloads before they get here.
    pub fn encode(self) -> Encoded {
        let kind = self.kind();
        let (channel, body) = match self {
            Frame::Hello(hello) => {
                let mut body = Vec::with_capacity(4 + hello.node.len() + hello.cluster.len() + 32);
                put_str(&mut body, &hello.node);
                put_str(&mut body, &hello.cluster);
                body.extend_from_slice(&hello.nonce);
                (ChannelId::default(), body)
            }
            Frame::Auth { proof } => (ChannelId::default(), proof.to_vec()),
            Frame::Data { channel, payload } => (channel, payload),
            Frame::Credit { channel, n } => (channel, n.to_le_bytes().to_vec()),
            Frame::ChannelClosed { channel, reason } => (channel, reason.into_bytes()),
            Frame::Goodbye { reason } => (ChannelId::default(), reason.into_bytes()),
            Frame::Heartbeat => (ChannelId::default(), Vec::new()),
        };
        let mut header = [0u8; HEADER_LEN];
        header[0..3].copy_from_slice(MAGIC);
        header[3] = FRAME_VERSION;
        header[4] = kind as u8;
        channel.write(&mut header[5..25]);
        let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
        header[25..29].copy_from_slice(&len.to_le_bytes());
        let crc = checksum(&header, &body);
        header[29..33].copy_from_slice(&crc.to_le_bytes());
        Encoded { header, body }
    }
}

/// Reads a header, refusing a body longer than `max_body` bytes.
pub fn decode_header(bytes: &[u8; HEADER_LEN], max_body: u32) -> Result<Header, FrameError> {
    let magic = [bytes[0], bytes[1], bytes[2]];
    if &magic != MAGIC {
        return Err(FrameError::Magic(magic));
    }
    if bytes[3] != FRAME_VERSION {
        return Err(FrameError::Version(bytes[3]));
    }
    let kind = Kind::from_byte(bytes[4]).ok_or(FrameError::Kind(bytes[4]))?;
    let mut id = [0u8; 20];
    id.copy_from_slice(&bytes[5..25]);
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let len = word(25);
    if len > max_body {
        return Err(FrameError::TooLong { len, max: max_body });
    }
    Ok(Header {
        kind,
        channel: ChannelId::read(&id),
        len,
        crc: word(29),
        bytes: *bytes,
    })
}

/// Checks the body against the header's checksum and decodes the frame.
pub fn decode_body(header: &Header, body: Vec<u8>) -> Result<Frame, FrameError> {
    if body.len() != header.len as usize {
        return Err(FrameError::Truncated {
            needed: HEADER_LEN + header.len as usize,
            available: HEADER_LEN + body.len(),
        });
    }
    let computed = checksum(&header.bytes, &body);
    if computed != header.crc {
        return Err(FrameError::Checksum {
            stored: header.crc,
            computed,
        });
    }
    let kind = header.kind;
    let bad = |what| FrameError::Body { kind, what };
    let text = |body: Vec<u8>| String::from_utf8(body).map_err(|_| bad("the reason is not UTF-8"));
    Ok(match kind {
        Kind::Hello => {
            let mut at = 0usize;
            let mut name = |what| -> Result<String, FrameError> {
                let len_bytes = body.get(at..at + 2).ok_or(bad(what))?;
                let len = u16::from_le_bytes([len_bytes[0], len_bytes[1]]) as usize;
                let bytes = body.get(at + 2..at + 2 + len).ok_or(bad(what))?;
                at += 2 + len;
                String::from_utf8(bytes.to_vec()).map_err(|_| bad("a name is not UTF-8"))
            };
            let node = name("the node id is cut short")?;
            let cluster = name("the cluster name is cut short")?;
            let rest = body.get(at..).unwrap_or_default();
            let nonce: [u8; NONCE_LEN] = rest
                .try_into()
                .map_err(|_| bad("the nonce is not 32 bytes"))?;
            Frame::Hello(Hello {
                node,
                cluster,
                nonce,
            })
        }
        Kind::Auth => Frame::Auth {
            proof: body
                .as_slice()
                .try_into()
                .map_err(|_| bad("the proof is not 32 bytes"))?,
        },
        Kind::Data => Frame::Data {
            channel: header.channel,
            payload: body,
        },
        Kind::Credit => {
            let n: [u8; 4] = body
                .as_slice()
                .try_into()
                .map_err(|_| bad("the credit count is not 4 bytes"))?;
            let n = u32::from_le_bytes(n);
            if n == 0 {
                return Err(bad("a credit of zero"));
            }
            Frame::Credit {
                channel: header.channel,
                n,
            }
        }
        Kind::ChannelClosed => Frame::ChannelClosed {
            channel: header.channel,
            reason: text(body)?,
        },
        Kind::Goodbye => Frame::Goodbye {
            reason: text(body)?,
        },
        Kind::Heartbeat => {
            if !body.is_empty() {
                return Err(bad("a heartbeat has a body"));
            }
            Frame::Heartbeat
        }
    })
}

/// Decodes one frame from the start of `bytes`; returns it and the bytes it took.
pub fn decode(bytes: &[u8], max_body: u32) -> Result<(Frame, usize), FrameError> {
    let header: &[u8; HEADER_LEN] = bytes
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(FrameError::Truncated {
            needed: HEADER_LEN,
            available: bytes.len(),
        })?;
    let header = decode_header(header, max_body)?;
    let end = HEADER_LEN + header.len as usize;
    let body = bytes.get(HEADER_LEN..end).ok_or(FrameError::Truncated {
        needed: end,
        available: bytes.len(),
    })?;
    Ok((decode_body(&header, body.to_vec())?, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: u32 = 1 << 20;

    fn channel() -> impl Strategy<Value = ChannelId> {
        (any::<u64>(), any::<u32>(), any::<u32>(), any::<u32>())
            .prop_map(|(job, edge, from, to)| ChannelId::new(job, edge, from, to))
    }

    fn frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            ("\\PC{0,20}", "\\PC{0,20}", any::<[u8; 32]>()).prop_map(|(node, cluster, nonce)| {
                Frame::Hello(Hello {
                    node,
                    cluster,
                    nonce,
                })
            }),
            any::<[u8; 32]>().prop_map(|proof| Frame::Auth { proof }),
            (channel(), proptest::collection::vec(any::<u8>(), 0..200))
                .prop_map(|(channel, payload)| Frame::Data { channel, payload }),
            (channel(), 1u32..).prop_map(|(channel, n)| Frame::Credit { channel, n }),
            (channel(), "\\PC{0,30}")
                .prop_map(|(channel, reason)| Frame::ChannelClosed { channel, reason }),
            "\\PC{0,30}".prop_map(|reason| Frame::Goodbye { reason }),
            Just(Frame::Heartbeat),
        ]
    }

    proptest! {
        #[test]
        fn frames_round_trip(frame in frame()) {
            let bytes = frame.clone().encode().to_bytes();
            let (back, used) = decode(&bytes, MAX).unwrap();
            prop_assert_eq!(back, frame);
            prop_assert_eq!(used, bytes.len());
        }

        #[test]
        fn any_flipped_bit_is_detected(frame in frame(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut bytes = frame.encode().to_bytes();
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
            prop_assert!(decode(&bytes, MAX).is_err());
        }

        #[test]
        fn any_truncation_is_detected(frame in frame(), cut in any::<prop::sample::Index>()) {
            let bytes = frame.encode().to_bytes();
            let cut = cut.index(bytes.len());
            prop_assert!(
                matches!(decode(&bytes[..cut], MAX), Err(FrameError::Truncated { .. })),
                "cut at {} of {}", cut, bytes.len()
            );
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = decode(&bytes, MAX);
        }
    }

    #[test]
    fn a_damaged_body_names_the_checksum() {
        let mut bytes = Frame::Data {
            channel: ChannelId::new(1, 2, 3, 4),
            payload: vec![7; 10],
        }
        .encode()
        .to_bytes();
        bytes[HEADER_LEN + 3] ^= 0x10;
        let err = decode(&bytes, MAX).unwrap_err();
        assert!(matches!(err, FrameError::Checksum { .. }), "{err}");
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }

    #[test]
    fn a_damaged_channel_id_is_caught_by_the_checksum() {
        let mut bytes = Frame::Credit {
            channel: ChannelId::new(1, 2, 3, 4),
            n: 5,
        }
        .encode()
        .to_bytes();
        bytes[5] ^= 1;
        assert!(matches!(
            decode(&bytes, MAX),
            Err(FrameError::Checksum { .. })
        ));
    }

    #[test]
    fn a_length_past_the_limit_is_refused_before_the_body_is_read() {
        let encoded = Frame::Data {
            channel: ChannelId::default(),
            payload: vec![0; 100],
        }
        .encode();
        assert_eq!(
            decode_header(&encoded.header, 99),
            Err(FrameError::TooLong { len: 100, max: 99 })
        );
    }

    #[test]
    fn wrong_magic_version_and_kind_are_named() {
        let good = Frame::Heartbeat.encode().to_bytes();
        let mut b = good.clone();
        b[0] = b'X';
        assert!(matches!(decode(&b, MAX), Err(FrameError::Magic(_))));
        let mut b = good.clone();
        b[3] = 2;
        assert_eq!(decode(&b, MAX).unwrap_err(), FrameError::Version(2));
        let mut b = good;
        b[4] = 99;
        assert_eq!(decode(&b, MAX).unwrap_err(), FrameError::Kind(99));
    }

    #[test]
    fn a_zero_credit_is_malformed() {
        let mut encoded = Frame::Credit {
            channel: ChannelId::default(),
            n: 1,
        }
        .encode();
        encoded.body = 0u32.to_le_bytes().to_vec();
        let crc = checksum(&encoded.header, &encoded.body);
        encoded.header[29..33].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            decode(&encoded.to_bytes(), MAX),
            Err(FrameError::Body {
                kind: Kind::Credit,
                ..
            })
        ));
    }
}
