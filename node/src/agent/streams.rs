//! Streams the control plane opens through the node's connection: logs, exec, attach and
//! port-forward. Each runs as its own task; data from the control plane (stdin, forwarded
//! bytes) is routed to it by stream id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bramble_api::node_protocol::{
    node_message, stream_open, Channel, NodeMessage, StreamClose, StreamData, StreamOpen,
};
use bramble_wasm_shim::guest::KillHandle;
use bramble_wasm_shim::sandbox::SandboxSpec;
use bytes::Bytes;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::logs::{self, Selection};
use super::sync::{Launched, Phase};
use super::{lock, Agent};
#[cfg(feature = "containerd")]
use crate::containerd::{make_fifo, open_fifo_reader, ExecIo};
use crate::pod::container_sandbox;

/// Poll interval of a followed log file.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Input routed to an open stream.
#[derive(Debug)]
pub(crate) enum Input {
    Data(Channel, Bytes),
    Close(Channel),
}

/// Open streams by id.
#[derive(Default)]
pub struct Streams {
    open: Mutex<HashMap<u64, mpsc::Sender<Input>>>,
}

/// Sends stream output to the control plane.
#[derive(Clone)]
struct Out {
    id: u64,
    uplink: mpsc::Sender<NodeMessage>,
}

impl Out {
    async fn data(&self, channel: Channel, data: Vec<u8>) -> bool {
        self.uplink
            .send(NodeMessage {
                kind: Some(node_message::Kind::Data(StreamData {
                    stream_id: self.id,
                    channel: channel as i32,
                    data,
                })),
            })
            .await
            .is_ok()
    }

    async fn close(&self, exit_code: Option<i32>, error: String) {
        let _ = self
            .uplink
            .send(NodeMessage {
                kind: Some(node_message::Kind::Close(StreamClose {
                    stream_id: self.id,
                    channel: Channel::Unspecified as i32,
                    exit_code,
                    error,
                })),
            })
            .await;
    }
}

impl Agent {
    /// Starts serving a stream the control plane opened.
    pub fn open_stream(self: &Arc<Self>, open: StreamOpen, uplink: mpsc::Sender<NodeMessage>) {
        let out = Out {
            id: open.stream_id,
            uplink,
        };
        let (tx, rx) = mpsc::channel(64);
        lock(&self.streams.open).insert(open.stream_id, tx);
        let agent = self.clone();
        tokio::spawn(async move {
            let result = match open.request {
                Some(stream_open::Request::Logs(r)) => agent.serve_logs(r, &out, rx).await,
                Some(stream_open::Request::Exec(r)) => agent.serve_exec(r, &out, rx).await,
                Some(stream_open::Request::Attach(r)) => agent.serve_attach(r, &out, rx).await,
                Some(stream_open::Request::PortForward(r)) => {
                    agent.serve_port_forward(r, &out, rx).await
                }
                None => Err("empty stream request".to_string()),
            };
            match result {
                Ok(exit_code) => out.close(exit_code, String::new()).await,
                Err(error) => out.close(None, error).await,
            }
            lock(&agent.streams.open).remove(&open.stream_id);
        });
    }

    /// Routes data from the control plane to its stream.
    pub async fn stream_data(&self, data: StreamData) {
        let tx = lock(&self.streams.open).get(&data.stream_id).cloned();
        if let Some(tx) = tx {
            let channel = Channel::try_from(data.channel).unwrap_or(Channel::Unspecified);
            let _ = tx.send(Input::Data(channel, data.data.into())).await;
        }
    }

    /// Routes a close from the control plane; closing the whole stream ends it.
    pub async fn stream_close(&self, close: StreamClose) {
        let channel = Channel::try_from(close.channel).unwrap_or(Channel::Unspecified);
        let tx = if channel == Channel::Unspecified {
            lock(&self.streams.open).remove(&close.stream_id)
        } else {
            lock(&self.streams.open).get(&close.stream_id).cloned()
        };
        if let Some(tx) = tx {
            let _ = tx.send(Input::Close(channel)).await;
        }
    }

    /// The log file of a container's current (or previous) start.
    fn log_file(
        &self,
        uid: &str,
        container: &str,
        previous: bool,
    ) -> Result<(std::path::PathBuf, u64), String> {
        let pods = lock(&self.pods);
        let runtime = pods
            .get(uid)
            .ok_or_else(|| format!("pod {uid} is not on this node"))?;
        let slot = runtime
            .slot(container)
            .ok_or_else(|| format!("container {container} is not valid for this pod"))?;
        let count = slot.record.restart_count;
        let wanted = if previous {
            if count == 0 {
                return Err(format!(
                    "previous terminated container \"{container}\" not found"
                ));
            }
            count - 1
        } else {
            count
        };
        Ok((self.log_path(uid, container, wanted), slot.attempt))
    }

    fn running(&self, uid: &str, container: &str, attempt: u64) -> bool {
        lock(&self.pods)
            .get(uid)
            .and_then(|r| r.slot(container))
            .is_some_and(|s| {
                s.attempt == attempt
                    && matches!(s.phase, Phase::Starting(_) | Phase::Running { .. })
            })
    }

    async fn serve_logs(
        &self,
        r: bramble_api::node_protocol::LogRequest,
        out: &Out,
        mut input: mpsc::Receiver<Input>,
    ) -> Result<Option<i32>, String> {
        let (path, attempt) = self.log_file(&r.pod_uid, &r.container, r.previous)?;
        let since = match (r.since_seconds, r.since_time.as_str()) {
            (Some(s), _) => Some(OffsetDateTime::now_utc() - time::Duration::seconds(s)),
            (None, "") => None,
            (None, t) => Some(
                OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| format!("sinceTime {t:?} is not RFC 3339: {e}"))?,
            ),
        };
        let selection = Selection {
            tail_lines: r.tail_lines,
            since,
            timestamps: r.timestamps,
            limit_bytes: r.limit_bytes,
        };
        let (existing, offset) = logs::read_existing(&path, &selection);
        // Always answer at once (possibly empty) so the API server can send its headers.
        if !out.data(Channel::Stdout, existing).await {
            return Ok(None);
        }
        if r.follow && !r.previous {
            self.follow(
                &path,
                offset,
                r.timestamps,
                &r.pod_uid,
                &r.container,
                attempt,
                out,
                &mut input,
                false,
            )
            .await;
        }
        Ok(None)
    }

    /// Sends records appended to `path` after `offset` until the container's start ends or
    /// the stream is closed.
    #[allow(clippy::too_many_arguments)]
    async fn follow(
        &self,
        path: &std::path::Path,
        mut offset: u64,
        timestamps: bool,
        uid: &str,
        container: &str,
        attempt: u64,
        out: &Out,
        input: &mut mpsc::Receiver<Input>,
        by_stream: bool,
    ) {
        let mut pending = String::new();
        loop {
            let alive = self.running(uid, container, attempt);
            if let Ok(mut file) = tokio::fs::File::open(path).await {
                let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
                if len < offset {
                    offset = 0; // rotated
                }
                if len > offset {
                    use tokio::io::AsyncSeekExt;
                    let mut buf = Vec::new();
                    if file.seek(std::io::SeekFrom::Start(offset)).await.is_ok()
                        && file.read_to_end(&mut buf).await.is_ok()
                    {
                        offset += buf.len() as u64;
                        pending.push_str(&String::from_utf8_lossy(&buf));
                        let mut stdout = Vec::new();
                        let mut stderr = Vec::new();
                        while let Some(end) = pending.find('\n') {
                            let line: String = pending.drain(..=end).collect();
                            if let Some(record) = logs::parse(line.trim_end_matches('\n')) {
                                let target = if by_stream && record.stream == "stderr" {
                                    &mut stderr
                                } else {
                                    &mut stdout
                                };
                                logs::render(&record, timestamps, target);
                            }
                        }
                        if !stdout.is_empty() && !out.data(Channel::Stdout, stdout).await {
                            return;
                        }
                        if !stderr.is_empty() && !out.data(Channel::Stderr, stderr).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            if !alive {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
                message = input.recv() => match message {
                    None | Some(Input::Close(Channel::Unspecified)) => return,
                    _ => {}
                },
            }
        }
    }

    async fn serve_attach(
        &self,
        r: bramble_api::node_protocol::AttachRequest,
        out: &Out,
        mut input: mpsc::Receiver<Input>,
    ) -> Result<Option<i32>, String> {
        let (path, attempt) = self.log_file(&r.pod_uid, &r.container, false)?;
        if !self.running(&r.pod_uid, &r.container, attempt) {
            return Err(format!("container {} is not running", r.container));
        }
        let offset = tokio::fs::metadata(&path)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        self.follow(
            &path,
            offset,
            false,
            &r.pod_uid,
            &r.container,
            attempt,
            out,
            &mut input,
            !r.tty,
        )
        .await;
        Ok(Some(0))
    }

    /// exec in a Wasm pod: a new instance of the container's program with the given argv and
    /// the container's env and volumes; its output streams back, its exit code ends the stream.
    async fn serve_exec(
        &self,
        r: bramble_api::node_protocol::ExecRequest,
        out: &Out,
        mut input: mpsc::Receiver<Input>,
    ) -> Result<Option<i32>, String> {
        let (desired, launched, spec, volumes) = {
            let desired = lock(&self.desired)
                .get(&r.pod_uid)
                .cloned()
                .ok_or_else(|| format!("pod {} is not on this node", r.pod_uid))?;
            let pods = lock(&self.pods);
            let runtime = pods
                .get(&r.pod_uid)
                .ok_or_else(|| "the pod is not running".to_string())?;
            let slot = runtime
                .slot(&r.container)
                .ok_or_else(|| format!("container {} is not valid for this pod", r.container))?;
            let launched = slot
                .launched
                .clone()
                .ok_or_else(|| format!("container {} has not started", r.container))?;
            (
                desired.clone(),
                launched,
                slot.spec.clone(),
                runtime.volumes_for_exec(),
            )
        };
        #[cfg_attr(
            not(feature = "containerd"),
            allow(clippy::infallible_destructuring_match)
        )]
        let program = match launched {
            Launched::Wasm(program) => program,
            #[cfg(feature = "containerd")]
            Launched::Container { id } => {
                return self.serve_container_exec(r, id, out, input).await;
            }
        };
        let volumes = volumes.ok_or_else(|| "the pod's volumes are not ready".to_string())?;
        if !program.is_command() {
            return Err(format!("container {} runs a wasi:http component, which has no command to exec; exec needs a WASI command module", r.container));
        }
        let mut sandbox: SandboxSpec = {
            let env = self.pod_env(&desired);
            container_sandbox(&env, &spec, &volumes).map_err(|e| e.to_string())?
        };
        sandbox.argv = r.command.clone();
        // `kubectl exec -i`: the guest reads what the client sends until it closes stdin.
        let mut stdin_writer = if r.stdin {
            let (reader, writer) = tokio::io::duplex(64 * 1024);
            sandbox.stdin = Some(Box::new(reader));
            Some(writer)
        } else {
            None
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<(Channel, Vec<u8>)>();
        sandbox.stdout = Some(Box::new(ChannelWriter(Channel::Stdout, tx.clone())));
        let stderr_channel = if r.tty {
            Channel::Stdout
        } else {
            Channel::Stderr
        };
        sandbox.stderr = Some(Box::new(ChannelWriter(stderr_channel, tx)));
        let kill = KillHandle::new();
        let runner = self.runner.clone();
        let run = {
            let kill = kill.clone();
            tokio::spawn(async move { runner.run(&program, sandbox, &kill).await })
        };
        tokio::select! {
            _ = forward_output(out, &mut rx) => {}
            _ = feed_stdin(&mut input, &mut stdin_writer) => { kill.kill(); }
        }
        match run.await {
            Ok(Ok(exit)) => Ok(Some(exit.code)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// exec in a container pod: a process in the running container (containerd exec), its
    /// output streamed back through FIFOs, its exit code ending the stream.
    #[cfg(feature = "containerd")]
    async fn serve_container_exec(
        &self,
        r: bramble_api::node_protocol::ExecRequest,
        id: String,
        out: &Out,
        mut input: mpsc::Receiver<Input>,
    ) -> Result<Option<i32>, String> {
        let rt = self
            .containerd
            .as_ref()
            .ok_or_else(|| "this node has no containerd".to_string())?;
        let exec_id = format!("exec-{}", crate::containerd::unique_suffix());
        let dir = self.fifo_dir(&r.pod_uid).join(&exec_id);
        let io = ExecIo {
            stdin: r.stdin.then(|| dir.join("stdin")),
            stdout: dir.join("stdout"),
            stderr: dir.join("stderr"),
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<(Channel, Vec<u8>)>();
        let stderr_channel = if r.tty {
            Channel::Stdout
        } else {
            Channel::Stderr
        };
        // The readers go first: the shim attaches to the FIFOs while exec runs.
        for (path, channel) in [
            (io.stdout.clone(), Channel::Stdout),
            (io.stderr.clone(), stderr_channel),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(mut reader) = open_fifo_reader(&path).await else {
                    return;
                };
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = reader.read(&mut buf).await {
                    if n == 0 || tx.send((channel, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut stdin = match &io.stdin {
            Some(path) => {
                make_fifo(path).map_err(|e| e.to_string())?;
                // Read-write, so opening does not wait for the shim to open its end.
                Some(
                    tokio::net::unix::pipe::OpenOptions::new()
                        .read_write(true)
                        .open_sender(path)
                        .map_err(|e| format!("cannot open {}: {e}", path.display()))?,
                )
            }
            None => None,
        };
        let exec = rt.client.exec(&id, &exec_id, r.command.clone(), io).await;
        let process = match exec {
            Ok(process) => process,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e.to_string());
            }
        };
        let killed = tokio::select! {
            _ = forward_output(out, &mut rx) => false,
            _ = feed_stdin(&mut input, &mut stdin) => true,
        };
        if killed {
            let _ = process.kill(9).await;
        }
        let code = process.wait().await.map_err(|e| e.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        code.map(|c| Some(i32::try_from(c).unwrap_or(i32::MAX)))
    }

    async fn serve_port_forward(
        &self,
        r: bramble_api::node_protocol::PortForwardRequest,
        out: &Out,
        mut input: mpsc::Receiver<Input>,
    ) -> Result<Option<i32>, String> {
        let port = u16::try_from(r.port).map_err(|_| format!("port {} is out of range", r.port))?;
        if !lock(&self.desired).contains_key(&r.pod_uid) {
            return Err(format!("pod {} is not on this node", r.pod_uid));
        }
        // A container pod listens in its own network namespace, reached at its pod IP; a Wasm
        // pod shares the node's.
        let host = self
            .pod_ip(&r.pod_uid)
            .unwrap_or_else(|| self.config.host_ip.clone());
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("failed to connect to localhost:{port} inside the pod: {e}"))?;
        if !out.data(Channel::Data, Vec::new()).await {
            return Ok(None);
        }
        let (mut read, mut write) = stream.into_split();
        let upstream = async {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if !out.data(Channel::Data, buf[..n].to_vec()).await {
                            return;
                        }
                    }
                }
            }
        };
        let downstream = async {
            while let Some(message) = input.recv().await {
                match message {
                    Input::Data(_, bytes) => {
                        if write.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                    Input::Close(Channel::Unspecified) => return,
                    Input::Close(_) => {
                        let _ = write.shutdown().await;
                    }
                }
            }
        };
        // The pod closing its side ends the connection, as with the kubelet.
        tokio::select! {
            _ = upstream => {}
            _ = downstream => {}
        }
        Ok(None)
    }
}

/// Sends exec output to the client until every writer is gone (the process ended) or the
/// client went away.
async fn forward_output(out: &Out, rx: &mut mpsc::UnboundedReceiver<(Channel, Vec<u8>)>) {
    while let Some((channel, data)) = rx.recv().await {
        if !out.data(channel, data).await {
            return;
        }
    }
}

/// Feeds what the client sends on stdin to `stdin`; the client closing stdin drops the
/// writer (the process reads end of file). Returns when the client ends the stream, which
/// kills the process. There is no terminal to resize: exec runs without one.
async fn feed_stdin<W: tokio::io::AsyncWrite + Unpin>(
    input: &mut mpsc::Receiver<Input>,
    stdin: &mut Option<W>,
) {
    loop {
        match input.recv().await {
            None | Some(Input::Close(Channel::Unspecified)) => return,
            Some(Input::Data(Channel::Stdin, bytes)) => {
                if let Some(writer) = stdin.as_mut() {
                    if writer.write_all(&bytes).await.is_err() {
                        *stdin = None;
                    }
                }
            }
            Some(Input::Close(Channel::Stdin)) => *stdin = None,
            Some(_) => {}
        }
    }
}

/// Exec output: a synchronous writer for the guest feeding an async channel.
struct ChannelWriter(Channel, mpsc::UnboundedSender<(Channel, Vec<u8>)>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.1
            .send((self.0, buf.to_vec()))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
