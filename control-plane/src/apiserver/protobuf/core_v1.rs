//! Field listings for the core `v1` kinds other than pods and volumes: Namespace,
//! ConfigMap, Secret, Service, Node, Endpoints, ServiceAccount, ReplicationController, Event.
//!
//! See `convert` for the listing syntax and the presence rule behind `#[keep]`.

use k8s_pb::api::core::v1 as corev1;

use super::convert::to_json;

to_json! {
    corev1::Namespace {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    corev1::ConfigMap {
        metadata: "metadata",
        #[keep] immutable: "immutable",
        data: "data",
        binary_data: "binaryData",
    }
    corev1::Secret {
        metadata: "metadata",
        #[keep] immutable: "immutable",
        data: "data",
        string_data: "stringData",
        r#type: "type",
    }
    corev1::Service {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    corev1::Node {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    corev1::Endpoints {
        metadata: "metadata",
        subsets: "subsets",
    }
    corev1::ServiceAccount {
        metadata: "metadata",
        secrets: "secrets",
        image_pull_secrets: "imagePullSecrets",
        #[keep] automount_service_account_token: "automountServiceAccountToken",
    }
    corev1::ReplicationController {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    corev1::Event {
        metadata: "metadata",
        involved_object: "involvedObject",
        reason: "reason",
        message: "message",
        source: "source",
        first_timestamp: "firstTimestamp",
        last_timestamp: "lastTimestamp",
        count: "count",
        r#type: "type",
        event_time: "eventTime",
        series: "series",
        action: "action",
        related: "related",
        #[keep] reporting_component: "reportingComponent",
        #[keep] reporting_instance: "reportingInstance",
    }
    corev1::NamespaceSpec {
        finalizers: "finalizers",
    }
    corev1::NamespaceStatus {
        phase: "phase",
        conditions: "conditions",
    }
    corev1::ServiceSpec {
        ports: "ports",
        selector: "selector",
        cluster_ip: "clusterIP",
        cluster_ips: "clusterIPs",
        r#type: "type",
        external_ips: "externalIPs",
        session_affinity: "sessionAffinity",
        load_balancer_ip: "loadBalancerIP",
        load_balancer_source_ranges: "loadBalancerSourceRanges",
        external_name: "externalName",
        external_traffic_policy: "externalTrafficPolicy",
        health_check_node_port: "healthCheckNodePort",
        publish_not_ready_addresses: "publishNotReadyAddresses",
        session_affinity_config: "sessionAffinityConfig",
        ip_families: "ipFamilies",
        #[keep] ip_family_policy: "ipFamilyPolicy",
        #[keep] allocate_load_balancer_node_ports: "allocateLoadBalancerNodePorts",
        #[keep] load_balancer_class: "loadBalancerClass",
        #[keep] internal_traffic_policy: "internalTrafficPolicy",
        #[keep] traffic_distribution: "trafficDistribution",
    }
    corev1::ServiceStatus {
        load_balancer: "loadBalancer",
        conditions: "conditions",
    }
    corev1::NodeSpec {
        pod_cidr: "podCIDR",
        pod_cid_rs: "podCIDRs",
        provider_id: "providerID",
        unschedulable: "unschedulable",
        taints: "taints",
        config_source: "configSource",
        external_id: "externalID",
    }
    corev1::NodeStatus {
        capacity: "capacity",
        allocatable: "allocatable",
        phase: "phase",
        conditions: "conditions",
        addresses: "addresses",
        daemon_endpoints: "daemonEndpoints",
        node_info: "nodeInfo",
        images: "images",
        volumes_in_use: "volumesInUse",
        volumes_attached: "volumesAttached",
        config: "config",
        runtime_handlers: "runtimeHandlers",
        features: "features",
    }
    corev1::EndpointSubset {
        addresses: "addresses",
        not_ready_addresses: "notReadyAddresses",
        ports: "ports",
    }
    corev1::ObjectReference {
        kind: "kind",
        namespace: "namespace",
        name: "name",
        uid: "uid",
        api_version: "apiVersion",
        resource_version: "resourceVersion",
        field_path: "fieldPath",
    }
    corev1::LocalObjectReference {
        name: "name",
    }
    corev1::ReplicationControllerSpec {
        #[keep] replicas: "replicas",
        min_ready_seconds: "minReadySeconds",
        selector: "selector",
        template: "template",
    }
    corev1::ReplicationControllerStatus {
        #[keep] replicas: "replicas",
        fully_labeled_replicas: "fullyLabeledReplicas",
        ready_replicas: "readyReplicas",
        available_replicas: "availableReplicas",
        observed_generation: "observedGeneration",
        conditions: "conditions",
    }
    corev1::EventSource {
        component: "component",
        host: "host",
    }
    corev1::EventSeries {
        count: "count",
        last_observed_time: "lastObservedTime",
    }
    corev1::NamespaceCondition {
        #[keep] r#type: "type",
        #[keep] status: "status",
        last_transition_time: "lastTransitionTime",
        reason: "reason",
        message: "message",
    }
    corev1::ServicePort {
        name: "name",
        protocol: "protocol",
        #[keep] app_protocol: "appProtocol",
        #[keep] port: "port",
        target_port: "targetPort",
        node_port: "nodePort",
    }
    corev1::SessionAffinityConfig {
        client_ip: "clientIP",
    }
    corev1::LoadBalancerStatus {
        ingress: "ingress",
    }
    corev1::Taint {
        #[keep] key: "key",
        value: "value",
        #[keep] effect: "effect",
        time_added: "timeAdded",
    }
    corev1::NodeConfigSource {
        config_map: "configMap",
    }
    corev1::NodeCondition {
        #[keep] r#type: "type",
        #[keep] status: "status",
        last_heartbeat_time: "lastHeartbeatTime",
        last_transition_time: "lastTransitionTime",
        reason: "reason",
        message: "message",
    }
    corev1::NodeAddress {
        #[keep] r#type: "type",
        #[keep] address: "address",
    }
    corev1::NodeDaemonEndpoints {
        kubelet_endpoint: "kubeletEndpoint",
    }
    corev1::NodeSystemInfo {
        #[keep] machine_id: "machineID",
        #[keep] system_uuid: "systemUUID",
        #[keep] boot_id: "bootID",
        #[keep] kernel_version: "kernelVersion",
        #[keep] os_image: "osImage",
        #[keep] container_runtime_version: "containerRuntimeVersion",
        #[keep] kubelet_version: "kubeletVersion",
        #[keep] kube_proxy_version: "kubeProxyVersion",
        #[keep] operating_system: "operatingSystem",
        #[keep] architecture: "architecture",
        swap: "swap",
    }
    corev1::ContainerImage {
        names: "names",
        size_bytes: "sizeBytes",
    }
    corev1::AttachedVolume {
        #[keep] name: "name",
        #[keep] device_path: "devicePath",
    }
    corev1::NodeConfigStatus {
        assigned: "assigned",
        active: "active",
        last_known_good: "lastKnownGood",
        error: "error",
    }
    corev1::NodeRuntimeHandler {
        #[keep] name: "name",
        features: "features",
    }
    corev1::NodeFeatures {
        #[keep] supplemental_groups_policy: "supplementalGroupsPolicy",
    }
    corev1::EndpointAddress {
        #[keep] ip: "ip",
        hostname: "hostname",
        #[keep] node_name: "nodeName",
        target_ref: "targetRef",
    }
    corev1::EndpointPort {
        name: "name",
        #[keep] port: "port",
        protocol: "protocol",
        #[keep] app_protocol: "appProtocol",
    }
    corev1::ReplicationControllerCondition {
        #[keep] r#type: "type",
        #[keep] status: "status",
        last_transition_time: "lastTransitionTime",
        reason: "reason",
        message: "message",
    }
    corev1::ClientIpConfig {
        #[keep] timeout_seconds: "timeoutSeconds",
    }
    corev1::LoadBalancerIngress {
        ip: "ip",
        hostname: "hostname",
        #[keep] ip_mode: "ipMode",
        ports: "ports",
    }
    corev1::ConfigMapNodeConfigSource {
        #[keep] namespace: "namespace",
        #[keep] name: "name",
        uid: "uid",
        resource_version: "resourceVersion",
        #[keep] kubelet_config_key: "kubeletConfigKey",
    }
    corev1::DaemonEndpoint {
        #[keep] port: "Port",
    }
    corev1::NodeSwapStatus {
        #[keep] capacity: "capacity",
    }
    corev1::NodeRuntimeHandlerFeatures {
        #[keep] recursive_read_only_mounts: "recursiveReadOnlyMounts",
        #[keep] user_namespaces: "userNamespaces",
    }
    corev1::PortStatus {
        #[keep] port: "port",
        #[keep] protocol: "protocol",
        #[keep] error: "error",
    }
}

#[cfg(test)]
mod tests {
    use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
    use serde_json::json;

    use super::super::convert::ToJson;
    use super::*;

    #[test]
    fn service_ports_keep_target_ports_and_drop_zero_ones() {
        let port = |name: &str, port, target_port| corev1::ServicePort {
            name: Some(name.to_owned()),
            protocol: Some("TCP".to_owned()),
            port: Some(port),
            target_port: Some(target_port),
            node_port: Some(0),
            app_protocol: None,
        };
        let spec = corev1::ServiceSpec {
            ports: vec![
                port(
                    "web",
                    80,
                    IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: Some("http".to_owned()),
                    },
                ),
                port(
                    "",
                    9000,
                    IntOrString {
                        r#type: Some(0),
                        int_val: Some(0),
                        str_val: Some(String::new()),
                    },
                ),
            ],
            cluster_ip: Some(String::new()),
            r#type: Some("ClusterIP".to_owned()),
            ip_families: vec!["IPv4".to_owned()],
            ..Default::default()
        };
        let want = json!({
            "ports": [
                {"name": "web", "protocol": "TCP", "port": 80, "targetPort": "http"},
                {"protocol": "TCP", "port": 9000},
            ],
            "type": "ClusterIP",
            "ipFamilies": ["IPv4"],
        });
        assert_eq!(spec.to_json().ok(), Some(want));
    }

    #[test]
    fn required_fields_keep_their_zero_values() {
        let endpoint_port = corev1::EndpointPort {
            name: Some(String::new()),
            port: Some(0),
            protocol: Some(String::new()),
            app_protocol: None,
        };
        assert_eq!(endpoint_port.to_json().ok(), Some(json!({"port": 0})));
    }
}
