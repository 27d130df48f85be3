//! Resource amounts: what a pod requests (Kubernetes' effective request, sidecars included) and
//! what a node can allocate, parsed once into integers so filtering and scoring never touch a
//! quantity string again.

use std::collections::BTreeMap;

use bramble_api::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as WireQuantity;

/// CPU counted for a container that requests none, for scoring only (kube-scheduler's
/// `DefaultMilliCPURequest`): without it, best-effort pods would all pile onto one node.
pub const DEFAULT_MILLI_CPU: i64 = 100;
/// Memory counted for a container that requests none, for scoring only (200Mi).
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// Amounts of the resources the scheduler accounts for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in thousandths of a core.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// Extended resources (`example.com/gpu`, `hugepages-2Mi`) in whole units, by name.
    pub scalars: Vec<(String, i64)>,
}

impl Resources {
    /// The amount of the extended resource `name` (0 when absent).
    pub fn scalar(&self, name: &str) -> i64 {
        self.scalars
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    /// Adds `other` into `self`, scaled by `sign` (1 to add, -1 to subtract).
    pub fn add_scaled(&mut self, other: &Resources, sign: i64) {
        self.milli_cpu = self.milli_cpu.saturating_add(sign * other.milli_cpu);
        self.memory = self.memory.saturating_add(sign * other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(sign * other.ephemeral_storage);
        for (name, value) in &other.scalars {
            let slot = self.scalar_slot(name);
            *slot = slot.saturating_add(sign * value);
        }
        // A node's extended resources come and go with its pods; drop the ones back at zero.
        self.scalars.retain(|(_, v)| *v != 0);
    }

    /// Raises each amount of `self` to at least that of `other`.
    fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (name, value) in &other.scalars {
            let slot = self.scalar_slot(name);
            *slot = (*slot).max(*value);
        }
    }

    fn scalar_slot(&mut self, name: &str) -> &mut i64 {
        let at = match self.scalars.iter().position(|(n, _)| n == name) {
            Some(at) => at,
            None => {
                self.scalars.push((name.to_owned(), 0));
                self.scalars.len() - 1
            }
        };
        &mut self.scalars[at].1
    }

    /// Adds one named amount (a key of a ResourceList) to `self`.
    fn add_named(&mut self, name: &str, quantity: &Quantity) {
        match name {
            "cpu" => self.milli_cpu = self.milli_cpu.saturating_add(clamp(quantity.milli_value())),
            "memory" => self.memory = self.memory.saturating_add(clamp(quantity.value())),
            "ephemeral-storage" => {
                self.ephemeral_storage = self
                    .ephemeral_storage
                    .saturating_add(clamp(quantity.value()))
            }
            other if is_scalar(other) => {
                let slot = self.scalar_slot(other);
                *slot = slot.saturating_add(clamp(quantity.value()));
            }
            _ => {}
        }
    }
}

/// What a pod asks of a node: its effective requests, and the same with the scoring defaults
/// for containers that request no cpu or memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// The effective request, checked against allocatable.
    pub requested: Resources,
    /// CPU for scoring (missing container requests count as [`DEFAULT_MILLI_CPU`]).
    pub non_zero_milli_cpu: i64,
    /// Memory for scoring (missing container requests count as [`DEFAULT_MEMORY`]).
    pub non_zero_memory: i64,
}

impl PodRequests {
    /// Requests nothing at all: the resource fit only checks the pod count.
    pub fn is_empty(&self) -> bool {
        self.requested.milli_cpu == 0
            && self.requested.memory == 0
            && self.requested.ephemeral_storage == 0
            && self.requested.scalars.iter().all(|(_, v)| *v == 0)
    }

    fn add(&mut self, other: &PodRequests) {
        self.requested.add_scaled(&other.requested, 1);
        self.non_zero_milli_cpu += other.non_zero_milli_cpu;
        self.non_zero_memory += other.non_zero_memory;
    }

    fn max_with(&mut self, other: &PodRequests) {
        self.requested.max_with(&other.requested);
        self.non_zero_milli_cpu = self.non_zero_milli_cpu.max(other.non_zero_milli_cpu);
        self.non_zero_memory = self.non_zero_memory.max(other.non_zero_memory);
    }
}

/// The pod's effective request as Kubernetes computes it: app containers and restartable init
/// containers (sidecars) add up; a regular init container runs alone next to the sidecars
/// started before it, so the pod needs the larger of the two; the pod overhead comes on top.
///
/// # Errors
///
/// A message naming the container and resource whose quantity does not parse.
pub fn pod_requests(pod: &Pod) -> Result<PodRequests, String> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(PodRequests::default());
    };
    let mut total = PodRequests::default();
    for container in &spec.containers {
        total.add(&container_requests(container)?);
    }
    let mut sidecars = PodRequests::default();
    let mut init_peak = PodRequests::default();
    for container in spec.init_containers.iter().flatten() {
        let own = container_requests(container)?;
        if container.restart_policy.as_deref() == Some("Always") {
            total.add(&own);
            sidecars.add(&own);
            init_peak.max_with(&sidecars);
        } else {
            let mut alongside = own;
            alongside.add(&sidecars);
            init_peak.max_with(&alongside);
        }
    }
    total.max_with(&init_peak);
    if let Some(overhead) = spec.overhead.as_ref() {
        let mut extra = Resources::default();
        for (name, quantity) in overhead {
            extra.add_named(name, &parse(quantity, || format!("overhead {name}"))?);
        }
        total.non_zero_milli_cpu += extra.milli_cpu;
        total.non_zero_memory += extra.memory;
        total.requested.add_scaled(&extra, 1);
    }
    Ok(total)
}

/// One container's requests; a resource with a limit and no request requests its limit, as
/// the API server's defaulting would have set it.
fn container_requests(container: &Container) -> Result<PodRequests, String> {
    static NONE: BTreeMap<String, WireQuantity> = BTreeMap::new();
    let resources = container.resources.as_ref();
    let requests = resources.and_then(|r| r.requests.as_ref()).unwrap_or(&NONE);
    let limits = resources.and_then(|r| r.limits.as_ref()).unwrap_or(&NONE);
    let mut amounts = Resources::default();
    let (mut has_cpu, mut has_memory) = (false, false);
    let defaulted = limits
        .iter()
        .filter(|(name, _)| !requests.contains_key(*name));
    for (name, quantity) in requests.iter().chain(defaulted) {
        let what = || format!("{name} request of container {:?}", container.name);
        amounts.add_named(name, &parse(quantity, what)?);
        has_cpu |= name == "cpu";
        has_memory |= name == "memory";
    }
    Ok(PodRequests {
        non_zero_milli_cpu: if has_cpu {
            amounts.milli_cpu
        } else {
            DEFAULT_MILLI_CPU
        },
        non_zero_memory: if has_memory {
            amounts.memory
        } else {
            DEFAULT_MEMORY
        },
        requested: amounts,
    })
}

/// A node's allocatable resources and pod capacity. A quantity that does not parse counts as
/// zero (the node then fits nothing of that resource) and is logged: a node object is not
/// the pod's fault.
pub fn node_allocatable(node: &Node) -> (Resources, i64) {
    let mut amounts = Resources::default();
    let mut pods = 0;
    let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    for (name, quantity) in allocatable.into_iter().flatten() {
        match Quantity::parse_non_negative(&quantity.0) {
            Ok(q) if name == "pods" => pods = clamp(q.value()),
            Ok(q) => amounts.add_named(name, &q),
            Err(e) => tracing::warn!(
                node = node.metadata.name.as_deref().unwrap_or_default(),
                resource = name.as_str(),
                "ignoring malformed allocatable quantity: {e}"
            ),
        }
    }
    (amounts, pods)
}

/// Whether kube-scheduler accounts `name` as a scalar resource: hugepages, attachable volumes
/// and extended resources (a domain-prefixed name outside kubernetes.io).
fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || (name.contains('/')
            && !name.contains("kubernetes.io/")
            && !name.starts_with("requests."))
}

fn parse(quantity: &WireQuantity, what: impl FnOnce() -> String) -> Result<Quantity, String> {
    Quantity::parse_non_negative(&quantity.0).map_err(|e| format!("invalid {}: {e}", what()))
}

fn clamp(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
#[path = "requests_tests.rs"]
mod tests;
