//! The Endpoints controller ("endpoints-controller"): keeps a core/v1 Endpoints object, named
//! as its Service, listing the addresses of the pods a Service with a selector selects, split
//! into ready and not-ready addresses and grouped into subsets by the ports they serve.
//!
//! Endpoints have no owner reference (as in Kubernetes); this controller deletes them when
//! their Service goes. Services without a selector have hand-made Endpoints: left alone.

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::context::{ControllerError, Ctx, Delete, EventType, TypeRef};
use super::pods;
use super::reconciler::{default_keys, Action, Key, Reconciler, WatchedChange};
use super::service_pods::{
    can_serve, endpoint_labels, find_port, hostname_for, pod_ips, selected_pods, service_selector,
    target_ref, Family,
};

/// Most addresses an Endpoints object holds; beyond it, it is truncated and says so.
const MAX_ADDRESSES: usize = 1000;
/// Annotation marking truncated Endpoints.
const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

/// Maintains core/v1 Endpoints for Services with a selector.
#[derive(Debug, Default, Clone, Copy)]
pub struct EndpointsController;

impl EndpointsController {
    /// The Endpoints controller.
    pub fn new() -> EndpointsController {
        EndpointsController
    }
}

#[async_trait]
impl Reconciler for EndpointsController {
    fn name(&self) -> &'static str {
        "endpoints-controller"
    }

    fn kind(&self) -> TypeRef {
        TypeRef::of::<Service>()
    }

    fn watches(&self) -> Vec<TypeRef> {
        vec![TypeRef::of::<Pod>(), TypeRef::of::<Endpoints>()]
    }

    fn keys_for(&self, change: &WatchedChange, ctx: &Ctx) -> Vec<Key> {
        if change.kind == TypeRef::of::<Pod>() {
            return super::service_pods::services_for_pod(change, ctx);
        }
        if change.kind == TypeRef::of::<Endpoints>() {
            // Deleted Endpoints of a selector Service are put back.
            return if change.deleted {
                vec![Key::new(change.namespace.as_deref(), &change.name)]
            } else {
                Vec::new()
            };
        }
        default_keys(self.kind(), change)
    }

    async fn reconcile(&self, key: &Key, ctx: &Ctx) -> Result<Action, ControllerError> {
        let namespace = key.namespace.as_deref();
        let Some(service) = ctx.get::<Service>(namespace, &key.name)? else {
            ctx.delete::<Endpoints>(namespace, &key.name, &Delete::default())
                .await?;
            return Ok(Action::Done);
        };
        let Some(selector) = service_selector(&service) else {
            return Ok(Action::Done);
        };
        let pods = selected_pods(ctx, &service, &selector)?;
        let mut subsets = desired_subsets(&service, &pods);
        let truncated = truncate(&mut subsets);
        let current = ctx.get::<Endpoints>(namespace, &key.name)?;

        let mut desired = current.clone().unwrap_or_else(|| Endpoints {
            metadata: ObjectMeta {
                name: Some(key.name.clone()),
                namespace: key.namespace.clone(),
                ..ObjectMeta::default()
            },
            subsets: None,
        });
        desired.subsets = (!subsets.is_empty()).then_some(subsets);
        let labels = endpoint_labels(&service, &[]);
        desired.metadata.labels = (!labels.is_empty()).then_some(labels);
        let annotations = desired
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new);
        if truncated {
            annotations.insert(OVER_CAPACITY.to_string(), "truncated".to_string());
        } else {
            annotations.remove(OVER_CAPACITY);
        }
        if annotations.is_empty() {
            desired.metadata.annotations = None;
        }

        match current {
            None => {
                if let Err(err) = ctx.create(namespace, &desired).await {
                    let message = format!("Failed to create endpoint for service {}: {err}", key);
                    ctx.event(
                        &desired,
                        EventType::Warning,
                        "FailedToCreateEndpoint",
                        message,
                    );
                    return Err(err);
                }
            }
            Some(current) if !same(&current, &desired) => {
                if let Err(err) = ctx.replace(&desired).await {
                    let message = format!("Failed to update endpoint {}: {err}", key);
                    ctx.event(
                        &desired,
                        EventType::Warning,
                        "FailedToUpdateEndpoint",
                        message,
                    );
                    return Err(err);
                }
            }
            Some(_) => {}
        }
        Ok(Action::Done)
    }
}

/// Whether two Endpoints say the same (absent and empty lists being the same).
fn same(a: &Endpoints, b: &Endpoints) -> bool {
    let subsets = |e: &Endpoints| e.subsets.clone().unwrap_or_default();
    let labels = |e: &Endpoints| e.metadata.labels.clone().unwrap_or_default();
    let annotations = |e: &Endpoints| e.metadata.annotations.clone().unwrap_or_default();
    subsets(a) == subsets(b) && labels(a) == labels(b) && annotations(a) == annotations(b)
}

/// A service port as resolved on a pod; port -1 stands for "no ports" (a headless Service
/// without ports still lists its addresses).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PortKey {
    name: String,
    port: i32,
    protocol: String,
    app_protocol: Option<String>,
}

/// An address's identity: IP, then pod uid (the order Kubernetes sorts addresses in).
type AddressKey = (String, String);

/// The subsets Kubernetes would write (RepackSubsets): per resolved port, the set of
/// addresses serving it; ports served by exactly the same addresses (with the same
/// readiness) share a subset.
fn desired_subsets(service: &Service, pods: &[Pod]) -> Vec<EndpointSubset> {
    let spec = service.spec.clone().unwrap_or_default();
    let tolerate_unready = spec.publish_not_ready_addresses == Some(true);
    let ports = spec.ports.unwrap_or_default();
    let headless_without_ports = ports.is_empty() && spec.cluster_ip.as_deref() == Some("None");
    let no_ports = PortKey {
        name: String::new(),
        port: -1,
        protocol: String::new(),
        app_protocol: None,
    };

    let mut addresses: BTreeMap<AddressKey, EndpointAddress> = BTreeMap::new();
    let mut by_port: BTreeMap<PortKey, BTreeMap<AddressKey, bool>> = BTreeMap::new();
    for pod in pods {
        if !can_serve(pod, tolerate_unready) {
            continue;
        }
        let Some(address) = address_for(service, pod) else {
            tracing::debug!(pod = ?pod.metadata.name, "no pod IP in the Service's family");
            continue;
        };
        let key = (
            address.ip.clone(),
            pod.metadata.uid.clone().unwrap_or_default(),
        );
        let ready = tolerate_unready || pods::is_ready(pod);
        let mut serves = Vec::new();
        if headless_without_ports {
            serves.push(no_ports.clone());
        }
        for port in &ports {
            if let Some(number) = find_port(pod, port) {
                serves.push(PortKey {
                    name: port.name.clone().unwrap_or_default(),
                    port: number,
                    protocol: port.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    app_protocol: port.app_protocol.clone(),
                });
            }
        }
        if serves.is_empty() {
            continue;
        }
        for port in serves {
            by_port.entry(port).or_default().insert(key.clone(), ready);
        }
        addresses.insert(key, address);
    }

    let mut groups: BTreeMap<Vec<(AddressKey, bool)>, Vec<PortKey>> = BTreeMap::new();
    for (port, members) in by_port {
        groups
            .entry(members.into_iter().collect())
            .or_default()
            .push(port);
    }
    groups
        .into_iter()
        .map(|(members, ports)| {
            let pick = |want: bool| -> Option<Vec<EndpointAddress>> {
                let list: Vec<EndpointAddress> = members
                    .iter()
                    .filter(|(_, ready)| *ready == want)
                    .filter_map(|(key, _)| addresses.get(key).cloned())
                    .collect();
                (!list.is_empty()).then_some(list)
            };
            let ports: Vec<EndpointPort> = ports
                .into_iter()
                .filter(|p| p.port >= 0)
                .map(|p| EndpointPort {
                    name: Some(p.name).filter(|n| !n.is_empty()),
                    port: p.port,
                    protocol: Some(p.protocol),
                    app_protocol: p.app_protocol,
                })
                .collect();
            EndpointSubset {
                addresses: pick(true),
                not_ready_addresses: pick(false),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

/// The pod's address for the Service: its IP in the Service's primary family (spec.ipFamilies,
/// else the cluster IP's family, else the family of the pod's first IP).
fn address_for(service: &Service, pod: &Pod) -> Option<EndpointAddress> {
    let spec = service.spec.as_ref();
    let ips = pod_ips(pod);
    let family = spec
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
        .map(|f| if f == "IPv6" { Family::V6 } else { Family::V4 })
        .or_else(|| {
            spec.and_then(|s| s.cluster_ip.as_deref())
                .and_then(Family::of)
        })
        .or_else(|| ips.first().and_then(|ip| Family::of(ip)))?;
    let ip = ips.into_iter().find(|ip| Family::of(ip) == Some(family))?;
    Some(EndpointAddress {
        ip: ip.to_string(),
        hostname: hostname_for(pod, service),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        target_ref: Some(target_ref(pod)),
    })
}

/// Cuts the subsets down to [`MAX_ADDRESSES`] addresses the way Kubernetes does: not-ready
/// addresses go first; if the ready ones alone are too many, each subset keeps its share of
/// them. Returns whether anything was cut.
fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let count = |list: &Option<Vec<EndpointAddress>>| list.as_ref().map_or(0, Vec::len);
    let ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if ready + not_ready <= MAX_ADDRESSES {
        return false;
    }
    let cut_ready = ready > MAX_ADDRESSES;
    let (room, total) = if cut_ready {
        (MAX_ADDRESSES, ready)
    } else {
        (MAX_ADDRESSES - ready, not_ready)
    };
    let mut left = room;
    for subset in subsets.iter_mut() {
        let list = if cut_ready {
            subset.not_ready_addresses = None;
            &mut subset.addresses
        } else {
            &mut subset.not_ready_addresses
        };
        let have = count(list);
        // Each subset's share, rounded up so the whole room is used.
        let share = (have * room).div_ceil(total.max(1)).min(left);
        if let Some(addresses) = list.as_mut() {
            addresses.truncate(share);
        }
        if list.as_ref().is_some_and(Vec::is_empty) {
            *list = None;
        }
        left -= share.min(have);
    }
    true
}

#[cfg(test)]
#[path = "endpoints_tests.rs"]
mod tests;
