//! SPDY/3 header blocks: the name/value list and its zlib compression with the SPDY/3 dictionary.
//!
//! Each direction of a connection has one zlib stream that lives as long as the connection, with a
//! sync flush after every block, so the inflater and deflater here must see the blocks in wire order.

use std::sync::OnceLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::error::SpdyError;

/// Largest inflated header block accepted. kubectl sends three short headers per stream; the limit
/// only stops a zlib bomb from eating memory.
const MAX_HEADER_BLOCK: usize = 64 * 1024;

/// Header names that open the SPDY/3 dictionary, each stored with a 32-bit length prefix.
const DICTIONARY_WORDS: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The unprefixed tail of the SPDY/3 dictionary (status lines, dates, common values).
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// The 1423-byte SPDY/3 zlib dictionary. Built from its two parts rather than pasted as hex so a
/// reader can check it against the spec; the unit test pins its length and adler32.
pub(crate) fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        let mut dict = Vec::with_capacity(1423);
        for word in DICTIONARY_WORDS {
            dict.extend_from_slice(&(word.len() as u32).to_be_bytes());
            dict.extend_from_slice(word.as_bytes());
        }
        dict.extend_from_slice(DICTIONARY_TAIL.as_bytes());
        dict
    })
}

/// A decoded header block: lowercase names, values with NUL-separated multiples left joined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Headers(pub(crate) Vec<(String, String)>);

impl Headers {
    /// The value of the first header called `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The uncompressed wire form: 32-bit count, then 32-bit length-prefixed names and values.
    pub(crate) fn to_block(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(self.0.len() as u32).to_be_bytes());
        for (name, value) in &self.0 {
            for part in [name, value] {
                out.extend_from_slice(&(part.len() as u32).to_be_bytes());
                out.extend_from_slice(part.as_bytes());
            }
        }
        out
    }

    /// Parses an uncompressed block, rejecting lengths that run past its end.
    pub(crate) fn from_block(block: &[u8]) -> Result<Self, SpdyError> {
        let mut rest = block;
        let count = take_u32(&mut rest, "missing pair count")?;
        // Each pair needs at least 8 bytes of lengths, which bounds a lying count.
        if count as usize > rest.len() / 8 {
            return Err(SpdyError::MalformedHeaders {
                reason: "pair count exceeds block size",
            });
        }
        let mut pairs = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let name = take_string(&mut rest, "truncated header name")?;
            let value = take_string(&mut rest, "truncated header value")?;
            pairs.push((name, value));
        }
        Ok(Headers(pairs))
    }
}

fn take_u32(rest: &mut &[u8], reason: &'static str) -> Result<u32, SpdyError> {
    let Some((head, tail)) = rest.split_first_chunk::<4>() else {
        return Err(SpdyError::MalformedHeaders { reason });
    };
    *rest = tail;
    Ok(u32::from_be_bytes(*head))
}

fn take_string(rest: &mut &[u8], reason: &'static str) -> Result<String, SpdyError> {
    let len = take_u32(rest, reason)? as usize;
    if len > rest.len() {
        return Err(SpdyError::MalformedHeaders { reason });
    }
    let (bytes, tail) = rest.split_at(len);
    *rest = tail;
    String::from_utf8(bytes.to_vec()).map_err(|_| SpdyError::MalformedHeaders {
        reason: "header is not utf-8",
    })
}

/// Compression side of one connection direction (server to client).
pub(crate) struct HeaderDeflater {
    zlib: Compress,
}

impl HeaderDeflater {
    pub(crate) fn new() -> Result<Self, SpdyError> {
        let mut zlib = Compress::new(Compression::default(), true);
        // Set before the first byte so the zlib header carries the dictionary id that Go's
        // zlib.NewReaderDict checks.
        zlib.set_dictionary(dictionary())
            .map_err(|e| SpdyError::Deflate {
                reason: e.to_string(),
            })?;
        Ok(Self { zlib })
    }

    /// Compresses one block and sync-flushes, so the peer can inflate it without later bytes.
    pub(crate) fn deflate(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let raw = headers.to_block();
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut consumed = 0usize;
        loop {
            let before_in = self.zlib.total_in();
            self.zlib
                .compress_vec(&raw[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Deflate {
                    reason: e.to_string(),
                })?;
            consumed += (self.zlib.total_in() - before_in) as usize;
            // Spare output capacity after a sync flush means zlib had nothing more to say.
            if consumed == raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(out.capacity().max(64));
        }
    }
}

/// Decompression side of one connection direction (client to server).
pub(crate) struct HeaderInflater {
    zlib: Decompress,
}

impl HeaderInflater {
    pub(crate) fn new() -> Self {
        Self {
            zlib: Decompress::new(true),
        }
    }

    /// Inflates one compressed block and parses it.
    pub(crate) fn inflate(&mut self, compressed: &[u8]) -> Result<Headers, SpdyError> {
        let mut out = Vec::with_capacity(compressed.len() * 4 + 64);
        let mut consumed = 0usize;
        loop {
            let (before_in, before_out) = (self.zlib.total_in(), self.zlib.total_out());
            let result =
                self.zlib
                    .decompress_vec(&compressed[consumed..], &mut out, FlushDecompress::Sync);
            consumed += (self.zlib.total_in() - before_in) as usize;
            let progressed =
                self.zlib.total_in() != before_in || self.zlib.total_out() != before_out;
            match result {
                Ok(Status::StreamEnd) => break,
                Ok(Status::Ok | Status::BufError) => {
                    if consumed == compressed.len() && out.len() < out.capacity() {
                        break;
                    }
                    if !progressed && out.len() < out.capacity() {
                        return Err(SpdyError::Inflate {
                            reason: "no progress on header block".into(),
                        });
                    }
                }
                // zlib stops at the header's dictionary id and wants the dictionary before going on.
                Err(e) if e.needs_dictionary().is_some() => {
                    self.zlib
                        .set_dictionary(dictionary())
                        .map_err(|e| SpdyError::Inflate {
                            reason: e.to_string(),
                        })?;
                    continue;
                }
                Err(e) => {
                    return Err(SpdyError::Inflate {
                        reason: e.to_string(),
                    })
                }
            }
            if out.len() >= MAX_HEADER_BLOCK {
                return Err(SpdyError::HeadersTooLarge {
                    limit: MAX_HEADER_BLOCK,
                });
            }
            out.reserve(out.capacity().max(64));
        }
        Headers::from_block(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in data {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    #[test]
    fn dictionary_matches_spdy3_spec() {
        let dict = dictionary();
        assert_eq!(dict.len(), 1423);
        // The id Go's zlib writer puts in the stream header; a mismatch breaks kubectl's reader.
        assert_eq!(adler32(dict), 0xe3c6_a7c2);
    }

    #[test]
    fn block_round_trips_through_one_zlib_context() {
        let mut deflater = HeaderDeflater::new().expect("deflater");
        let mut inflater = HeaderInflater::new();
        let first = Headers(vec![
            ("streamtype".into(), "error".into()),
            ("port".into(), "8080".into()),
            ("requestid".into(), "0".into()),
        ]);
        let second = Headers(vec![("streamtype".into(), "data".into())]);
        let empty = Headers::default();
        for headers in [&first, &second, &empty, &first] {
            let wire = deflater.deflate(headers).expect("deflate");
            assert_eq!(&inflater.inflate(&wire).expect("inflate"), headers);
        }
    }

    #[test]
    fn first_block_announces_the_dictionary() {
        let wire = HeaderDeflater::new()
            .expect("deflater")
            .deflate(&Headers::default())
            .expect("deflate");
        // FDICT is bit 5 of the zlib FLG byte; the dictionary id follows the two header bytes.
        assert_ne!(wire[1] & 0x20, 0);
        assert_eq!(wire[2..6], 0xe3c6_a7c2u32.to_be_bytes());
    }

    #[test]
    fn rejects_lengths_past_the_end() {
        let mut block = Headers(vec![("a".into(), "b".into())]).to_block();
        block.truncate(block.len() - 1);
        assert!(matches!(
            Headers::from_block(&block),
            Err(SpdyError::MalformedHeaders { .. })
        ));
        let lying_count = 1000u32.to_be_bytes();
        assert!(Headers::from_block(&lying_count).is_err());
    }

    #[test]
    fn garbage_does_not_inflate() {
        let mut inflater = HeaderInflater::new();
        assert!(inflater
            .inflate(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3])
            .is_err());
    }
}
