//! Field listings for pods: PodSpec, PodStatus, containers, probes, environment, security
//! contexts, affinity and scheduling.
//!
//! See `convert` for the listing syntax and the presence rule behind `#[keep]`.

use k8s_pb::api::core::v1 as corev1;

use super::convert::to_json;

to_json! {
    corev1::Pod {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    corev1::PodSpec {
        volumes: "volumes",
        init_containers: "initContainers",
        containers: "containers",
        ephemeral_containers: "ephemeralContainers",
        restart_policy: "restartPolicy",
        #[keep] termination_grace_period_seconds: "terminationGracePeriodSeconds",
        #[keep] active_deadline_seconds: "activeDeadlineSeconds",
        dns_policy: "dnsPolicy",
        node_selector: "nodeSelector",
        service_account_name: "serviceAccountName",
        service_account: "serviceAccount",
        #[keep] automount_service_account_token: "automountServiceAccountToken",
        node_name: "nodeName",
        host_network: "hostNetwork",
        host_pid: "hostPID",
        host_ipc: "hostIPC",
        #[keep] share_process_namespace: "shareProcessNamespace",
        security_context: "securityContext",
        image_pull_secrets: "imagePullSecrets",
        hostname: "hostname",
        subdomain: "subdomain",
        affinity: "affinity",
        scheduler_name: "schedulerName",
        tolerations: "tolerations",
        host_aliases: "hostAliases",
        priority_class_name: "priorityClassName",
        #[keep] priority: "priority",
        dns_config: "dnsConfig",
        readiness_gates: "readinessGates",
        #[keep] runtime_class_name: "runtimeClassName",
        #[keep] enable_service_links: "enableServiceLinks",
        #[keep] preemption_policy: "preemptionPolicy",
        overhead: "overhead",
        topology_spread_constraints: "topologySpreadConstraints",
        #[keep] set_hostname_as_fqdn: "setHostnameAsFQDN",
        os: "os",
        #[keep] host_users: "hostUsers",
        scheduling_gates: "schedulingGates",
        resource_claims: "resourceClaims",
        resources: "resources",
    }
    corev1::PodStatus {
        observed_generation: "observedGeneration",
        phase: "phase",
        conditions: "conditions",
        message: "message",
        reason: "reason",
        nominated_node_name: "nominatedNodeName",
        host_ip: "hostIP",
        host_ips: "hostIPs",
        pod_ip: "podIP",
        pod_ips: "podIPs",
        start_time: "startTime",
        init_container_statuses: "initContainerStatuses",
        container_statuses: "containerStatuses",
        qos_class: "qosClass",
        ephemeral_container_statuses: "ephemeralContainerStatuses",
        resize: "resize",
        resource_claim_statuses: "resourceClaimStatuses",
    }
    corev1::Container {
        #[keep] name: "name",
        image: "image",
        command: "command",
        args: "args",
        working_dir: "workingDir",
        ports: "ports",
        env_from: "envFrom",
        env: "env",
        resources: "resources",
        resize_policy: "resizePolicy",
        #[keep] restart_policy: "restartPolicy",
        volume_mounts: "volumeMounts",
        volume_devices: "volumeDevices",
        liveness_probe: "livenessProbe",
        readiness_probe: "readinessProbe",
        startup_probe: "startupProbe",
        lifecycle: "lifecycle",
        termination_message_path: "terminationMessagePath",
        termination_message_policy: "terminationMessagePolicy",
        image_pull_policy: "imagePullPolicy",
        security_context: "securityContext",
        stdin: "stdin",
        stdin_once: "stdinOnce",
        tty: "tty",
    }
    corev1::EphemeralContainer {
        #[flatten] ephemeral_container_common,
        target_container_name: "targetContainerName",
    }
    corev1::PodSecurityContext {
        se_linux_options: "seLinuxOptions",
        windows_options: "windowsOptions",
        #[keep] run_as_user: "runAsUser",
        #[keep] run_as_group: "runAsGroup",
        #[keep] run_as_non_root: "runAsNonRoot",
        supplemental_groups: "supplementalGroups",
        #[keep] supplemental_groups_policy: "supplementalGroupsPolicy",
        #[keep] fs_group: "fsGroup",
        sysctls: "sysctls",
        #[keep] fs_group_change_policy: "fsGroupChangePolicy",
        seccomp_profile: "seccompProfile",
        app_armor_profile: "appArmorProfile",
        #[keep] se_linux_change_policy: "seLinuxChangePolicy",
    }
    corev1::Affinity {
        node_affinity: "nodeAffinity",
        pod_affinity: "podAffinity",
        pod_anti_affinity: "podAntiAffinity",
    }
    corev1::Toleration {
        key: "key",
        operator: "operator",
        value: "value",
        effect: "effect",
        #[keep] toleration_seconds: "tolerationSeconds",
    }
    corev1::HostAlias {
        #[keep] ip: "ip",
        hostnames: "hostnames",
    }
    corev1::PodDnsConfig {
        nameservers: "nameservers",
        searches: "searches",
        options: "options",
    }
    corev1::PodReadinessGate {
        #[keep] condition_type: "conditionType",
    }
    corev1::TopologySpreadConstraint {
        #[keep] max_skew: "maxSkew",
        #[keep] topology_key: "topologyKey",
        #[keep] when_unsatisfiable: "whenUnsatisfiable",
        label_selector: "labelSelector",
        #[keep] min_domains: "minDomains",
        #[keep] node_affinity_policy: "nodeAffinityPolicy",
        #[keep] node_taints_policy: "nodeTaintsPolicy",
        match_label_keys: "matchLabelKeys",
    }
    corev1::PodOs {
        #[keep] name: "name",
    }
    corev1::PodSchedulingGate {
        #[keep] name: "name",
    }
    corev1::PodResourceClaim {
        #[keep] name: "name",
        #[keep] resource_claim_name: "resourceClaimName",
        #[keep] resource_claim_template_name: "resourceClaimTemplateName",
    }
    corev1::ResourceRequirements {
        limits: "limits",
        requests: "requests",
        claims: "claims",
    }
    corev1::PodCondition {
        #[keep] r#type: "type",
        observed_generation: "observedGeneration",
        #[keep] status: "status",
        last_probe_time: "lastProbeTime",
        last_transition_time: "lastTransitionTime",
        reason: "reason",
        message: "message",
    }
    corev1::HostIp {
        #[keep] ip: "ip",
    }
    corev1::PodIp {
        #[keep] ip: "ip",
    }
    corev1::ContainerStatus {
        #[keep] name: "name",
        state: "state",
        last_state: "lastState",
        #[keep] ready: "ready",
        #[keep] restart_count: "restartCount",
        #[keep] image: "image",
        #[keep] image_id: "imageID",
        container_id: "containerID",
        #[keep] started: "started",
        allocated_resources: "allocatedResources",
        resources: "resources",
        volume_mounts: "volumeMounts",
        user: "user",
        allocated_resources_status: "allocatedResourcesStatus",
        #[keep] stop_signal: "stopSignal",
    }
    corev1::PodResourceClaimStatus {
        #[keep] name: "name",
        #[keep] resource_claim_name: "resourceClaimName",
    }
    corev1::PodTemplateSpec {
        metadata: "metadata",
        spec: "spec",
    }
    corev1::ContainerPort {
        name: "name",
        host_port: "hostPort",
        #[keep] container_port: "containerPort",
        protocol: "protocol",
        host_ip: "hostIP",
    }
    corev1::EnvFromSource {
        prefix: "prefix",
        config_map_ref: "configMapRef",
        secret_ref: "secretRef",
    }
    corev1::EnvVar {
        #[keep] name: "name",
        value: "value",
        value_from: "valueFrom",
    }
    corev1::ContainerResizePolicy {
        #[keep] resource_name: "resourceName",
        #[keep] restart_policy: "restartPolicy",
    }
    corev1::VolumeMount {
        #[keep] name: "name",
        read_only: "readOnly",
        #[keep] recursive_read_only: "recursiveReadOnly",
        #[keep] mount_path: "mountPath",
        sub_path: "subPath",
        #[keep] mount_propagation: "mountPropagation",
        sub_path_expr: "subPathExpr",
    }
    corev1::VolumeDevice {
        #[keep] name: "name",
        #[keep] device_path: "devicePath",
    }
    corev1::Probe {
        #[flatten] handler,
        initial_delay_seconds: "initialDelaySeconds",
        timeout_seconds: "timeoutSeconds",
        period_seconds: "periodSeconds",
        success_threshold: "successThreshold",
        failure_threshold: "failureThreshold",
        #[keep] termination_grace_period_seconds: "terminationGracePeriodSeconds",
    }
    corev1::Lifecycle {
        post_start: "postStart",
        pre_stop: "preStop",
        #[keep] stop_signal: "stopSignal",
    }
    corev1::SecurityContext {
        capabilities: "capabilities",
        #[keep] privileged: "privileged",
        se_linux_options: "seLinuxOptions",
        windows_options: "windowsOptions",
        #[keep] run_as_user: "runAsUser",
        #[keep] run_as_group: "runAsGroup",
        #[keep] run_as_non_root: "runAsNonRoot",
        #[keep] read_only_root_filesystem: "readOnlyRootFilesystem",
        #[keep] allow_privilege_escalation: "allowPrivilegeEscalation",
        #[keep] proc_mount: "procMount",
        seccomp_profile: "seccompProfile",
        app_armor_profile: "appArmorProfile",
    }
    corev1::EphemeralContainerCommon {
        #[keep] name: "name",
        image: "image",
        command: "command",
        args: "args",
        working_dir: "workingDir",
        ports: "ports",
        env_from: "envFrom",
        env: "env",
        resources: "resources",
        resize_policy: "resizePolicy",
        #[keep] restart_policy: "restartPolicy",
        volume_mounts: "volumeMounts",
        volume_devices: "volumeDevices",
        liveness_probe: "livenessProbe",
        readiness_probe: "readinessProbe",
        startup_probe: "startupProbe",
        lifecycle: "lifecycle",
        termination_message_path: "terminationMessagePath",
        termination_message_policy: "terminationMessagePolicy",
        image_pull_policy: "imagePullPolicy",
        security_context: "securityContext",
        stdin: "stdin",
        stdin_once: "stdinOnce",
        tty: "tty",
    }
    corev1::SeLinuxOptions {
        user: "user",
        role: "role",
        r#type: "type",
        level: "level",
    }
    corev1::WindowsSecurityContextOptions {
        #[keep] gmsa_credential_spec_name: "gmsaCredentialSpecName",
        #[keep] gmsa_credential_spec: "gmsaCredentialSpec",
        #[keep] run_as_user_name: "runAsUserName",
        #[keep] host_process: "hostProcess",
    }
    corev1::Sysctl {
        #[keep] name: "name",
        #[keep] value: "value",
    }
    corev1::SeccompProfile {
        #[keep] r#type: "type",
        #[keep] localhost_profile: "localhostProfile",
    }
    corev1::AppArmorProfile {
        #[keep] r#type: "type",
        #[keep] localhost_profile: "localhostProfile",
    }
    corev1::NodeAffinity {
        required_during_scheduling_ignored_during_execution: "requiredDuringSchedulingIgnoredDuringExecution",
        preferred_during_scheduling_ignored_during_execution: "preferredDuringSchedulingIgnoredDuringExecution",
    }
    corev1::PodAffinity {
        required_during_scheduling_ignored_during_execution: "requiredDuringSchedulingIgnoredDuringExecution",
        preferred_during_scheduling_ignored_during_execution: "preferredDuringSchedulingIgnoredDuringExecution",
    }
    corev1::PodAntiAffinity {
        required_during_scheduling_ignored_during_execution: "requiredDuringSchedulingIgnoredDuringExecution",
        preferred_during_scheduling_ignored_during_execution: "preferredDuringSchedulingIgnoredDuringExecution",
    }
    corev1::PodDnsConfigOption {
        name: "name",
        #[keep] value: "value",
    }
    corev1::ResourceClaim {
        #[keep] name: "name",
        request: "request",
    }
    corev1::ContainerState {
        waiting: "waiting",
        running: "running",
        terminated: "terminated",
    }
    corev1::VolumeMountStatus {
        #[keep] name: "name",
        #[keep] mount_path: "mountPath",
        read_only: "readOnly",
        #[keep] recursive_read_only: "recursiveReadOnly",
    }
    corev1::ContainerUser {
        linux: "linux",
    }
    corev1::ResourceStatus {
        #[keep] name: "name",
        resources: "resources",
    }
    corev1::ConfigMapEnvSource {
        #[flatten] local_object_reference,
        #[keep] optional: "optional",
    }
    corev1::SecretEnvSource {
        #[flatten] local_object_reference,
        #[keep] optional: "optional",
    }
    corev1::EnvVarSource {
        field_ref: "fieldRef",
        resource_field_ref: "resourceFieldRef",
        config_map_key_ref: "configMapKeyRef",
        secret_key_ref: "secretKeyRef",
    }
    corev1::ProbeHandler {
        exec: "exec",
        http_get: "httpGet",
        tcp_socket: "tcpSocket",
        grpc: "grpc",
    }
    corev1::LifecycleHandler {
        exec: "exec",
        http_get: "httpGet",
        tcp_socket: "tcpSocket",
        sleep: "sleep",
    }
    corev1::Capabilities {
        add: "add",
        drop: "drop",
    }
    corev1::NodeSelector {
        node_selector_terms: "nodeSelectorTerms",
    }
    corev1::PreferredSchedulingTerm {
        #[keep] weight: "weight",
        preference: "preference",
    }
    corev1::PodAffinityTerm {
        label_selector: "labelSelector",
        namespaces: "namespaces",
        #[keep] topology_key: "topologyKey",
        namespace_selector: "namespaceSelector",
        match_label_keys: "matchLabelKeys",
        mismatch_label_keys: "mismatchLabelKeys",
    }
    corev1::WeightedPodAffinityTerm {
        #[keep] weight: "weight",
        pod_affinity_term: "podAffinityTerm",
    }
    corev1::ContainerStateWaiting {
        reason: "reason",
        message: "message",
    }
    corev1::ContainerStateRunning {
        started_at: "startedAt",
    }
    corev1::ContainerStateTerminated {
        #[keep] exit_code: "exitCode",
        signal: "signal",
        reason: "reason",
        message: "message",
        started_at: "startedAt",
        finished_at: "finishedAt",
        container_id: "containerID",
    }
    corev1::LinuxContainerUser {
        #[keep] uid: "uid",
        #[keep] gid: "gid",
        supplemental_groups: "supplementalGroups",
    }
    corev1::ResourceHealth {
        #[keep] resource_id: "resourceID",
        health: "health",
    }
    corev1::ObjectFieldSelector {
        api_version: "apiVersion",
        #[keep] field_path: "fieldPath",
    }
    corev1::ResourceFieldSelector {
        container_name: "containerName",
        #[keep] resource: "resource",
        divisor: "divisor",
    }
    corev1::ConfigMapKeySelector {
        #[flatten] local_object_reference,
        #[keep] key: "key",
        #[keep] optional: "optional",
    }
    corev1::SecretKeySelector {
        #[flatten] local_object_reference,
        #[keep] key: "key",
        #[keep] optional: "optional",
    }
    corev1::ExecAction {
        command: "command",
    }
    corev1::HttpGetAction {
        path: "path",
        #[keep] port: "port",
        host: "host",
        scheme: "scheme",
        http_headers: "httpHeaders",
    }
    corev1::TcpSocketAction {
        #[keep] port: "port",
        host: "host",
    }
    corev1::GrpcAction {
        #[keep] port: "port",
        #[keep] service: "service",
    }
    corev1::SleepAction {
        #[keep] seconds: "seconds",
    }
    corev1::NodeSelectorTerm {
        match_expressions: "matchExpressions",
        match_fields: "matchFields",
    }
    corev1::HttpHeader {
        #[keep] name: "name",
        #[keep] value: "value",
    }
    corev1::NodeSelectorRequirement {
        #[keep] key: "key",
        #[keep] operator: "operator",
        values: "values",
    }
}

#[cfg(test)]
mod tests {
    use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
    use serde_json::json;

    use super::super::convert::ToJson;
    use super::*;

    fn s(value: &str) -> Option<String> {
        Some(value.to_owned())
    }

    #[test]
    fn container_inline_structs_are_flattened() {
        let settings = || {
            Some(corev1::LocalObjectReference {
                name: s("settings"),
            })
        };
        let container = corev1::Container {
            name: s("app"),
            env: vec![corev1::EnvVar {
                name: s("MODE"),
                value: s(""),
                value_from: Some(corev1::EnvVarSource {
                    config_map_key_ref: Some(corev1::ConfigMapKeySelector {
                        local_object_reference: settings(),
                        key: s("mode"),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
            }],
            liveness_probe: Some(corev1::Probe {
                handler: Some(corev1::ProbeHandler {
                    http_get: Some(corev1::HttpGetAction {
                        path: s("/healthz"),
                        port: Some(IntOrString {
                            r#type: Some(1),
                            int_val: Some(0),
                            str_val: s("http"),
                        }),
                        host: s(""),
                        scheme: s("HTTP"),
                        http_headers: Vec::new(),
                    }),
                    ..Default::default()
                }),
                period_seconds: Some(10),
                initial_delay_seconds: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        };
        let want = json!({
            "name": "app",
            "env": [{
                "name": "MODE",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode", "optional": false}},
            }],
            "livenessProbe": {
                "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                "periodSeconds": 10,
            },
        });
        assert_eq!(container.to_json().ok(), Some(want));
    }

    #[test]
    fn pod_security_context_keeps_pointer_zeros_and_acronym_names() {
        let spec = corev1::PodSpec {
            security_context: Some(corev1::PodSecurityContext {
                run_as_user: Some(0),
                run_as_non_root: Some(false),
                supplemental_groups: vec![1000, 2000],
                ..Default::default()
            }),
            host_pid: Some(true),
            host_ipc: Some(false),
            set_hostname_as_fqdn: Some(false),
            ..Default::default()
        };
        let want = json!({
            "hostPID": true,
            "securityContext": {
                "runAsUser": 0,
                "runAsNonRoot": false,
                "supplementalGroups": [1000, 2000],
            },
            "setHostnameAsFQDN": false,
        });
        assert_eq!(spec.to_json().ok(), Some(want));
        let status = corev1::PodStatus {
            pod_ip: s("10.0.0.5"),
            pod_ips: vec![corev1::PodIp { ip: s("10.0.0.5") }],
            host_ips: vec![corev1::HostIp {
                ip: s("192.168.1.2"),
            }],
            ..Default::default()
        };
        let want = json!({
            "hostIPs": [{"ip": "192.168.1.2"}],
            "podIP": "10.0.0.5",
            "podIPs": [{"ip": "10.0.0.5"}],
        });
        assert_eq!(status.to_json().ok(), Some(want));
    }
}
