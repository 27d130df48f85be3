//! The pods behind a Service, as both the Endpoints and the EndpointSlice controllers see
//! them: which pods a Service selects, whether a pod can be an endpoint at all, its address
//! in a given IP family, the port a service port reaches on it, and which Services a pod
//! change concerns.

use std::collections::BTreeMap;
use std::net::IpAddr;

use bramble_api::labels::Selector;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::context::{ControllerError, Ctx};
use super::pods;
use super::reconciler::{Key, WatchedChange};

/// Label marking the Endpoints and EndpointSlices of a Service without a cluster IP.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// An IP family, as Services and EndpointSlices name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    /// "IPv4".
    V4,
    /// "IPv6".
    V6,
}

impl Family {
    /// The family of `ip`; None when it is not an IP address.
    pub fn of(ip: &str) -> Option<Family> {
        match ip.parse::<IpAddr>().ok()? {
            IpAddr::V4(_) => Some(Family::V4),
            IpAddr::V6(_) => Some(Family::V6),
        }
    }

    /// The name the API uses ("IPv4", "IPv6"), also an EndpointSlice's addressType.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    fn parse(name: &str) -> Option<Family> {
        match name {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        }
    }
}

/// The selector of a Service; None when it has none, which means its endpoints are managed
/// by hand and the controllers leave them alone.
pub fn service_selector(service: &Service) -> Option<Selector> {
    let labels = service.spec.as_ref()?.selector.as_ref()?;
    if labels.is_empty() {
        return None;
    }
    match Selector::from_set(labels) {
        Ok(selector) => Some(selector),
        Err(err) => {
            let name = service.metadata.name.as_deref().unwrap_or_default();
            tracing::warn!(service = name, %err, "ignoring a Service with an invalid selector");
            None
        }
    }
}

/// The pods of the Service's namespace that `selector` matches, in name order.
pub fn selected_pods(
    ctx: &Ctx,
    service: &Service,
    selector: &Selector,
) -> Result<Vec<Pod>, ControllerError> {
    let namespace = service.metadata.namespace.as_deref();
    let mut selected: Vec<Pod> = ctx
        .list::<Pod>(namespace)?
        .into_iter()
        .filter(|p| pods::selects(selector, &p.metadata))
        .collect();
    selected.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(selected)
}

/// Whether `pod` can be an endpoint: not finished, has an IP, and (unless
/// `include_terminating`) is not being deleted.
pub fn can_serve(pod: &Pod, include_terminating: bool) -> bool {
    !pods::is_finished(pod)
        && !pod_ips(pod).is_empty()
        && (include_terminating || !pods::is_terminating(pod))
}

/// The pod's IPs: status.podIPs, or status.podIP when the list is not filled in.
pub fn pod_ips(pod: &Pod) -> Vec<&str> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let listed: Vec<&str> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|ip| ip.ip.as_str())
        .filter(|ip| !ip.is_empty())
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    status
        .pod_ip
        .as_deref()
        .filter(|ip| !ip.is_empty())
        .into_iter()
        .collect()
}

/// Whether the Service has no cluster IP (clusterIP None, or not allocated).
pub fn is_headless(service: &Service) -> bool {
    let cluster_ip = service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
    matches!(cluster_ip, None | Some("" | "None"))
}

/// The IP families the Service serves: spec.ipFamilies, else the family of its cluster IP,
/// else IPv4 (what a single-stack cluster's API server defaults).
pub fn service_families(service: &Service) -> Vec<Family> {
    let spec = service.spec.as_ref();
    let mut families: Vec<Family> = spec
        .and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|f| Family::parse(f))
        .collect();
    families.dedup();
    if !families.is_empty() {
        return families;
    }
    let cluster_ip = spec
        .and_then(|s| s.cluster_ip.as_deref())
        .and_then(Family::of);
    vec![cluster_ip.unwrap_or(Family::V4)]
}

/// The container port `port` reaches on `pod`: a numeric targetPort as is (the port itself
/// when unset), a named one looked up among the pod's container ports (and sidecars') with
/// the same protocol. None when the pod has no such named port.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let name = match &port.target_port {
        None => return Some(port.port),
        Some(IntOrString::Int(number)) => return Some(*number),
        Some(IntOrString::String(name)) => name,
    };
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    let spec = pod.spec.as_ref()?;
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(name.as_str())
                && p.protocol.as_deref().unwrap_or("TCP") == protocol
        })
        .map(|p| p.container_port)
}

/// The pod's hostname when it asks to be known under this Service (spec.subdomain names the
/// Service in the same namespace).
pub fn hostname_for(pod: &Pod, service: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let same_service = spec.subdomain.is_some() && spec.subdomain == service.metadata.name;
    let same_namespace = pod.metadata.namespace == service.metadata.namespace;
    (same_service && same_namespace).then(|| hostname.to_string())
}

/// A reference to the pod, as endpoints carry it.
pub fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// The Service's labels as its endpoints carry them: the Service's own, plus the headless
/// label for a Service without a cluster IP. `reserved` keys are the controller's own and
/// are not copied.
pub fn endpoint_labels(service: &Service, reserved: &[&str]) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = service
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != HEADLESS_LABEL && !reserved.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.to_string(), String::new());
    }
    labels
}

/// The Services a pod change concerns: those of the pod's namespace whose selector matches
/// the pod's labels now or before the change.
pub fn services_for_pod(change: &WatchedChange, ctx: &Ctx) -> Vec<Key> {
    let namespace = change.namespace.as_deref();
    let services = match ctx.list::<Service>(namespace) {
        Ok(services) => services,
        Err(err) => {
            tracing::warn!(%err, "cannot list Services to map a pod change");
            return Vec::new();
        }
    };
    services
        .iter()
        .filter(|service| {
            service_selector(service).is_some_and(|selector| {
                selector.matches(&change.labels)
                    || change
                        .previous_labels
                        .as_ref()
                        .is_some_and(|previous| selector.matches(previous))
            })
        })
        .filter_map(|service| service.metadata.name.as_deref())
        .map(|name| Key::new(namespace, name))
        .collect()
}

#[cfg(test)]
#[path = "service_pods_tests.rs"]
mod tests;
