//! The connection to containerd: one gRPC channel over its unix socket, every request tagged
//! with the node's namespace (and, while importing, a lease that keeps half-written content and
//! snapshots from containerd's garbage collector).

use std::sync::Arc;

use containerd_client::services::v1::{
    containers_client::ContainersClient, content_client::ContentClient, diff_client::DiffClient,
    images_client::ImagesClient, leases_client::LeasesClient,
    snapshots::snapshots_client::SnapshotsClient, tasks_client::TasksClient,
    version_client::VersionClient,
};
use containerd_client::tonic::metadata::{Ascii, MetadataValue};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::Request;

use super::error::ContainerdError;
use super::events::OomWatcher;
use super::ContainerdConfig;

/// The metadata key containerd reads the namespace from.
const NAMESPACE_HEADER: &str = "containerd-namespace";
/// The metadata key containerd reads the lease from.
const LEASE_HEADER: &str = "containerd-lease";

/// A client of one containerd, for one namespace. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Containerd {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) config: ContainerdConfig,
    channel: Channel,
    namespace: MetadataValue<Ascii>,
    pub(super) ooms: OomWatcher,
    /// Serialises image imports: two pods wanting the same image must not both write its
    /// blobs or unpack its layers (containerd would refuse the second with "ref locked").
    pub(super) import_lock: tokio::sync::Mutex<()>,
}

impl Containerd {
    /// Connects to containerd, checks that it answers, and starts watching the
    /// namespace's OOM events (before returning, so no OOM of a task started later is missed).
    pub async fn connect(config: ContainerdConfig) -> Result<Containerd, ContainerdError> {
        let namespace = config
            .namespace
            .parse::<MetadataValue<Ascii>>()
            .map_err(|_| ContainerdError::Spec {
                id: config.namespace.clone(),
                reason: "the containerd namespace must be printable ASCII".to_owned(),
            })?;
        let channel = containerd_client::connect(&config.socket)
            .await
            .map_err(|source| ContainerdError::Connect {
                socket: config.socket.clone(),
                source,
            })?;
        // containerd makes a namespace when the first object is created in it; asking for
        // its version checks that the socket is a containerd that answers.
        VersionClient::new(channel.clone())
            .version(Request::new(()))
            .await
            .map_err(ContainerdError::rpc(
                "version",
                config.socket.display().to_string(),
            ))?;
        tokio::fs::create_dir_all(&config.state_dir)
            .await
            .map_err(ContainerdError::io("create", &config.state_dir))?;
        let ooms = OomWatcher::start(channel.clone(), namespace.clone(), &config.namespace).await?;
        Ok(Containerd {
            inner: Arc::new(Inner {
                config,
                channel,
                namespace,
                ooms,
                import_lock: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The configuration this client was connected with.
    pub fn config(&self) -> &ContainerdConfig {
        &self.inner.config
    }

    /// A request in this client's namespace.
    pub(super) fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert(NAMESPACE_HEADER, self.inner.namespace.clone());
        request
    }

    /// A request in this client's namespace, under `lease`.
    pub(super) fn leased<T>(&self, message: T, lease: &Lease) -> Request<T> {
        let mut request = self.request(message);
        request
            .metadata_mut()
            .insert(LEASE_HEADER, lease.header.clone());
        request
    }

    pub(super) fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.inner.channel.clone())
    }
    pub(super) fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.inner.channel.clone())
    }
    pub(super) fn diff(&self) -> DiffClient<Channel> {
        DiffClient::new(self.inner.channel.clone())
    }
    pub(super) fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.inner.channel.clone())
    }
    pub(super) fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.inner.channel.clone())
    }
    pub(super) fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.inner.channel.clone())
    }

    /// Takes a lease that expires by itself after an hour, so that a crash between writing
    /// content and referencing it does not pin it forever.
    pub(super) async fn lease(&self, purpose: &str) -> Result<Lease, ContainerdError> {
        let id = format!(
            "bramble-{purpose}-{}-{}",
            std::process::id(),
            super::io::unique_suffix()
        );
        let header = id
            .parse::<MetadataValue<Ascii>>()
            .map_err(|_| ContainerdError::Spec {
                id: id.clone(),
                reason: "lease id is not ASCII".to_owned(),
            })?;
        let at = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        let expire = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        );
        let labels = [("containerd.io/gc.expire".to_owned(), expire)]
            .into_iter()
            .collect();
        LeasesClient::new(self.inner.channel.clone())
            .create(
                self.request(containerd_client::services::v1::CreateRequest {
                    id: id.clone(),
                    labels,
                }),
            )
            .await
            .map_err(ContainerdError::rpc("create lease", &id))?;
        Ok(Lease { id, header })
    }

    /// Releases a lease; what it protected is now kept only if something references it.
    pub(super) async fn release(&self, lease: Lease) -> Result<(), ContainerdError> {
        LeasesClient::new(self.inner.channel.clone())
            .delete(
                self.request(containerd_client::services::v1::DeleteRequest {
                    id: lease.id.clone(),
                    sync: false,
                }),
            )
            .await
            .map_err(ContainerdError::rpc("delete lease", &lease.id))?;
        Ok(())
    }
}

/// A containerd lease held by this client.
#[derive(Debug)]
pub(super) struct Lease {
    id: String,
    header: MetadataValue<Ascii>,
}
