//! A guest's stdout/stderr: a bounded in-memory pipe to a caller-provided writer.
//!
//! Guest writes are accepted only while fewer than the pipe's capacity in bytes are waiting to
//! be written, so a guest that floods its output waits for the sink instead of growing the
//! agent's memory. The sink is called on tokio's blocking pool, so a slow disk never stalls the
//! executor, and a failing sink drops output rather than failing the guest.

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::PollSemaphore;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Bytes a pipe buffers by default before the guest has to wait.
pub const DEFAULT_CAPACITY: usize = 32 << 10;

/// Most bytes handed to the sink in one blocking call.
const BATCH: usize = 64 << 10;

/// A writer a guest's output goes to.
pub type Sink = Box<dyn Write + Send + Sync>;

/// The writing end given to WASI; clones share one buffer and one sink.
#[derive(Clone)]
pub struct OutputPipe {
    tx: mpsc::UnboundedSender<Bytes>,
    budget: Arc<Semaphore>,
    capacity: u32,
}

/// What the pump did, returned when the pipe is finished.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PumpSummary {
    /// Bytes handed to the sink successfully.
    pub bytes_written: u64,
    /// Bytes dropped because the sink failed.
    pub bytes_dropped: u64,
}

/// The task moving bytes from the pipe to the sink; it ends once every [`OutputPipe`] clone is
/// dropped and the sink has been flushed and dropped.
pub struct Pump {
    task: JoinHandle<PumpSummary>,
}

impl Pump {
    /// Waits until all output has reached the sink.
    pub async fn finish(self) -> PumpSummary {
        // The pump itself never panics; a join error means the runtime is shutting down.
        self.task.await.unwrap_or_default()
    }
}

/// Creates a pipe of `capacity` bytes (at least 1 KiB, at most 16 MiB) into `sink` and spawns
/// its pump on the current tokio runtime.
pub fn pipe(sink: Sink, capacity: usize) -> (OutputPipe, Pump) {
    let capacity = u32::try_from(capacity.clamp(1 << 10, 16 << 20)).unwrap_or(u32::MAX);
    let (tx, rx) = mpsc::unbounded_channel();
    let budget = Arc::new(Semaphore::new(capacity as usize));
    let task = tokio::spawn(pump(rx, Arc::clone(&budget), sink));
    (
        OutputPipe {
            tx,
            budget,
            capacity,
        },
        Pump { task },
    )
}

async fn pump(
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    budget: Arc<Semaphore>,
    sink: Sink,
) -> PumpSummary {
    let mut summary = PumpSummary::default();
    let mut sink = Some(sink);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let mut len = batch.iter().map(Bytes::len).sum::<usize>();
        while len < BATCH {
            match rx.try_recv() {
                Ok(more) => {
                    len += more.len();
                    batch.push(more);
                }
                Err(_) => break,
            }
        }
        let Some(mut writer) = sink.take() else {
            break;
        };
        let written = tokio::task::spawn_blocking(move || {
            let result = batch
                .iter()
                .try_for_each(|chunk| writer.write_all(chunk))
                .and_then(|()| writer.flush());
            (writer, result)
        })
        .await;
        let counted = u64::try_from(len).unwrap_or(u64::MAX);
        match written {
            Ok((writer, result)) => {
                sink = Some(writer);
                if let Err(err) = result {
                    if summary.bytes_dropped == 0 {
                        tracing::warn!(error = %err, "writing guest output failed; dropping it");
                    }
                    summary.bytes_dropped = summary.bytes_dropped.saturating_add(counted);
                } else {
                    summary.bytes_written = summary.bytes_written.saturating_add(counted);
                }
            }
            // The blocking pool is gone: the runtime is shutting down, nothing more to write.
            Err(_) => break,
        }
        budget.add_permits(len);
    }
    // Wakes a guest waiting for room, which then finds the pipe closed instead of hanging.
    budget.close();
    if let Some(writer) = sink {
        // Dropping may flush (a log writer ends its last line), which is blocking I/O too.
        let _ = tokio::task::spawn_blocking(move || drop(writer)).await;
    }
    summary
}

impl OutputPipe {
    fn send(&self, bytes: Bytes) -> Result<(), StreamError> {
        self.tx.send(bytes).map_err(|_| StreamError::Closed)
    }
}

impl IsTerminal for OutputPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(PipeWriter {
            pipe: self.clone(),
            permits: PollSemaphore::new(Arc::clone(&self.budget)),
        })
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for OutputPipe {
    async fn ready(&mut self) {
        // Holding one byte of budget proves there is room; it is given back at once.
        let _ = self.budget.acquire().await;
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for OutputPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let len = u32::try_from(bytes.len())
            .map_err(|_| StreamError::trap("write larger than the stream's buffer"))?;
        let permit = self
            .budget
            .try_acquire_many(len)
            .map_err(|_| StreamError::trap("write exceeded the permitted size"))?;
        // The pump returns the budget once the bytes reached the sink.
        permit.forget();
        self.send(bytes)
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        if self.tx.is_closed() {
            return Err(StreamError::Closed);
        }
        // Accepted bytes are already on their way; readiness waits for room, not for the disk.
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        if self.tx.is_closed() {
            return Err(StreamError::Closed);
        }
        Ok(self.budget.available_permits().min(self.capacity as usize))
    }
}

/// [`AsyncWrite`] view of a pipe, for WASI implementations that want one.
struct PipeWriter {
    pipe: OutputPipe,
    permits: PollSemaphore,
}

impl AsyncWrite for PipeWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let take = buf.len().min(self.pipe.capacity as usize);
        let want = u32::try_from(take).unwrap_or(self.pipe.capacity);
        let Some(permit) = std::task::ready!(self.permits.poll_acquire_many(cx, want)) else {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        };
        permit.forget();
        let chunk = Bytes::copy_from_slice(buf.get(..take).unwrap_or(buf));
        match self.pipe.send(chunk) {
            Ok(()) => Poll::Ready(Ok(take)),
            Err(_) => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::AsyncWriteExt;

    /// A sink that records what it got, optionally failing every write.
    #[derive(Clone, Default)]
    struct Recorder {
        bytes: Arc<Mutex<Vec<u8>>>,
        fail: bool,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.fail {
                return Err(std::io::Error::other("disk full"));
            }
            self.bytes.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn bytes_reach_the_sink_in_order() {
        let recorder = Recorder::default();
        let (mut pipe, pump) = pipe(Box::new(recorder.clone()), 4096);
        for n in 0..100 {
            let line = Bytes::from(format!("line {n}\n"));
            pipe.write_ready().await.expect("ready");
            pipe.write(line).expect("write");
        }
        let mut writer = Box::into_pin(pipe.async_stream());
        writer.write_all(b"tail\n").await.expect("async write");
        drop(writer);
        drop(pipe);
        let summary = pump.finish().await;
        let got = String::from_utf8(recorder.bytes.lock().expect("lock").clone()).expect("utf8");
        assert!(got.starts_with("line 0\nline 1\n"));
        assert!(got.ends_with("line 99\ntail\n"));
        assert_eq!(
            summary.bytes_written,
            u64::try_from(got.len()).expect("len")
        );
    }

    #[tokio::test]
    async fn a_full_pipe_refuses_more_until_the_sink_catches_up() {
        let (mut pipe, pump) = pipe(Box::new(std::io::sink()), 1024);
        assert_eq!(pipe.check_write().ok(), Some(1024));
        assert!(pipe.write(Bytes::from(vec![0u8; 1024])).is_ok());
        // Nothing may be written past the permit, whatever the sink is doing.
        assert!(matches!(
            pipe.write(Bytes::from(vec![0u8; 1025])),
            Err(StreamError::Trap(_))
        ));
        // Once the pump has written the first block, the room comes back.
        let ready = tokio::time::timeout(std::time::Duration::from_secs(5), pipe.write_ready());
        assert!(matches!(ready.await, Ok(Ok(n)) if n > 0));
        drop(pipe);
        assert_eq!(pump.finish().await.bytes_written, 1024);
    }

    #[tokio::test]
    async fn a_failing_sink_drops_output_without_failing_the_writer() {
        let recorder = Recorder {
            fail: true,
            ..Recorder::default()
        };
        let (mut pipe, pump) = pipe(Box::new(recorder), 1024);
        for _ in 0..10 {
            pipe.write_ready().await.expect("ready");
            pipe.write(Bytes::from_static(b"lost\n")).expect("write");
        }
        drop(pipe);
        let summary = pump.finish().await;
        assert_eq!(summary.bytes_dropped, 50);
        assert_eq!(summary.bytes_written, 0);
    }
}
