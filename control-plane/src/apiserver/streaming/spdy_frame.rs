//! A SPDY/3.1 frame codec covering what kubectl's port-forward client (moby/spdystream) sends and
//! expects back. Flow control frames are parsed and ignored: spdystream neither sends nor honours
//! them.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::SpdyError;
use super::spdy_headers::{HeaderDeflater, HeaderInflater, Headers};

const SPDY_VERSION: u16 = 3;
const CONTROL_BIT: u8 = 0x80;
/// FIN flag, shared by DATA, SYN_STREAM and SYN_REPLY.
const FLAG_FIN: u8 = 0x01;
const FRAME_HEADER_LEN: usize = 8;
const MAX_PAYLOAD: usize = 0x00ff_ffff;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;

/// RST_STREAM status kubectl sends when it is done with a stream.
#[cfg(test)]
pub(crate) const RST_CANCEL: u32 = 5;

/// One SPDY frame, in the shape this server needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// The client opens a stream.
    SynStream {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    /// The server accepts a stream.
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    /// Either side abandons a stream.
    RstStream { stream_id: u32, status: u32 },
    /// Liveness probe; the receiver echoes it unchanged.
    Ping { id: u32 },
    /// The sender will open no more streams.
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    /// Stream payload; `fin` half-closes the sender's side.
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    /// SETTINGS, WINDOW_UPDATE, HEADERS and unknown types: read and dropped.
    Ignored { frame_type: u16 },
}

/// Turns a byte stream from the client into frames. Owns the client-to-server zlib context, so every
/// frame must pass through the same decoder in order.
pub(crate) struct FrameDecoder {
    buf: BytesMut,
    inflater: HeaderInflater,
}

impl FrameDecoder {
    pub(crate) fn new() -> Self {
        Self {
            buf: BytesMut::new(),
            inflater: HeaderInflater::new(),
        }
    }

    /// Appends received bytes; frame boundaries need not line up with chunk boundaries.
    pub(crate) fn extend(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete frame, or `None` until more bytes arrive.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame>, SpdyError> {
        if self.buf.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let length = u32::from_be_bytes([0, self.buf[5], self.buf[6], self.buf[7]]) as usize;
        if self.buf.len() < FRAME_HEADER_LEN + length {
            return Ok(None);
        }
        let mut header = self.buf.split_to(FRAME_HEADER_LEN);
        let payload = self.buf.split_to(length).freeze();
        let first = header.get_u32();
        let flags = header.get_u8();
        if first & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data {
                stream_id: first,
                fin: flags & FLAG_FIN != 0,
                data: payload,
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != SPDY_VERSION {
            return Err(SpdyError::UnsupportedVersion { version });
        }
        self.control_frame((first & 0xffff) as u16, flags, payload)
            .map(Some)
    }

    fn control_frame(
        &mut self,
        frame_type: u16,
        flags: u8,
        mut p: Bytes,
    ) -> Result<Frame, SpdyError> {
        let fin = flags & FLAG_FIN != 0;
        let min_len = match frame_type {
            TYPE_SYN_STREAM => 10,
            TYPE_SYN_REPLY | TYPE_HEADERS | TYPE_PING => 4,
            TYPE_RST_STREAM | TYPE_GOAWAY => 8,
            _ => 0,
        };
        if p.len() < min_len {
            return Err(SpdyError::ShortFrame {
                frame_type,
                length: p.len(),
            });
        }
        Ok(match frame_type {
            TYPE_SYN_STREAM => {
                let stream_id = p.get_u32() & 0x7fff_ffff;
                // Associated stream id, priority and slot mean nothing to port-forward.
                p.advance(6);
                Frame::SynStream {
                    stream_id,
                    fin,
                    headers: self.inflater.inflate(&p)?,
                }
            }
            TYPE_SYN_REPLY => {
                let stream_id = p.get_u32() & 0x7fff_ffff;
                Frame::SynReply {
                    stream_id,
                    fin,
                    headers: self.inflater.inflate(&p)?,
                }
            }
            TYPE_HEADERS => {
                // Unused by kubectl, but the block must still go through zlib to keep the shared
                // compression context in step with the client.
                p.advance(4);
                self.inflater.inflate(&p)?;
                Frame::Ignored { frame_type }
            }
            TYPE_RST_STREAM => Frame::RstStream {
                stream_id: p.get_u32() & 0x7fff_ffff,
                status: p.get_u32(),
            },
            TYPE_PING => Frame::Ping { id: p.get_u32() },
            TYPE_GOAWAY => Frame::GoAway {
                last_good_stream_id: p.get_u32() & 0x7fff_ffff,
                status: p.get_u32(),
            },
            other => Frame::Ignored { frame_type: other },
        })
    }
}

/// Turns frames into bytes for the client. Owns the server-to-client zlib context, so frames must
/// be encoded in the order they are sent.
pub(crate) struct FrameEncoder {
    deflater: HeaderDeflater,
}

impl FrameEncoder {
    pub(crate) fn new() -> Result<Self, SpdyError> {
        Ok(Self {
            deflater: HeaderDeflater::new()?,
        })
    }

    /// Appends the wire form of `frame` to `out`.
    pub(crate) fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), SpdyError> {
        match frame {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                let length = checked_len(data.len())?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(u32::from(fin_flag(*fin)) << 24 | length);
                out.extend_from_slice(data);
            }
            Frame::SynStream {
                stream_id,
                fin,
                headers,
            } => {
                let block = self.deflater.deflate(headers)?;
                control_header(out, TYPE_SYN_STREAM, fin_flag(*fin), 10 + block.len())?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(0);
                out.put_u16(0);
                out.extend_from_slice(&block);
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            } => {
                let block = self.deflater.deflate(headers)?;
                control_header(out, TYPE_SYN_REPLY, fin_flag(*fin), 4 + block.len())?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.extend_from_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control_header(out, TYPE_RST_STREAM, 0, 8)?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::Ping { id } => {
                control_header(out, TYPE_PING, 0, 4)?;
                out.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control_header(out, TYPE_GOAWAY, 0, 8)?;
                out.put_u32(last_good_stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            // Nothing to say for frames we only ever ignore.
            Frame::Ignored { .. } => {}
        }
        Ok(())
    }
}

fn fin_flag(fin: bool) -> u8 {
    if fin {
        FLAG_FIN
    } else {
        0
    }
}

fn checked_len(len: usize) -> Result<u32, SpdyError> {
    if len > MAX_PAYLOAD {
        return Err(SpdyError::FrameTooLarge { length: len });
    }
    Ok(len as u32)
}

fn control_header(
    out: &mut BytesMut,
    frame_type: u16,
    flags: u8,
    len: usize,
) -> Result<(), SpdyError> {
    let length = checked_len(len)?;
    out.put_u8(CONTROL_BIT);
    out.put_u8(SPDY_VERSION as u8);
    out.put_u16(frame_type);
    out.put_u32(u32::from(flags) << 24 | length);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::streaming::spdy_headers::HeaderDeflater;

    /// A SYN_STREAM as spdystream writes it, built by hand with the client's own zlib context.
    fn client_syn_stream(
        deflater: &mut HeaderDeflater,
        stream_id: u32,
        pairs: &[(&str, &str)],
    ) -> Vec<u8> {
        let headers = Headers(
            pairs
                .iter()
                .map(|(n, v)| ((*n).into(), (*v).into()))
                .collect(),
        );
        let block = deflater.deflate(&headers).expect("deflate");
        let mut frame = vec![0x80, 0x03, 0x00, 0x01];
        frame.extend_from_slice(&((10 + block.len()) as u32).to_be_bytes());
        frame.extend_from_slice(&stream_id.to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        frame.extend_from_slice(&block);
        frame
    }

    #[test]
    fn decodes_hand_made_frames_split_at_any_byte() {
        let mut client_zlib = HeaderDeflater::new().expect("deflater");
        let mut wire = client_syn_stream(
            &mut client_zlib,
            1,
            &[("streamtype", "error"), ("port", "80"), ("requestid", "0")],
        );
        wire.extend_from_slice(&[0, 0, 0, 1, 0x01, 0, 0, 0]); // empty DATA with FIN on stream 1
        wire.extend_from_slice(&client_syn_stream(
            &mut client_zlib,
            3,
            &[("streamtype", "data")],
        ));
        wire.extend_from_slice(&[0, 0, 0, 3, 0x00, 0, 0, 2, b'h', b'i']);
        wire.extend_from_slice(&[0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 7]); // PING 7
        wire.extend_from_slice(&[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 3, 0, 0, 0, 5]); // RST 3 CANCEL
        wire.extend_from_slice(&[0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 1, 0]); // WINDOW_UPDATE
        wire.extend_from_slice(&[0x80, 3, 0, 7, 0, 0, 0, 8, 0, 0, 0, 3, 0, 0, 0, 0]); // GOAWAY

        // One byte at a time is the worst case of websocket message boundaries.
        let mut decoder = FrameDecoder::new();
        let mut frames = Vec::new();
        for byte in wire {
            decoder.extend(&[byte]);
            while let Some(frame) = decoder.next_frame().expect("valid frame") {
                frames.push(frame);
            }
        }
        assert_eq!(frames.len(), 8);
        let Frame::SynStream {
            stream_id: 1,
            fin: false,
            headers,
        } = &frames[0]
        else {
            panic!("{:?}", frames[0])
        };
        assert_eq!(headers.get("streamtype"), Some("error"));
        assert_eq!(headers.get("requestid"), Some("0"));
        assert_eq!(
            frames[1],
            Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::new()
            }
        );
        assert!(
            matches!(&frames[2], Frame::SynStream { stream_id: 3, headers, .. } if headers.get("streamtype") == Some("data"))
        );
        assert_eq!(
            frames[3],
            Frame::Data {
                stream_id: 3,
                fin: false,
                data: Bytes::from_static(b"hi")
            }
        );
        assert_eq!(frames[4], Frame::Ping { id: 7 });
        assert_eq!(
            frames[5],
            Frame::RstStream {
                stream_id: 3,
                status: RST_CANCEL
            }
        );
        assert_eq!(frames[6], Frame::Ignored { frame_type: 9 });
        assert_eq!(
            frames[7],
            Frame::GoAway {
                last_good_stream_id: 3,
                status: 0
            }
        );
    }

    #[test]
    fn encodes_frames_byte_exact() {
        let mut encoder = FrameEncoder::new().expect("encoder");
        let mut out = BytesMut::new();
        encoder
            .encode(
                &Frame::Data {
                    stream_id: 3,
                    fin: true,
                    data: Bytes::from_static(b"ok"),
                },
                &mut out,
            )
            .expect("data");
        assert_eq!(&out[..], &[0, 0, 0, 3, 1, 0, 0, 2, b'o', b'k']);
        out.clear();
        encoder
            .encode(&Frame::Ping { id: 9 }, &mut out)
            .expect("ping");
        assert_eq!(&out[..], &[0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 9]);
        out.clear();
        encoder
            .encode(
                &Frame::RstStream {
                    stream_id: 5,
                    status: 5,
                },
                &mut out,
            )
            .expect("rst");
        assert_eq!(
            &out[..],
            &[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0, 5]
        );
    }

    #[test]
    fn syn_reply_round_trips_through_decoder() {
        let mut encoder = FrameEncoder::new().expect("encoder");
        let mut decoder = FrameDecoder::new();
        let mut out = BytesMut::new();
        for stream_id in [1, 3, 5] {
            let reply = Frame::SynReply {
                stream_id,
                fin: false,
                headers: Headers::default(),
            };
            encoder.encode(&reply, &mut out).expect("encode");
            // Header bytes: control bit, version 3, type 2.
            assert_eq!(&out[..4], &[0x80, 3, 0, 2]);
            decoder.extend(&out);
            out.clear();
            assert_eq!(decoder.next_frame().expect("decode"), Some(reply));
        }
    }

    #[test]
    fn rejects_wrong_version_and_short_frames() {
        let mut decoder = FrameDecoder::new();
        decoder.extend(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]);
        assert!(matches!(
            decoder.next_frame(),
            Err(SpdyError::UnsupportedVersion { version: 2 })
        ));
        let mut decoder = FrameDecoder::new();
        decoder.extend(&[0x80, 3, 0, 3, 0, 0, 0, 2, 0, 0]);
        assert!(matches!(
            decoder.next_frame(),
            Err(SpdyError::ShortFrame {
                frame_type: 3,
                length: 2
            })
        ));
    }

    #[test]
    fn oversized_data_is_refused() {
        let mut encoder = FrameEncoder::new().expect("encoder");
        let data = Bytes::from(vec![0u8; MAX_PAYLOAD + 1]);
        let err = encoder.encode(
            &Frame::Data {
                stream_id: 1,
                fin: false,
                data,
            },
            &mut BytesMut::new(),
        );
        assert!(matches!(err, Err(SpdyError::FrameTooLarge { .. })));
    }
}
