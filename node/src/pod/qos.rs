//! A Pod's quality-of-service class by the kubelet's rule (`ComputePodQOS`): BestEffort
//! without any CPU or memory request or limit, Guaranteed when every container limits both and
//! requests equal limits, Burstable otherwise.

use std::collections::BTreeMap;

use bramble_api::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, Pod};

/// The QoS class name as in `status.qosClass`.
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = &pod.spec else {
        return "BestEffort";
    };
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    for container in containers {
        let container_limits = positive(container, Side::Limits);
        // The API server defaults a missing request to its limit before the kubelet sees the
        // Pod; Bramble's may not, so that defaulting is applied here.
        let mut container_requests = positive(container, Side::Requests);
        for (name, value) in &container_limits {
            container_requests.entry(name).or_insert(*value);
        }
        for (name, value) in container_requests {
            *requests.entry(name).or_default() += value;
        }
        for (name, value) in &container_limits {
            *limits.entry(name).or_default() += value;
        }
        if !(container_limits.contains_key("cpu") && container_limits.contains_key("memory")) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    let equal = requests.len() == limits.len()
        && requests
            .iter()
            .all(|(name, request)| limits.get(name) == Some(request));
    if guaranteed && equal {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[derive(Clone, Copy)]
enum Side {
    Requests,
    Limits,
}

/// The container's positive CPU and memory amounts in thousandths. Unparsable amounts are
/// skipped: the API server rejects them, and QoS is no place to report that.
fn positive(container: &Container, side: Side) -> BTreeMap<&'static str, i128> {
    let Some(resources) = &container.resources else {
        return BTreeMap::new();
    };
    let list = match side {
        Side::Requests => resources.requests.as_ref(),
        Side::Limits => resources.limits.as_ref(),
    };
    let mut amounts = BTreeMap::new();
    for name in ["cpu", "memory"] {
        let value = list
            .and_then(|list| list.get(name))
            .and_then(|quantity| Quantity::parse(&quantity.0).ok())
            .map(|quantity| quantity.milli_value())
            .filter(|milli| *milli > 0);
        if let Some(value) = value {
            amounts.insert(name, value);
        }
    }
    amounts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": containers}
        }))
        .unwrap_or_default()
    }

    fn container(resources: serde_json::Value) -> serde_json::Value {
        json!({"name": "c", "image": "i", "resources": resources})
    }

    #[test]
    fn no_cpu_or_memory_amounts_is_best_effort() {
        assert_eq!(qos_class(&pod(json!([container(json!({}))]))), "BestEffort");
        let other = container(json!({"limits": {"ephemeral-storage": "1Gi"}}));
        assert_eq!(qos_class(&pod(json!([other]))), "BestEffort");
        let zero = container(json!({"requests": {"cpu": "0"}}));
        assert_eq!(qos_class(&pod(json!([zero]))), "BestEffort");
    }

    #[test]
    fn equal_cpu_and_memory_limits_and_requests_are_guaranteed() {
        let exact = container(json!({
            "limits": {"cpu": "500m", "memory": "64Mi"},
            "requests": {"cpu": "0.5", "memory": "67108864"}
        }));
        assert_eq!(qos_class(&pod(json!([exact]))), "Guaranteed");
        let limits_only = container(json!({"limits": {"cpu": "1", "memory": "1Gi"}}));
        assert_eq!(qos_class(&pod(json!([limits_only]))), "Guaranteed");
    }

    #[test]
    fn anything_less_is_burstable() {
        let lower = container(json!({
            "limits": {"cpu": "1", "memory": "1Gi"},
            "requests": {"cpu": "500m", "memory": "1Gi"}
        }));
        assert_eq!(qos_class(&pod(json!([lower]))), "Burstable");
        let memory_only = container(json!({"limits": {"memory": "1Gi"}}));
        assert_eq!(qos_class(&pod(json!([memory_only]))), "Burstable");
        let full = container(json!({"limits": {"cpu": "1", "memory": "1Gi"}}));
        let bare = container(json!({}));
        assert_eq!(qos_class(&pod(json!([full, bare]))), "Burstable");
    }
}
