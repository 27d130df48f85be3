//! Task events for containerd (TaskCreate, TaskStart, TaskExit, TaskDelete, TaskExecAdded,
//! TaskExecStarted), published in order from one thread so that a slow containerd never
//! blocks a request or an exiting instance.

use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use containerd_shim::event::Event as _;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;

use crate::process::ExitStatus;
use crate::stdio::Stdio;

/// One event to publish.
pub enum Event {
    /// A task was created.
    Create(TaskCreate),
    /// A task's init process started.
    Start(TaskStart),
    /// A process ended.
    Exit(TaskExit),
    /// A task was deleted.
    Delete(TaskDelete),
    /// An exec process was added.
    ExecAdded(TaskExecAdded),
    /// An exec process started.
    ExecStarted(TaskExecStarted),
}

impl Event {
    fn into_message(self) -> Box<dyn MessageDyn> {
        match self {
            Event::Create(e) => Box::new(e),
            Event::Start(e) => Box::new(e),
            Event::Exit(e) => Box::new(e),
            Event::Delete(e) => Box::new(e),
            Event::ExecAdded(e) => Box::new(e),
            Event::ExecStarted(e) => Box::new(e),
        }
    }

    fn topic(&self) -> String {
        match self {
            Event::Create(e) => e.topic(),
            Event::Start(e) => e.topic(),
            Event::Exit(e) => e.topic(),
            Event::Delete(e) => e.topic(),
            Event::ExecAdded(e) => e.topic(),
            Event::ExecStarted(e) => e.topic(),
        }
    }
}

/// Sends events to the publishing thread; cheap to share.
pub struct Events {
    sender: Mutex<mpsc::Sender<Event>>,
}

impl Events {
    /// Starts the publishing thread for `namespace`.
    pub fn start(publisher: RemotePublisher, namespace: String) -> Events {
        let (sender, receiver) = mpsc::channel::<Event>();
        std::thread::spawn(move || {
            for event in receiver {
                let topic = event.topic();
                if let Err(err) =
                    publisher.publish(Context::default(), &topic, &namespace, event.into_message())
                {
                    log::warn!("publishing {topic} to containerd failed: {err}");
                }
            }
        });
        Events {
            sender: Mutex::new(sender),
        }
    }

    /// Queues `event`.
    pub fn send(&self, event: Event) {
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if sender.send(event).is_err() {
            log::warn!("the event publisher thread is gone; an event was dropped");
        }
    }
}

/// A protobuf timestamp.
pub fn timestamp(at: SystemTime) -> Timestamp {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
        ..Default::default()
    }
}

/// TaskCreate for a container.
pub fn create(
    id: &str,
    bundle: &str,
    rootfs: Vec<containerd_shim::protos::types::mount::Mount>,
    stdio: &Stdio,
    pid: u32,
) -> Event {
    Event::Create(TaskCreate {
        container_id: id.to_string(),
        bundle: bundle.to_string(),
        rootfs,
        io: Some(TaskIO {
            stdin: stdio.stdin.clone(),
            stdout: stdio.stdout.clone(),
            stderr: stdio.stderr.clone(),
            terminal: stdio.terminal,
            ..Default::default()
        })
        .into(),
        pid,
        ..Default::default()
    })
}

/// TaskStart or TaskExecStarted.
pub fn started(id: &str, exec_id: &str, pid: u32) -> Event {
    if exec_id.is_empty() {
        Event::Start(TaskStart {
            container_id: id.to_string(),
            pid,
            ..Default::default()
        })
    } else {
        Event::ExecStarted(TaskExecStarted {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            pid,
            ..Default::default()
        })
    }
}

/// TaskExit; `id` is the exec id, or the container id for the init process.
pub fn exited(id: &str, exec_id: &str, pid: u32, exit: ExitStatus) -> Event {
    Event::Exit(TaskExit {
        container_id: id.to_string(),
        id: if exec_id.is_empty() { id } else { exec_id }.to_string(),
        pid,
        exit_status: exit.code,
        exited_at: Some(timestamp(exit.at)).into(),
        ..Default::default()
    })
}

/// TaskDelete of a container.
pub fn deleted(id: &str, pid: u32, exit: Option<ExitStatus>) -> Event {
    Event::Delete(TaskDelete {
        container_id: id.to_string(),
        pid,
        exit_status: exit.map_or(0, |e| e.code),
        exited_at: exit.map(|e| timestamp(e.at)).into(),
        ..Default::default()
    })
}

/// TaskExecAdded.
pub fn exec_added(id: &str, exec_id: &str) -> Event {
    Event::ExecAdded(TaskExecAdded {
        container_id: id.to_string(),
        exec_id: exec_id.to_string(),
        ..Default::default()
    })
}
