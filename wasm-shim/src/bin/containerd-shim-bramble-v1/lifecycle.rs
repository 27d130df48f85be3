//! The shim's own lifecycle, as containerd drives it: `start` (find or launch the shim
//! process serving this container's pod and print its socket address), serving the task API
//! until the last container is gone, and `delete` (clean up after a shim that died).

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{api, Config, DeleteResponse, ExitSignal, Flags, Shim, StartOpts};

use crate::events::{self, Events};
use crate::oci::Spec;
use crate::rootfs;
use crate::service::Service;

/// The shim as containerd's shim library sees it.
pub struct BrambleShim {
    namespace: String,
    bundle: String,
    exit: Arc<ExitSignal>,
}

impl Shim for BrambleShim {
    type T = Service;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        Self {
            namespace: args.namespace.clone(),
            bundle: args.bundle.clone(),
            exit: Arc::new(ExitSignal::default()),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        // containerd runs `start` in the new container's bundle.
        let group = match Spec::load(Path::new(".")) {
            Ok(spec) => group_id(&spec, &opts.id).to_string(),
            Err(err) => {
                log::warn!("no spec in the bundle, not grouping {}: {err}", opts.id);
                opts.id.clone()
            }
        };
        // The socket address is derived from the group; a shim already serving it is reused
        // (the spawned process finds the socket taken and just exits).
        let (_pid, address) = containerd_shim::spawn(opts, &group, Vec::new())?;
        containerd_shim::util::write_address(&address)?;
        Ok(address)
    }

    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        // The shim serving this container died: undo what it had set up, and report the
        // container as killed, as runc's shim does.
        let bundle = if self.bundle.is_empty() {
            std::env::current_dir().map_err(|e| containerd_shim::Error::Other(e.to_string()))?
        } else {
            self.bundle.clone().into()
        };
        let target = bundle.join("rootfs");
        if target.exists() {
            if let Err(err) = rootfs::unmount(&target) {
                log::warn!("{err}");
            }
        }
        Ok(api::DeleteResponse {
            pid: 0,
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: Some(events::timestamp(SystemTime::now())).into(),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> Service {
        let events = Events::start(publisher, self.namespace.clone());
        Service::new(events, Arc::clone(&self.exit))
    }
}

/// The id whose shim a container joins: its pod sandbox's (CRI) or its group's, else its own.
pub fn group_id<'a>(spec: &'a Spec, id: &'a str) -> &'a str {
    spec.group().unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_of_one_pod_share_a_shim() {
        let spec = |json: &str| Spec::parse(json.as_bytes()).unwrap();
        let app = spec(r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"sandbox1"}}"#);
        assert_eq!(group_id(&app, "app"), "sandbox1");
        // The sandbox container itself carries its own id and so starts the shim.
        let sandbox = spec(r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"sandbox1"}}"#);
        assert_eq!(group_id(&sandbox, "sandbox1"), "sandbox1");
        assert_eq!(group_id(&spec("{}"), "alone"), "alone");
    }
}
