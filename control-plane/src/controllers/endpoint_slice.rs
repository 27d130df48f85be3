//! The EndpointSlice controller ("endpointslice-controller"): keeps discovery.k8s.io/v1
//! EndpointSlices, owned by their Service, listing the pods a Service with a selector selects:
//! per IP family, per set of resolved ports, at most 100 endpoints a slice.
//!
//! Like Kubernetes' reconciler it changes as few slices as it can: endpoints stay in the
//! slice they are in (updated in place when their state changes), new ones fill slices that
//! change anyway before others, a slice that would be deleted while another is created is
//! reused instead, and a Service without endpoints keeps one empty placeholder slice.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::context::{controller_of, controller_ref, ControllerError, Ctx, Delete, TypeRef};
use super::pods;
use super::reconciler::{default_keys, Action, Key, Reconciler, WatchedChange};
use super::service_pods::{
    can_serve, endpoint_labels, find_port, hostname_for, pod_ips, selected_pods, service_families,
    service_selector, services_for_pod, target_ref, Family,
};

/// Label naming the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Kubernetes' default --max-endpoints-per-slice.
const MAX_ENDPOINTS: usize = 100;
/// Node label whose value becomes an endpoint's zone.
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// How soon to look again when a selected pod names a node that does not exist.
const MISSING_NODE_RETRY: Duration = Duration::from_secs(30);

/// Maintains EndpointSlices for Services with a selector.
#[derive(Debug, Clone, Copy)]
pub struct EndpointSliceController {
    max_endpoints: usize,
}

impl EndpointSliceController {
    /// The EndpointSlice controller, 100 endpoints a slice.
    pub fn new() -> EndpointSliceController {
        EndpointSliceController {
            max_endpoints: MAX_ENDPOINTS,
        }
    }
}

impl Default for EndpointSliceController {
    fn default() -> Self {
        EndpointSliceController::new()
    }
}

#[async_trait]
impl Reconciler for EndpointSliceController {
    fn name(&self) -> &'static str {
        "endpointslice-controller"
    }

    fn kind(&self) -> TypeRef {
        TypeRef::of::<Service>()
    }

    fn watches(&self) -> Vec<TypeRef> {
        vec![TypeRef::of::<Pod>(), TypeRef::of::<EndpointSlice>()]
    }

    fn keys_for(&self, change: &WatchedChange, ctx: &Ctx) -> Vec<Key> {
        if change.kind == TypeRef::of::<Pod>() {
            return services_for_pod(change, ctx);
        }
        // A Service's own changes, and changes to the slices it controls.
        default_keys(self.kind(), change)
    }

    async fn reconcile(&self, key: &Key, ctx: &Ctx) -> Result<Action, ControllerError> {
        let namespace = key.namespace.as_deref();
        let Some(service) = ctx.get::<Service>(namespace, &key.name)? else {
            // Its slices are owned by it; the garbage collector removes them.
            return Ok(Action::Done);
        };
        let spec = service.spec.as_ref();
        let external = spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName");
        if service.metadata.deletion_timestamp.is_some() || external {
            return Ok(Action::Done);
        }
        let Some(selector) = service_selector(&service) else {
            return Ok(Action::Done);
        };
        let pods = selected_pods(ctx, &service, &selector)?;
        let uid = service.metadata.uid.clone().unwrap_or_default();
        let existing: Vec<EndpointSlice> = ctx
            .owned::<EndpointSlice>(namespace, &uid)?
            .into_iter()
            .filter(|s| controller_of(&s.metadata).is_some_and(|r| r.uid == uid))
            .filter(|s| label(&s.metadata, MANAGED_BY_LABEL) == Some(MANAGED_BY))
            .collect();

        let mut nodes = NodeCache::default();
        let mut plan = Plan::default();
        let families = service_families(&service);
        for family in &families {
            let of_family: Vec<EndpointSlice> = existing
                .iter()
                .filter(|s| s.address_type == family.as_str())
                .cloned()
                .collect();
            let desired = desired_endpoints(&service, &pods, *family, &mut nodes, ctx)?;
            self.plan_family(&service, *family, of_family, desired, &mut plan);
        }
        plan.delete.extend(
            existing
                .into_iter()
                .filter(|s| !families.iter().any(|f| f.as_str() == s.address_type)),
        );
        plan.apply(ctx).await?;
        Ok(if nodes.missing {
            Action::RequeueAfter(MISSING_NODE_RETRY)
        } else {
            Action::Done
        })
    }
}

/// The ports of a slice, order-free, to match slices to groups of endpoints.
type PortsKey = Vec<(String, i32, String, Option<String>)>;

fn ports_key(ports: &[EndpointPort]) -> PortsKey {
    let mut key: PortsKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or_default(),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.app_protocol.clone(),
            )
        })
        .collect();
    key.sort();
    key
}

/// An endpoint's identity across reconciles: its pod and address.
fn endpoint_key(endpoint: &Endpoint) -> (Option<String>, Option<String>) {
    let pod = endpoint.target_ref.as_ref().and_then(|r| r.name.clone());
    (pod, endpoint.addresses.first().cloned())
}

/// The endpoints a Service should have in one family, grouped by the ports they serve.
struct Group {
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
}

/// Nodes looked up once per reconcile, for the endpoints' zones.
#[derive(Default)]
struct NodeCache {
    nodes: BTreeMap<String, Option<Node>>,
    missing: bool,
}

impl NodeCache {
    fn get(&mut self, name: &str, ctx: &Ctx) -> Result<Option<&Node>, ControllerError> {
        if !self.nodes.contains_key(name) {
            let node = ctx.get::<Node>(None, name)?;
            self.nodes.insert(name.to_string(), node);
        }
        Ok(self.nodes.get(name).and_then(Option::as_ref))
    }
}

fn desired_endpoints(
    service: &Service,
    pods: &[Pod],
    family: Family,
    nodes: &mut NodeCache,
    ctx: &Ctx,
) -> Result<BTreeMap<PortsKey, Group>, ControllerError> {
    let spec = service.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let headless_without_ports =
        spec.ports.as_ref().is_none_or(Vec::is_empty) && spec.cluster_ip.as_deref() == Some("None");
    let mut groups: BTreeMap<PortsKey, Group> = BTreeMap::new();
    for pod in pods {
        if !can_serve(pod, true) {
            continue;
        }
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let node = match &node_name {
            Some(name) => nodes.get(name, ctx)?,
            None => None,
        };
        // Kubernetes leaves out pods whose node it cannot find (and looks again later),
        // unless the Service publishes every address anyway.
        if node.is_none() && !publish_not_ready {
            nodes.missing |= node_name.is_some();
            continue;
        }
        let addresses: Vec<String> = pod_ips(pod)
            .into_iter()
            .filter(|ip| Family::of(ip) == Some(family))
            .map(str::to_string)
            .collect();
        if addresses.is_empty() {
            continue;
        }
        let serving = pods::is_ready(pod);
        let terminating = pods::is_terminating(pod);
        let zone = node
            .and_then(|n| label(&n.metadata, ZONE_LABEL))
            .filter(|z| !z.is_empty())
            .map(str::to_string);
        let endpoint = Endpoint {
            addresses,
            conditions: Some(EndpointConditions {
                ready: Some(publish_not_ready || (serving && !terminating)),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: hostname_for(pod, service),
            node_name,
            target_ref: Some(target_ref(pod)),
            zone,
            ..Endpoint::default()
        };
        let ports: Vec<EndpointPort> = if headless_without_ports {
            Vec::new()
        } else {
            spec.ports
                .iter()
                .flatten()
                .filter_map(|port| {
                    Some(EndpointPort {
                        name: Some(port.name.clone().unwrap_or_default()),
                        port: Some(find_port(pod, port)?),
                        protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                        app_protocol: port.app_protocol.clone(),
                    })
                })
                .collect()
        };
        groups
            .entry(ports_key(&ports))
            .or_insert_with(|| Group {
                ports,
                endpoints: Vec::new(),
            })
            .endpoints
            .push(endpoint);
    }
    Ok(groups)
}

/// The slice writes a reconcile makes.
#[derive(Default)]
struct Plan {
    create: Vec<EndpointSlice>,
    update: Vec<EndpointSlice>,
    delete: Vec<EndpointSlice>,
}

impl Plan {
    async fn apply(mut self, ctx: &Ctx) -> Result<(), ControllerError> {
        // A slice about to be deleted becomes one about to be created (of the same address
        // type, which is immutable): one write, not two.
        let mut deletes = Vec::new();
        for mut reused in std::mem::take(&mut self.delete) {
            let same_type = self
                .create
                .iter()
                .rposition(|c| c.address_type == reused.address_type);
            match same_type {
                Some(i) => {
                    let created = self.create.remove(i);
                    reused.endpoints = created.endpoints;
                    reused.ports = created.ports;
                    reused.metadata.labels = created.metadata.labels;
                    self.update.push(reused);
                }
                None => deletes.push(reused),
            }
        }
        self.delete = deletes;
        for slice in &self.create {
            ctx.create(slice.metadata.namespace.as_deref(), slice)
                .await?;
        }
        for slice in &self.update {
            ctx.replace(slice).await?;
        }
        for slice in &self.delete {
            let options = Delete {
                uid: slice.metadata.uid.clone(),
                ..Delete::default()
            };
            let name = slice.metadata.name.as_deref().unwrap_or_default();
            ctx.delete::<EndpointSlice>(slice.metadata.namespace.as_deref(), name, &options)
                .await?;
        }
        Ok(())
    }
}

impl EndpointSliceController {
    /// Plans the writes that turn `existing` slices of one family into `desired`.
    fn plan_family(
        &self,
        service: &Service,
        family: Family,
        existing: Vec<EndpointSlice>,
        desired: BTreeMap<PortsKey, Group>,
        plan: &mut Plan,
    ) {
        let labels = slice_labels(service);
        let existing_count = existing.len();
        let (deleted_before, created_before) = (plan.delete.len(), plan.create.len());
        let mut by_ports: BTreeMap<PortsKey, Vec<EndpointSlice>> = BTreeMap::new();
        for slice in existing {
            let key = ports_key(slice.ports.as_deref().unwrap_or_default());
            by_ports.entry(key).or_default().push(slice);
        }
        for (key, slices) in &by_ports {
            if !desired.contains_key(key) {
                plan.delete.extend(slices.iter().cloned());
            }
        }
        for (key, group) in desired {
            let slices = by_ports.remove(&key).unwrap_or_default();
            self.plan_group(service, family, &labels, slices, group, plan);
        }

        // No endpoints at all: keep (or make) one empty placeholder slice.
        let deleted = plan.delete.len() - deleted_before;
        if existing_count == deleted && plan.create.len() == created_before {
            let placeholder = new_slice(service, family, &labels, Vec::new());
            let reusable = deleted == 1
                && plan.delete.last().is_some_and(|s| {
                    s.endpoints.is_empty()
                        && s.ports.as_ref().is_none_or(Vec::is_empty)
                        && s.metadata.labels == placeholder.metadata.labels
                });
            if reusable {
                plan.delete.pop();
            } else {
                plan.create.push(placeholder);
            }
        }
    }

    /// Plans one group of endpoints (same ports) onto the slices that already carry them.
    fn plan_group(
        &self,
        service: &Service,
        family: Family,
        labels: &BTreeMap<String, String>,
        slices: Vec<EndpointSlice>,
        group: Group,
        plan: &mut Plan,
    ) {
        let max = self.max_endpoints.max(1);
        let mut wanted: BTreeMap<_, Endpoint> = BTreeMap::new();
        let mut order = Vec::new();
        for endpoint in group.endpoints {
            let key = endpoint_key(&endpoint);
            order.push(key.clone());
            wanted.insert(key, endpoint);
        }

        // 1. Existing slices keep the endpoints still wanted, in their current version.
        let mut changed = Vec::new();
        let mut unchanged = Vec::new();
        for slice in slices {
            let kept: Vec<Endpoint> = slice
                .endpoints
                .iter()
                .filter_map(|e| wanted.remove(&endpoint_key(e)))
                .collect();
            let labels_differ = slice.metadata.labels.as_ref() != Some(labels);
            if kept.is_empty() && !slice.endpoints.is_empty() {
                plan.delete.push(slice);
            } else if kept != slice.endpoints || labels_differ {
                let mut updated = slice;
                updated.endpoints = kept;
                updated.metadata.labels = Some(labels.clone());
                changed.push(updated);
            } else {
                unchanged.push(slice);
            }
        }
        let mut remaining: Vec<Endpoint> = order.iter().filter_map(|k| wanted.remove(k)).collect();
        remaining.reverse(); // popped from the end, in pod order

        // 2. Slices that change anyway take new endpoints first, fullest first.
        changed.sort_by_key(|s| Reverse(s.endpoints.len()));
        for slice in &mut changed {
            while slice.endpoints.len() < max {
                let Some(endpoint) = remaining.pop() else {
                    break;
                };
                slice.endpoints.push(endpoint);
            }
        }

        // 3. The rest goes into the unchanged slice it fits best, else into new slices.
        while !remaining.is_empty() {
            let fits = (remaining.len() < max)
                .then(|| {
                    unchanged
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| s.endpoints.len() + remaining.len() <= max)
                        .max_by_key(|(_, s)| s.endpoints.len())
                        .map(|(i, _)| i)
                })
                .flatten();
            let mut slice = match fits {
                Some(i) => unchanged.remove(i),
                None => new_slice(service, family, labels, group.ports.clone()),
            };
            while slice.endpoints.len() < max {
                let Some(endpoint) = remaining.pop() else {
                    break;
                };
                slice.endpoints.push(endpoint);
            }
            if slice.metadata.name.is_some() {
                changed.push(slice);
            } else {
                plan.create.push(slice);
            }
        }
        plan.update.extend(changed);
    }
}

/// The labels of a Service's slices: the Service's own, the headless marker, and the two
/// labels tying a slice to its Service and to this controller.
fn slice_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = endpoint_labels(service, &[SERVICE_NAME_LABEL, MANAGED_BY_LABEL]);
    let name = service.metadata.name.clone().unwrap_or_default();
    labels.insert(SERVICE_NAME_LABEL.to_string(), name);
    labels.insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string());
    labels
}

/// An empty slice for the Service, named `<service>-` plus a server suffix.
fn new_slice(
    service: &Service,
    family: Family,
    labels: &BTreeMap<String, String>,
    ports: Vec<EndpointPort>,
) -> EndpointSlice {
    let name = service.metadata.name.as_deref().unwrap_or_default();
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: service.metadata.namespace.clone(),
            labels: Some(labels.clone()),
            owner_references: Some(vec![controller_ref(service)]),
            ..ObjectMeta::default()
        },
        address_type: family.as_str().to_string(),
        endpoints: Vec::new(),
        ports: (!ports.is_empty()).then_some(ports),
    }
}

fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

#[cfg(test)]
#[path = "endpoint_slice_tests.rs"]
mod tests;
