//! A pod as the scheduler sees it: [`Incoming`], the pod being placed, parsed once per decision;
//! [`PodEntry`], what the snapshot keeps of a pod on a node (requests, labels, terms, ports)
//! so that aggregates can be subtracted on removal without parsing the pod again.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Toleration};

use super::node_affinity::NodeAffinity;
use super::pod_affinity::{Identity, PodAffinityTerms};
use super::requests::{self, PodRequests};
use super::RuntimeNeeds;
use crate::controllers::context::controller_of;
use crate::controllers::pods;

/// The label a node carries, set to "true", for each runtime handler it offers.
pub const RUNTIME_LABEL_PREFIX: &str = "bramble.dev/runtime-";

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// A host port a pod claims on its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// The host IP, "0.0.0.0" for all.
    pub ip: String,
    /// TCP, UDP or SCTP.
    pub protocol: String,
    /// The port number.
    pub port: i32,
}

impl HostPort {
    /// Two claims collide on the same protocol and port when either binds all addresses or
    /// both bind the same one.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// The host ports of `pod`'s app containers.
fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let ports = containers.iter().flat_map(|c| c.ports.iter().flatten());
    ports
        .filter_map(|p| {
            let port = p.host_port.filter(|&h| h > 0)?;
            let ip = p
                .host_ip
                .as_deref()
                .filter(|ip| !ip.is_empty())
                .unwrap_or("0.0.0.0");
            Some(HostPort {
                ip: ip.to_owned(),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                port,
            })
        })
        .collect()
}

/// The snapshot's key for a pod: `namespace/name`.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The uid of the pod's controller (its ReplicaSet, StatefulSet, DaemonSet, Job...).
pub fn controller_uid(pod: &Pod) -> Option<&str> {
    controller_of(&pod.metadata).map(|o| o.uid.as_str())
}

/// What the snapshot keeps of a pod bound to, or assumed on, a node.
#[derive(Debug)]
pub struct PodEntry {
    /// `namespace/name`.
    pub key: String,
    /// metadata.uid, to tell a recreated pod of the same name from the old one.
    pub uid: String,
    /// Its namespace.
    pub namespace: String,
    /// Its labels, for other pods' affinity terms.
    pub labels: BTreeMap<String, String>,
    /// The node it is on.
    pub node: String,
    /// Placed by this scheduler and not yet seen bound.
    pub assumed: bool,
    /// Being deleted: still holds resources, no longer counts for spreading.
    pub terminating: bool,
    /// What it holds on the node.
    pub requests: PodRequests,
    /// Its controller, interned by the snapshot.
    pub controller: Option<u32>,
    /// Host ports it holds.
    pub host_ports: Vec<HostPort>,
    /// Its pod (anti-)affinity terms.
    pub affinity: Option<Box<PodAffinityTerms>>,
}

impl PodEntry {
    /// The entry of a pod already bound to `node`. Parsing is lenient: a bound pod runs
    /// whatever the scheduler thinks of it, so a malformed quantity counts as nothing and a
    /// malformed selector as no term (both logged).
    pub fn bound(pod: &Pod, node: &str) -> Self {
        let key = pod_key(pod);
        let requests = requests::pod_requests(pod).unwrap_or_else(|e| {
            tracing::warn!(
                pod = key.as_str(),
                "accounting no requests for bound pod: {e}"
            );
            PodRequests::default()
        });
        let affinity = PodAffinityTerms::of(pod).unwrap_or_else(|e| {
            tracing::warn!(
                pod = key.as_str(),
                "ignoring pod affinity of bound pod: {e}"
            );
            None
        });
        PodEntry {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            node: node.to_owned(),
            assumed: false,
            terminating: pods::is_terminating(pod),
            requests,
            controller: None,
            host_ports: host_ports(pod),
            affinity,
            key,
        }
    }
}

/// The pod being scheduled, parsed once for the whole decision.
#[derive(Debug)]
pub struct Incoming<'p> {
    /// The pod itself.
    pub pod: &'p Pod,
    /// Its namespace and labels.
    pub me: Identity<'p>,
    /// Its effective requests.
    pub requests: PodRequests,
    /// Its tolerations.
    pub tolerations: &'p [Toleration],
    /// Its node selector and node affinity.
    pub node_affinity: NodeAffinity<'p>,
    /// spec.nodeName, if the caller passed a pod that already names its node.
    pub node_name: Option<&'p str>,
    /// Host ports it needs free.
    pub host_ports: Vec<HostPort>,
    /// Its pod (anti-)affinity terms.
    pub affinity: Option<Box<PodAffinityTerms>>,
    /// Its controller's uid.
    pub controller: Option<&'p str>,
    /// The runtime handler the node must offer, and the label that says so.
    pub runtime: Option<(String, String)>,
    /// The architectures the node may have (any when empty).
    pub arches: Vec<String>,
}

impl<'p> Incoming<'p> {
    /// Parses everything the filters and scores need.
    ///
    /// # Errors
    ///
    /// A message for a malformed quantity or label selector: the pod cannot be placed.
    pub fn parse(pod: &'p Pod, needs: &RuntimeNeeds) -> Result<Self, String> {
        let spec = pod.spec.as_ref();
        Ok(Incoming {
            pod,
            me: Identity {
                namespace: pod.metadata.namespace.as_deref().unwrap_or_default(),
                labels: pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS),
            },
            requests: requests::pod_requests(pod)?,
            tolerations: spec
                .and_then(|s| s.tolerations.as_deref())
                .unwrap_or_default(),
            node_affinity: NodeAffinity::of(pod),
            node_name: spec
                .and_then(|s| s.node_name.as_deref())
                .filter(|n| !n.is_empty()),
            host_ports: host_ports(pod),
            affinity: PodAffinityTerms::of(pod)?,
            controller: controller_uid(pod),
            runtime: needs
                .handler
                .as_ref()
                .map(|h| (h.clone(), format!("{RUNTIME_LABEL_PREFIX}{h}"))),
            arches: needs.arches.clone(),
        })
    }

    /// The entry to keep once the pod is assumed on `node`.
    pub fn into_entry(self, node: &str) -> PodEntry {
        PodEntry {
            key: pod_key(self.pod),
            uid: self.pod.metadata.uid.clone().unwrap_or_default(),
            namespace: self.me.namespace.to_owned(),
            labels: self.me.labels.clone(),
            node: node.to_owned(),
            assumed: true,
            terminating: pods::is_terminating(self.pod),
            requests: self.requests,
            controller: None,
            host_ports: self.host_ports,
            affinity: self.affinity,
        }
    }
}

#[cfg(test)]
#[path = "pod_info_tests.rs"]
mod tests;
