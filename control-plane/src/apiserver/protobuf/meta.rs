//! Field listings for apimachinery `meta/v1` and the small API groups (coordination, node,
//! discovery, policy, authorization).
//!
//! See `convert` for the listing syntax and the presence rule behind `#[keep]`.

use k8s_pb::api::authorization::v1 as authorizationv1;
use k8s_pb::api::coordination::v1 as coordinationv1;
use k8s_pb::api::discovery::v1 as discoveryv1;
use k8s_pb::api::node::v1 as nodev1;
use k8s_pb::api::policy::v1 as policyv1;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as metav1;

use super::convert::to_json;

to_json! {
    coordinationv1::Lease {
        metadata: "metadata",
        spec: "spec",
    }
    nodev1::RuntimeClass {
        metadata: "metadata",
        #[keep] handler: "handler",
        overhead: "overhead",
        scheduling: "scheduling",
    }
    discoveryv1::EndpointSlice {
        metadata: "metadata",
        #[keep] address_type: "addressType",
        endpoints: "endpoints",
        ports: "ports",
    }
    metav1::DeleteOptions {
        #[keep] grace_period_seconds: "gracePeriodSeconds",
        preconditions: "preconditions",
        #[keep] orphan_dependents: "orphanDependents",
        #[keep] propagation_policy: "propagationPolicy",
        dry_run: "dryRun",
        #[keep] ignore_store_read_error_with_cluster_breaking_potential: "ignoreStoreReadErrorWithClusterBreakingPotential",
    }
    policyv1::Eviction {
        metadata: "metadata",
        delete_options: "deleteOptions",
    }
    authorizationv1::SelfSubjectAccessReview {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    authorizationv1::SelfSubjectRulesReview {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    metav1::ObjectMeta {
        name: "name",
        generate_name: "generateName",
        namespace: "namespace",
        self_link: "selfLink",
        uid: "uid",
        resource_version: "resourceVersion",
        generation: "generation",
        creation_timestamp: "creationTimestamp",
        deletion_timestamp: "deletionTimestamp",
        #[keep] deletion_grace_period_seconds: "deletionGracePeriodSeconds",
        labels: "labels",
        annotations: "annotations",
        owner_references: "ownerReferences",
        finalizers: "finalizers",
        managed_fields: "managedFields",
    }
    coordinationv1::LeaseSpec {
        #[keep] holder_identity: "holderIdentity",
        #[keep] lease_duration_seconds: "leaseDurationSeconds",
        acquire_time: "acquireTime",
        renew_time: "renewTime",
        #[keep] lease_transitions: "leaseTransitions",
        #[keep] strategy: "strategy",
        #[keep] preferred_holder: "preferredHolder",
    }
    nodev1::Overhead {
        pod_fixed: "podFixed",
    }
    nodev1::Scheduling {
        node_selector: "nodeSelector",
        tolerations: "tolerations",
    }
    discoveryv1::Endpoint {
        addresses: "addresses",
        conditions: "conditions",
        #[keep] hostname: "hostname",
        target_ref: "targetRef",
        deprecated_topology: "deprecatedTopology",
        #[keep] node_name: "nodeName",
        #[keep] zone: "zone",
        hints: "hints",
    }
    discoveryv1::EndpointPort {
        #[keep] name: "name",
        #[keep] protocol: "protocol",
        #[keep] port: "port",
        #[keep] app_protocol: "appProtocol",
    }
    metav1::Preconditions {
        #[keep] uid: "uid",
        #[keep] resource_version: "resourceVersion",
    }
    authorizationv1::SelfSubjectAccessReviewSpec {
        resource_attributes: "resourceAttributes",
        non_resource_attributes: "nonResourceAttributes",
    }
    authorizationv1::SubjectAccessReviewStatus {
        #[keep] allowed: "allowed",
        denied: "denied",
        reason: "reason",
        evaluation_error: "evaluationError",
    }
    authorizationv1::SelfSubjectRulesReviewSpec {
        namespace: "namespace",
    }
    authorizationv1::SubjectRulesReviewStatus {
        resource_rules: "resourceRules",
        non_resource_rules: "nonResourceRules",
        #[keep] incomplete: "incomplete",
        evaluation_error: "evaluationError",
    }
    metav1::OwnerReference {
        #[keep] api_version: "apiVersion",
        #[keep] kind: "kind",
        #[keep] name: "name",
        #[keep] uid: "uid",
        #[keep] controller: "controller",
        #[keep] block_owner_deletion: "blockOwnerDeletion",
    }
    metav1::ManagedFieldsEntry {
        manager: "manager",
        operation: "operation",
        api_version: "apiVersion",
        time: "time",
        fields_type: "fieldsType",
        fields_v1: "fieldsV1",
        subresource: "subresource",
    }
    metav1::Condition {
        #[keep] r#type: "type",
        #[keep] status: "status",
        observed_generation: "observedGeneration",
        last_transition_time: "lastTransitionTime",
        #[keep] reason: "reason",
        #[keep] message: "message",
    }
    metav1::LabelSelector {
        match_labels: "matchLabels",
        match_expressions: "matchExpressions",
    }
    discoveryv1::EndpointConditions {
        #[keep] ready: "ready",
        #[keep] serving: "serving",
        #[keep] terminating: "terminating",
    }
    discoveryv1::EndpointHints {
        for_zones: "forZones",
        for_nodes: "forNodes",
    }
    authorizationv1::ResourceAttributes {
        namespace: "namespace",
        verb: "verb",
        group: "group",
        version: "version",
        resource: "resource",
        subresource: "subresource",
        name: "name",
        field_selector: "fieldSelector",
        label_selector: "labelSelector",
    }
    authorizationv1::NonResourceAttributes {
        path: "path",
        verb: "verb",
    }
    authorizationv1::ResourceRule {
        verbs: "verbs",
        api_groups: "apiGroups",
        resources: "resources",
        resource_names: "resourceNames",
    }
    authorizationv1::NonResourceRule {
        verbs: "verbs",
        non_resource_ur_ls: "nonResourceURLs",
    }
    metav1::LabelSelectorRequirement {
        #[keep] key: "key",
        #[keep] operator: "operator",
        values: "values",
    }
    discoveryv1::ForZone {
        #[keep] name: "name",
    }
    discoveryv1::ForNode {
        #[keep] name: "name",
    }
    authorizationv1::FieldSelectorAttributes {
        raw_selector: "rawSelector",
        requirements: "requirements",
    }
    authorizationv1::LabelSelectorAttributes {
        raw_selector: "rawSelector",
        requirements: "requirements",
    }
    metav1::FieldSelectorRequirement {
        #[keep] key: "key",
        #[keep] operator: "operator",
        values: "values",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::convert::ToJson;
    use super::*;

    #[test]
    fn lease_times_and_object_meta() {
        let lease = coordinationv1::Lease {
            metadata: Some(metav1::ObjectMeta {
                name: Some("node-a".to_owned()),
                creation_timestamp: Some(metav1::Time {
                    seconds: Some(1_764_427_876),
                    nanos: Some(0),
                }),
                deletion_grace_period_seconds: Some(0),
                generation: Some(0),
                ..Default::default()
            }),
            spec: Some(coordinationv1::LeaseSpec {
                holder_identity: Some("node-a".to_owned()),
                lease_duration_seconds: Some(40),
                acquire_time: Some(metav1::MicroTime::default()),
                renew_time: Some(metav1::MicroTime {
                    seconds: Some(1_764_427_876),
                    nanos: Some(250_000_000),
                }),
                ..Default::default()
            }),
        };
        let want = json!({
            "metadata": {
                "name": "node-a",
                "creationTimestamp": "2025-11-29T14:51:16Z",
                "deletionGracePeriodSeconds": 0,
            },
            "spec": {
                "holderIdentity": "node-a",
                "leaseDurationSeconds": 40,
                "renewTime": "2025-11-29T14:51:16.250000Z",
            },
        });
        assert_eq!(lease.to_json().ok(), Some(want));
    }

    #[test]
    fn managed_fields_embed_their_json() {
        let meta = metav1::ObjectMeta {
            managed_fields: vec![metav1::ManagedFieldsEntry {
                manager: Some("kubectl-create".to_owned()),
                operation: Some("Update".to_owned()),
                fields_type: Some("FieldsV1".to_owned()),
                fields_v1: Some(metav1::FieldsV1 {
                    raw: Some(br#"{"f:data":{".":{}}}"#.to_vec()),
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let want = json!({"managedFields": [{
            "manager": "kubectl-create",
            "operation": "Update",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {".": {}}},
        }]});
        assert_eq!(meta.to_json().ok(), Some(want));
    }
}
