//! The scheduler's picture of the cluster: per node, what it offers (labels, taints,
//! allocatable) and the aggregates of the pods on it (requests, per-controller counts, pods
//! with affinity terms), kept up to date incrementally as nodes and pods come and go, so a
//! decision never walks a pod list to learn what a node holds.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use super::pod_info::{controller_uid, pod_key, PodEntry};
use super::requests::{self, Resources};
use super::scoring::{Scratch, Weights};
use crate::controllers::pods;

/// The node label naming the node's zone, for spreading across zones.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// The taint Kubernetes puts on a node that is not Ready.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
/// The taint Kubernetes puts on a node whose status is Unknown.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// One node and the aggregates of the pods on it.
#[derive(Debug, Default)]
pub struct NodeInfo {
    name: String,
    labels: BTreeMap<String, String>,
    pub(crate) unschedulable: bool,
    /// NoSchedule and NoExecute taints: the filter.
    pub(crate) hard_taints: Vec<Taint>,
    /// PreferNoSchedule taints: the score.
    pub(crate) soft_taints: Vec<Taint>,
    /// Not Ready and not tainted for it yet: treated as tainted not-ready:NoSchedule.
    pub(crate) not_ready: bool,
    pub(crate) allocatable: Resources,
    pub(crate) allowed_pods: i64,
    pub(crate) zone: Option<u32>,
    pub(crate) requested: Resources,
    pub(crate) non_zero_milli_cpu: i64,
    pub(crate) non_zero_memory: i64,
    pods: Vec<Arc<PodEntry>>,
    affinity_pods: Vec<Arc<PodEntry>>,
    /// (controller id, pods of that controller here that are not terminating).
    controllers: Vec<(u32, u32)>,
}

impl NodeInfo {
    fn empty(name: &str) -> Self {
        NodeInfo {
            name: name.to_owned(),
            ..NodeInfo::default()
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// The pods on the node (bound or assumed).
    pub fn pods(&self) -> &[Arc<PodEntry>] {
        &self.pods
    }

    /// The pods on the node that carry pod (anti-)affinity terms.
    pub fn affinity_pods(&self) -> &[Arc<PodEntry>] {
        &self.affinity_pods
    }

    /// The sum of the effective requests of the pods on the node.
    pub fn requested(&self) -> &Resources {
        &self.requested
    }

    /// What the node can allocate.
    pub fn allocatable(&self) -> &Resources {
        &self.allocatable
    }

    /// How many pods of the controller `id` are here and not terminating.
    pub(crate) fn controller_count(&self, id: u32) -> u32 {
        self.controllers
            .iter()
            .find(|(c, _)| *c == id)
            .map_or(0, |(_, n)| *n)
    }

    fn set_node(&mut self, node: &Node, zones: &mut Interner) {
        let spec = node.spec.as_ref();
        let taints = spec.and_then(|s| s.taints.as_deref()).unwrap_or_default();
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True");
        let tainted_for_it = taints
            .iter()
            .any(|t| t.key == NOT_READY_TAINT || t.key == UNREACHABLE_TAINT);
        let (allocatable, allowed_pods) = requests::node_allocatable(node);
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let zone = labels.get(ZONE_LABEL).map(|z| zones.acquire(z));
        if let Some(old) = self.zone {
            zones.release(old);
        }
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        self.hard_taints = taints
            .iter()
            .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
            .cloned()
            .collect();
        self.soft_taints = taints
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule")
            .cloned()
            .collect();
        self.not_ready = !ready && !tainted_for_it;
        self.allocatable = allocatable;
        self.allowed_pods = allowed_pods;
        self.labels = labels;
        self.zone = zone;
    }

    fn counts_for_spread(entry: &PodEntry) -> Option<u32> {
        entry.controller.filter(|_| !entry.terminating)
    }

    fn add(&mut self, entry: &Arc<PodEntry>) {
        self.requested.add_scaled(&entry.requests.requested, 1);
        self.non_zero_milli_cpu += entry.requests.non_zero_milli_cpu;
        self.non_zero_memory += entry.requests.non_zero_memory;
        self.pods.push(Arc::clone(entry));
        if entry.affinity.is_some() {
            self.affinity_pods.push(Arc::clone(entry));
        }
        if let Some(id) = Self::counts_for_spread(entry) {
            match self.controllers.iter_mut().find(|(c, _)| *c == id) {
                Some((_, n)) => *n += 1,
                None => self.controllers.push((id, 1)),
            }
        }
    }

    fn remove(&mut self, entry: &Arc<PodEntry>) {
        let Some(at) = self.pods.iter().position(|p| Arc::ptr_eq(p, entry)) else {
            return;
        };
        self.pods.swap_remove(at);
        if let Some(at) = self
            .affinity_pods
            .iter()
            .position(|p| Arc::ptr_eq(p, entry))
        {
            self.affinity_pods.swap_remove(at);
        }
        self.requested.add_scaled(&entry.requests.requested, -1);
        self.non_zero_milli_cpu -= entry.requests.non_zero_milli_cpu;
        self.non_zero_memory -= entry.requests.non_zero_memory;
        if let Some(id) = Self::counts_for_spread(entry) {
            if let Some(at) = self.controllers.iter().position(|(c, _)| *c == id) {
                self.controllers[at].1 -= 1;
                if self.controllers[at].1 == 0 {
                    self.controllers.swap_remove(at);
                }
            }
        }
    }
}

/// Small integer ids for strings compared often (controller uids, zones), reference counted
/// so ids of controllers that are gone are reused.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    ids: HashMap<String, u32>,
    slots: Vec<(String, u32)>,
    free: Vec<u32>,
}

impl Interner {
    pub(crate) fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    fn acquire(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            self.slots[id as usize].1 += 1;
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = (name.to_owned(), 1);
                id
            }
            None => {
                self.slots.push((name.to_owned(), 1));
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.ids.insert(name.to_owned(), id);
        id
    }

    fn release(&mut self, id: u32) {
        let Some(slot) = self.slots.get_mut(id as usize) else {
            return;
        };
        slot.1 = slot.1.saturating_sub(1);
        if slot.1 == 0 {
            self.ids.remove(&std::mem::take(&mut slot.0));
            self.free.push(id);
        }
    }
}

/// The nodes and the pods on them. See the module [`super`] for the decision.
#[derive(Debug)]
pub struct Snapshot {
    /// Known nodes, in the order decisions walk them.
    pub(crate) nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// Nodes holding pods but not (or no longer) known as nodes: kept so their pods are
    /// accounted when the node shows up.
    ghosts: HashMap<String, NodeInfo>,
    pods: HashMap<String, Arc<PodEntry>>,
    pub(crate) controllers: Interner,
    zones: Interner,
    /// Non-terminating pods per (controller, zone), over known nodes.
    pub(crate) zone_counts: HashMap<(u32, u32), u32>,
    /// Pods whose required anti-affinity spans more than their node.
    pub(crate) wide_anti_pods: usize,
    pub(crate) next_start: usize,
    pub(crate) rng: u64,
    pub(crate) scratch: Scratch,
    pub(crate) weights: Weights,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot::new()
    }
}

impl Snapshot {
    /// An empty cluster.
    pub fn new() -> Snapshot {
        Snapshot {
            nodes: Vec::new(),
            index: HashMap::new(),
            ghosts: HashMap::new(),
            pods: HashMap::new(),
            controllers: Interner::default(),
            zones: Interner::default(),
            zone_counts: HashMap::new(),
            wide_anti_pods: 0,
            next_start: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            scratch: Scratch::default(),
            weights: Weights::default(),
        }
    }

    /// How many nodes are known.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// How many pods are accounted (bound or assumed), on known nodes or not.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// A known node by name.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// The position of a known node in the walk order.
    pub(crate) fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Adds a node or takes in a change to it (labels, taints, allocatable, conditions,
    /// cordon); the aggregates of its pods are kept.
    pub fn upsert_node(&mut self, node: &Node) {
        let Some(name) = node.metadata.name.as_deref() else {
            tracing::warn!("ignoring a node without a name");
            return;
        };
        match self.index.get(name) {
            Some(&i) => {
                // The zone label may have changed: move the node's pods with it.
                self.shift_zone(i, -1);
                self.nodes[i].set_node(node, &mut self.zones);
                self.shift_zone(i, 1);
            }
            None => {
                let mut info = self
                    .ghosts
                    .remove(name)
                    .unwrap_or_else(|| NodeInfo::empty(name));
                info.set_node(node, &mut self.zones);
                self.index.insert(name.to_owned(), self.nodes.len());
                self.nodes.push(info);
                self.shift_zone(self.nodes.len() - 1, 1);
            }
        }
    }

    /// Whether the nodes differ in the runtimes they offer or their architecture, so that
    /// where a pod can run depends on its images. One pass over the nodes (per batch).
    pub fn mixed_runtimes(&self) -> bool {
        // Compared label by label, without collecting: this runs once per batch over every
        // node.
        fn kind(node: &NodeInfo) -> impl Iterator<Item = (&String, &String)> {
            node.labels().iter().filter(|(k, _)| {
                k.starts_with(super::RUNTIME_LABEL_PREFIX) || *k == super::filters::ARCH_LABEL
            })
        }
        let mut nodes = self.nodes.iter();
        let Some(first) = nodes.next() else {
            return false;
        };
        nodes.any(|n| !kind(n).eq(kind(first)))
    }

    /// Forgets a node. Pods still bound to it stay accounted (until removed) in case it
    /// comes back.
    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        self.shift_zone(i, -1);
        let mut info = self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
        if let Some(zone) = info.zone.take() {
            self.zones.release(zone);
        }
        if !info.pods.is_empty() {
            self.ghosts.insert(name.to_owned(), info);
        }
    }

    /// A pod bound to a node (spec.nodeName set), or one this scheduler just assumed there:
    /// its requests count against the node from now on. A newer version of a known pod
    /// replaces it; a pod that has finished frees its node; an unbound pod is ignored.
    pub fn add_pod(&mut self, pod: &Pod) {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        if node.is_empty() {
            return;
        }
        self.remove_pod(pod);
        if pods::is_finished(pod) {
            return;
        }
        self.attach(PodEntry::bound(pod, node), controller_uid(pod));
    }

    /// Removes a pod (by namespace/name, and uid when both sides have one); no-op if unknown.
    pub fn remove_pod(&mut self, pod: &Pod) {
        self.detach(&pod_key(pod), pod.metadata.uid.as_deref(), false);
    }

    /// Undoes [`Snapshot::schedule`]'s assumption after a failed bind: the node gets its
    /// resources back. A pod since seen bound (through `add_pod`) stays.
    pub fn forget(&mut self, pod: &Pod) {
        self.detach(&pod_key(pod), pod.metadata.uid.as_deref(), true);
    }

    pub(crate) fn attach(&mut self, mut entry: PodEntry, controller: Option<&str>) {
        // Never account a pod twice, whatever the caller's order of calls.
        let key = entry.key.clone();
        self.detach(&key, None, false);
        entry.controller = controller.map(|uid| self.controllers.acquire(uid));
        if entry
            .affinity
            .as_deref()
            .is_some_and(|a| a.has_wide_required_anti())
        {
            self.wide_anti_pods += 1;
        }
        let entry = Arc::new(entry);
        match self.index.get(&entry.node) {
            Some(&i) => {
                self.nodes[i].add(&entry);
                self.count_in_zone(i, &entry, 1);
            }
            None => self
                .ghosts
                .entry(entry.node.clone())
                .or_insert_with(|| NodeInfo::empty(&entry.node))
                .add(&entry),
        }
        self.pods.insert(entry.key.clone(), entry);
    }

    fn detach(&mut self, key: &str, uid: Option<&str>, only_assumed: bool) {
        let Some(entry) = self.pods.get(key) else {
            return;
        };
        let other_pod =
            matches!(uid, Some(u) if !u.is_empty() && !entry.uid.is_empty() && u != entry.uid);
        if other_pod || (only_assumed && !entry.assumed) {
            return;
        }
        let Some(entry) = self.pods.remove(key) else {
            return;
        };
        match self.index.get(&entry.node) {
            Some(&i) => {
                self.nodes[i].remove(&entry);
                self.count_in_zone(i, &entry, -1);
            }
            None => {
                if let Some(ghost) = self.ghosts.get_mut(&entry.node) {
                    ghost.remove(&entry);
                    if ghost.pods.is_empty() {
                        self.ghosts.remove(&entry.node);
                    }
                }
            }
        }
        if let Some(id) = entry.controller {
            self.controllers.release(id);
        }
        if entry
            .affinity
            .as_deref()
            .is_some_and(|a| a.has_wide_required_anti())
        {
            self.wide_anti_pods -= 1;
        }
    }

    fn count_in_zone(&mut self, node: usize, entry: &PodEntry, sign: i64) {
        if let (Some(zone), Some(id)) = (self.nodes[node].zone, NodeInfo::counts_for_spread(entry))
        {
            Self::bump(&mut self.zone_counts, (id, zone), sign);
        }
    }

    /// Moves all of a node's counted pods into (1) or out of (-1) its zone's counts.
    fn shift_zone(&mut self, node: usize, sign: i64) {
        let info = &self.nodes[node];
        let Some(zone) = info.zone else { return };
        for &(id, n) in &info.controllers {
            Self::bump(&mut self.zone_counts, (id, zone), sign * i64::from(n));
        }
    }

    fn bump(counts: &mut HashMap<(u32, u32), u32>, key: (u32, u32), by: i64) {
        let slot = counts.entry(key).or_insert(0);
        *slot = u32::try_from((i64::from(*slot) + by).max(0)).unwrap_or(u32::MAX);
        if *slot == 0 {
            counts.remove(&key);
        }
    }
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
