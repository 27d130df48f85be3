//! Streaming between HTTP bodies and files, in bounded memory.
//!
//! Uploads are hashed and counted frame by frame while they are written; downloads are read in
//! fixed-size chunks only as fast as the connection takes them. No blob is ever held whole in
//! memory.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Body as HttpBody, Frame, Incoming};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::errors::RegistryError;
use super::names::Hasher;
use super::Body;

/// Size of the chunks a blob is read from disk in.
const READ_CHUNK: usize = 64 * 1024;

/// Copies a request or upstream body into `out`, feeding `hasher`, and returns the byte count.
///
/// Fails with [`RegistryError::SizeInvalid`] as soon as the body goes past `limit` (so an
/// oversized body is never written past its announced size), with [`RegistryError::BodyRead`]
/// when the peer aborts or stalls for longer than `idle`. The caller owns cleanup of `out`.
pub async fn copy_body<B, W>(
    body: &mut B,
    out: &mut W,
    hasher: &mut Hasher,
    limit: Option<u64>,
    idle: Duration,
) -> Result<u64, RegistryError>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
    W: AsyncWrite + Unpin,
{
    let mut received: u64 = 0;
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(RegistryError::BodyRead {
                    received,
                    reason: format!("no data for {} seconds", idle.as_secs()),
                })
            }
            Ok(None) => break,
            Ok(Some(Err(error))) => {
                return Err(RegistryError::BodyRead {
                    received,
                    reason: error.to_string(),
                })
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            // Trailers carry nothing we store.
            continue;
        };
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        let total = received.saturating_add(len);
        if let Some(limit) = limit {
            if total > limit {
                return Err(RegistryError::SizeInvalid {
                    declared: limit,
                    received: total,
                });
            }
        }
        hasher.update(&data);
        out.write_all(&data)
            .await
            .map_err(|source| RegistryError::io("write upload data", "", source))?;
        received = total;
    }
    out.flush()
        .await
        .map_err(|source| RegistryError::io("flush upload data", "", source))?;
    Ok(received)
}

/// Reads a request body of at most `limit` bytes into memory (manifests only).
pub async fn read_limited(
    body: &mut Incoming,
    limit: u64,
    idle: Duration,
) -> Result<Vec<u8>, RegistryError> {
    let mut buffer = Vec::new();
    let mut sink = Hasher::new(super::names::Algorithm::Sha256);
    match copy_body(body, &mut buffer, &mut sink, Some(limit), idle).await {
        Err(RegistryError::SizeInvalid { received, .. }) => Err(RegistryError::ManifestTooLarge {
            size: received,
            limit,
        }),
        other => other.map(|_| buffer),
    }
}

/// A response body streaming `len` bytes from `reader`.
///
/// The response body type cannot carry errors, so a read failure ends the stream early; with
/// the `Content-Length` already sent, the client sees a truncated transfer rather than wrong
/// data, and the failure is logged.
pub fn reader_body<R>(reader: R, len: u64) -> Body
where
    R: AsyncRead + Unpin + Send + Sync + 'static,
{
    let stream = futures::stream::unfold((reader, len), |(mut reader, remaining)| async move {
        if remaining == 0 {
            return None;
        }
        let want = usize::try_from(remaining).map_or(READ_CHUNK, |r| r.min(READ_CHUNK));
        let mut buffer = BytesMut::zeroed(want);
        match reader.read(&mut buffer).await {
            Ok(0) => {
                tracing::warn!(remaining, "blob file ended before its recorded size");
                None
            }
            Ok(read) => {
                buffer.truncate(read);
                let sent = u64::try_from(read).unwrap_or(remaining);
                let chunk: Bytes = buffer.freeze();
                Some((chunk, (reader, remaining.saturating_sub(sent))))
            }
            Err(error) => {
                tracing::warn!(%error, remaining, "reading blob for a response failed");
                None
            }
        }
    });
    BodyExt::boxed(StreamBody::new(stream.map(|chunk| Ok(Frame::data(chunk)))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::names::{Algorithm, Digest};
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn reader_body_streams_the_requested_length_in_bounded_frames() -> anyhow::Result<()> {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut body = reader_body(std::io::Cursor::new(data.clone()), 150_000);
        let mut collected = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(chunk) = frame?.into_data() else {
                continue;
            };
            assert!(chunk.len() <= READ_CHUNK, "frame of {} bytes", chunk.len());
            collected.extend_from_slice(&chunk);
        }
        assert_eq!(collected.len(), 150_000);
        assert_eq!(&collected[..], &data[..150_000]);
        Ok(())
    }

    #[tokio::test]
    async fn reader_body_ends_early_on_a_short_file() -> anyhow::Result<()> {
        let body = reader_body(std::io::Cursor::new(vec![1u8; 10]), 100);
        assert_eq!(body.collect().await?.to_bytes().len(), 10);
        Ok(())
    }

    fn chunks(
        parts: Vec<Result<&'static [u8], &'static str>>,
    ) -> impl HttpBody<Data = Bytes, Error = String> + Unpin {
        let frames = parts.into_iter().map(|part| {
            part.map(|bytes| Frame::data(Bytes::from_static(bytes)))
                .map_err(str::to_owned)
        });
        StreamBody::new(futures::stream::iter(frames))
    }

    const IDLE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn copy_hashes_and_counts_every_frame() -> anyhow::Result<()> {
        let mut body = chunks(vec![Ok(b"hello "), Ok(b"world")]);
        let (mut out, mut hasher) = (Vec::new(), Hasher::new(Algorithm::Sha256));
        let copied = copy_body(&mut body, &mut out, &mut hasher, Some(11), IDLE).await?;
        assert_eq!(copied, 11);
        assert_eq!(out, b"hello world");
        assert_eq!(
            hasher.finish(),
            Digest::of(Algorithm::Sha256, b"hello world")
        );
        Ok(())
    }

    #[tokio::test]
    async fn copy_stops_before_writing_past_the_limit() {
        let mut body = chunks(vec![Ok(b"12345"), Ok(b"678")]);
        let (mut out, mut hasher) = (Vec::new(), Hasher::new(Algorithm::Sha256));
        let result = copy_body(&mut body, &mut out, &mut hasher, Some(6), IDLE).await;
        assert!(matches!(
            result,
            Err(RegistryError::SizeInvalid {
                declared: 6,
                received: 8
            })
        ));
        assert_eq!(out, b"12345", "the oversized frame must not be written");
    }

    #[tokio::test]
    async fn copy_reports_an_aborted_body() {
        let mut body = chunks(vec![Ok(b"12"), Err("connection reset")]);
        let (mut out, mut hasher) = (Vec::new(), Hasher::new(Algorithm::Sha256));
        let result = copy_body(&mut body, &mut out, &mut hasher, None, IDLE).await;
        assert!(matches!(
            result,
            Err(RegistryError::BodyRead { received: 2, ref reason }) if reason == "connection reset"
        ));
    }
}
