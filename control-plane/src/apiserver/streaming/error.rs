//! Errors of the streaming protocols.
//!
//! They never reach kubectl as HTTP responses: once a connection is upgraded the only way to report
//! trouble is to end the session, so these errors end up in tracing logs and in unit tests.

/// What went wrong while decoding or encoding SPDY/3.1 frames or their header blocks.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// A control frame carried a version other than 3; kubectl only speaks SPDY/3.1.
    #[error("unsupported spdy version {version} in control frame (only 3 is spoken)")]
    UnsupportedVersion {
        /// The version found in the frame.
        version: u16,
    },
    /// A frame's payload is shorter than its type requires.
    #[error("spdy frame of type {frame_type} is too short: {length} bytes")]
    ShortFrame {
        /// Control frame type, or 0 for data frames.
        frame_type: u16,
        /// The payload length given in the frame header.
        length: usize,
    },
    /// A payload bigger than the 24-bit length field can carry.
    #[error("spdy frame payload of {length} bytes exceeds the 24-bit length field")]
    FrameTooLarge {
        /// The offending payload length.
        length: usize,
    },
    /// zlib rejected the compressed header block.
    #[error("spdy header block does not inflate: {reason}")]
    Inflate {
        /// zlib's explanation.
        reason: String,
    },
    /// zlib failed to compress a header block (should not happen with valid state).
    #[error("spdy header block does not deflate: {reason}")]
    Deflate {
        /// zlib's explanation.
        reason: String,
    },
    /// The decompressed header block is not a valid name/value list.
    #[error("malformed spdy header block: {reason}")]
    MalformedHeaders {
        /// Which part of the block was wrong.
        reason: &'static str,
    },
    /// The header block inflates to more than the limit, which only a hostile client would send.
    #[error("spdy header block inflates to more than {limit} bytes")]
    HeadersTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}
