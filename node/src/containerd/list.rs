//! What the namespace holds: every container with its labels and its task's state, so that a
//! restarted agent can re-adopt running containers and remove those no Pod wants.

use std::collections::HashMap;

use containerd_client::services::v1::{ListContainersRequest, ListTasksRequest};
use containerd_client::types::v1::{Process, Status};

use super::connection::Containerd;
use super::error::ContainerdError;
use super::events::system_time;
use super::{ExistingContainer, TaskState};

impl Containerd {
    /// Every container in the namespace with its labels and its task's state, sorted by id.
    pub async fn list(&self) -> Result<Vec<ExistingContainer>, ContainerdError> {
        let containers = self
            .containers()
            .list(self.request(ListContainersRequest { filters: vec![] }))
            .await
            .map_err(ContainerdError::rpc(
                "list containers",
                &self.inner.config.namespace,
            ))?
            .into_inner()
            .containers;
        let mut tasks: HashMap<String, Process> = self
            .tasks()
            .list(self.request(ListTasksRequest {
                filter: String::new(),
            }))
            .await
            .map_err(ContainerdError::rpc(
                "list tasks",
                &self.inner.config.namespace,
            ))?
            .into_inner()
            .tasks
            .into_iter()
            .map(|t| (t.id.clone(), t))
            .collect();
        let mut found: Vec<ExistingContainer> = containers
            .into_iter()
            .map(|c| ExistingContainer {
                task: tasks.remove(&c.id).map(task_state),
                labels: c.labels.into_iter().collect(),
                id: c.id,
            })
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }
}

fn task_state(process: Process) -> TaskState {
    match Status::try_from(process.status) {
        Ok(Status::Created) => TaskState::Created,
        Ok(Status::Running) => TaskState::Running { pid: process.pid },
        Ok(Status::Stopped) => TaskState::Stopped {
            code: process.exit_status,
            exited_at: process.exited_at.and_then(system_time),
        },
        Ok(Status::Paused | Status::Pausing) => TaskState::Paused,
        Ok(Status::Unknown) | Err(_) => TaskState::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_process_states() {
        let process = |status: Status| Process {
            pid: 42,
            status: status as i32,
            exit_status: 3,
            ..Default::default()
        };
        assert_eq!(
            task_state(process(Status::Running)),
            TaskState::Running { pid: 42 }
        );
        assert_eq!(task_state(process(Status::Created)), TaskState::Created);
        assert_eq!(
            task_state(process(Status::Stopped)),
            TaskState::Stopped {
                code: 3,
                exited_at: None
            }
        );
        assert_eq!(task_state(process(Status::Pausing)), TaskState::Paused);
        assert_eq!(
            task_state(Process {
                status: 99,
                ..Default::default()
            }),
            TaskState::Unknown
        );
    }
}
