//! Writing verified blobs from the node's image cache into containerd's content store.

use std::collections::HashMap;
use std::path::Path;

use containerd_client::services::v1::{
    AbortRequest, Info, InfoRequest, UpdateRequest, WriteAction, WriteContentRequest,
};
use containerd_client::tonic::Code;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_stream::wrappers::ReceiverStream;

use super::connection::{Containerd, Lease};
use super::error::ContainerdError;

/// Bytes per write message; containerd accepts messages up to 16 MiB.
const CHUNK: usize = 1024 * 1024;

/// Where a blob's bytes are.
pub(super) enum Source<'a> {
    /// A verified file of the image cache.
    File(&'a Path),
    /// Bytes in memory (the image config, which the cache hands over read).
    Bytes(&'a [u8]),
}

/// A blob to put into the content store.
pub(super) struct Blob<'a> {
    pub(super) source: Source<'a>,
    pub(super) digest: &'a str,
    pub(super) size: u64,
    /// Garbage-collection references and other labels containerd should hold on it.
    pub(super) labels: HashMap<String, String>,
}

impl Containerd {
    /// Makes sure the blob is in the content store with (at least) the given labels; writes it
    /// only when containerd does not have it.
    pub(super) async fn ensure_blob(
        &self,
        blob: Blob<'_>,
        lease: &Lease,
    ) -> Result<(), ContainerdError> {
        let info = self
            .content()
            .info(self.leased(
                InfoRequest {
                    digest: blob.digest.to_owned(),
                },
                lease,
            ))
            .await;
        match info {
            Ok(response) => {
                let present = response
                    .into_inner()
                    .info
                    .map(|i| i.labels)
                    .unwrap_or_default();
                if blob.labels.iter().all(|(k, v)| present.get(k) == Some(v)) {
                    return Ok(());
                }
                return self.label_blob(&blob, lease).await;
            }
            Err(status) if status.code() == Code::NotFound => {}
            Err(status) => return Err(ContainerdError::rpc("stat content", blob.digest)(status)),
        }
        self.write_blob(&blob, lease).await
    }

    async fn label_blob(&self, blob: &Blob<'_>, lease: &Lease) -> Result<(), ContainerdError> {
        let paths = blob.labels.keys().map(|k| format!("labels.{k}")).collect();
        self.content()
            .update(self.leased(
                UpdateRequest {
                    info: Some(Info {
                        digest: blob.digest.to_owned(),
                        labels: blob.labels.clone(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask { paths }),
                },
                lease,
            ))
            .await
            .map_err(ContainerdError::rpc("label content", blob.digest))?;
        Ok(())
    }

    async fn write_blob(&self, blob: &Blob<'_>, lease: &Lease) -> Result<(), ContainerdError> {
        // A ref of its own per write: two clients importing the same blob then both write it
        // and the second commit finds it there. An ingest a crash leaves behind is held only
        // by the (expiring) lease and then collected.
        let reference = format!("bramble-{}-{}", blob.digest, super::io::unique_suffix());
        let result = self.write_stream(blob, &reference, lease).await;
        if result.is_err() {
            let _ = self
                .content()
                .abort(self.leased(AbortRequest { r#ref: reference }, lease))
                .await;
        }
        result
    }

    async fn write_stream(
        &self,
        blob: &Blob<'_>,
        reference: &str,
        lease: &Lease,
    ) -> Result<(), ContainerdError> {
        let total = i64::try_from(blob.size).map_err(|_| ContainerdError::Image {
            image: blob.digest.to_owned(),
            reason: "blob size does not fit containerd's int64".to_owned(),
        })?;
        let (mut reader, path): (Box<dyn AsyncRead + Send + Unpin>, &Path) = match blob.source {
            Source::File(path) => (
                Box::new(
                    tokio::fs::File::open(path)
                        .await
                        .map_err(ContainerdError::io("open", path))?,
                ),
                path,
            ),
            Source::Bytes(bytes) => (Box::new(bytes), Path::new("(image config)")),
        };
        let message = |action: WriteAction, offset: i64, data: Vec<u8>| WriteContentRequest {
            action: action as i32,
            r#ref: reference.to_owned(),
            total,
            expected: blob.digest.to_owned(),
            offset,
            data,
            labels: if action == WriteAction::Commit {
                blob.labels.clone()
            } else {
                HashMap::new()
            },
        };
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        // containerd answers each message; the first must be in flight before the call
        // resolves, since the response headers come with the first answer.
        let _ = sender.send(message(WriteAction::Stat, 0, Vec::new())).await;
        let mut responses = match self
            .content()
            .write(self.leased(ReceiverStream::new(receiver), lease))
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::AlreadyExists => return Ok(()),
            Err(status) => return Err(ContainerdError::rpc("write content", blob.digest)(status)),
        };
        if !next_answer(&mut responses, blob.digest).await? {
            return Ok(());
        }
        let mut offset: i64 = 0;
        let mut buffer = vec![0u8; CHUNK];
        loop {
            let read = reader
                .read(&mut buffer)
                .await
                .map_err(ContainerdError::io("read", path))?;
            if read == 0 {
                break;
            }
            let chunk = buffer.get(..read).unwrap_or_default().to_vec();
            let _ = sender
                .send(message(WriteAction::Write, offset, chunk))
                .await;
            offset = offset.saturating_add(read as i64);
            if !next_answer(&mut responses, blob.digest).await? {
                return Ok(());
            }
        }
        let _ = sender
            .send(message(WriteAction::Commit, offset, Vec::new()))
            .await;
        next_answer(&mut responses, blob.digest).await?;
        Ok(())
    }
}

/// Reads containerd's answer to the last write message: `Ok(false)` when containerd says the
/// blob exists already (another writer committed it), so writing can stop.
async fn next_answer(
    responses: &mut containerd_client::tonic::Streaming<
        containerd_client::services::v1::WriteContentResponse,
    >,
    digest: &str,
) -> Result<bool, ContainerdError> {
    match responses.message().await {
        Ok(Some(_)) => Ok(true),
        Ok(None) => Err(ContainerdError::rpc("write content", digest)(
            containerd_client::tonic::Status::unavailable(
                "containerd closed the write stream early",
            ),
        )),
        Err(status) if status.code() == Code::AlreadyExists => Ok(false),
        Err(status) => Err(ContainerdError::rpc("write content", digest)(status)),
    }
}
