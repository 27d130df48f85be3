//! Field listings for `apps/v1` (Deployment, ReplicaSet, DaemonSet, StatefulSet) and
//! `batch/v1` (Job).
//!
//! See `convert` for the listing syntax and the presence rule behind `#[keep]`.

use k8s_pb::api::apps::v1 as appsv1;
use k8s_pb::api::batch::v1 as batchv1;

use super::convert::to_json;

to_json! {
    appsv1::Deployment {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    appsv1::ReplicaSet {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    appsv1::DaemonSet {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    appsv1::StatefulSet {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    batchv1::Job {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    appsv1::DeploymentSpec {
        #[keep] replicas: "replicas",
        selector: "selector",
        template: "template",
        strategy: "strategy",
        min_ready_seconds: "minReadySeconds",
        #[keep] revision_history_limit: "revisionHistoryLimit",
        paused: "paused",
        #[keep] progress_deadline_seconds: "progressDeadlineSeconds",
    }
    appsv1::DeploymentStatus {
        observed_generation: "observedGeneration",
        replicas: "replicas",
        updated_replicas: "updatedReplicas",
        ready_replicas: "readyReplicas",
        available_replicas: "availableReplicas",
        unavailable_replicas: "unavailableReplicas",
        #[keep] terminating_replicas: "terminatingReplicas",
        conditions: "conditions",
        #[keep] collision_count: "collisionCount",
    }
    appsv1::ReplicaSetSpec {
        #[keep] replicas: "replicas",
        min_ready_seconds: "minReadySeconds",
        selector: "selector",
        template: "template",
    }
    appsv1::ReplicaSetStatus {
        #[keep] replicas: "replicas",
        fully_labeled_replicas: "fullyLabeledReplicas",
        ready_replicas: "readyReplicas",
        available_replicas: "availableReplicas",
        #[keep] terminating_replicas: "terminatingReplicas",
        observed_generation: "observedGeneration",
        conditions: "conditions",
    }
    appsv1::DaemonSetSpec {
        selector: "selector",
        template: "template",
        update_strategy: "updateStrategy",
        min_ready_seconds: "minReadySeconds",
        #[keep] revision_history_limit: "revisionHistoryLimit",
    }
    appsv1::DaemonSetStatus {
        #[keep] current_number_scheduled: "currentNumberScheduled",
        #[keep] number_misscheduled: "numberMisscheduled",
        #[keep] desired_number_scheduled: "desiredNumberScheduled",
        #[keep] number_ready: "numberReady",
        observed_generation: "observedGeneration",
        updated_number_scheduled: "updatedNumberScheduled",
        number_available: "numberAvailable",
        number_unavailable: "numberUnavailable",
        #[keep] collision_count: "collisionCount",
        conditions: "conditions",
    }
    appsv1::StatefulSetSpec {
        #[keep] replicas: "replicas",
        selector: "selector",
        template: "template",
        volume_claim_templates: "volumeClaimTemplates",
        #[keep] service_name: "serviceName",
        pod_management_policy: "podManagementPolicy",
        update_strategy: "updateStrategy",
        #[keep] revision_history_limit: "revisionHistoryLimit",
        min_ready_seconds: "minReadySeconds",
        persistent_volume_claim_retention_policy: "persistentVolumeClaimRetentionPolicy",
        ordinals: "ordinals",
    }
    appsv1::StatefulSetStatus {
        observed_generation: "observedGeneration",
        #[keep] replicas: "replicas",
        ready_replicas: "readyReplicas",
        current_replicas: "currentReplicas",
        updated_replicas: "updatedReplicas",
        current_revision: "currentRevision",
        update_revision: "updateRevision",
        #[keep] collision_count: "collisionCount",
        conditions: "conditions",
        #[keep] available_replicas: "availableReplicas",
    }
    batchv1::JobSpec {
        #[keep] parallelism: "parallelism",
        #[keep] completions: "completions",
        #[keep] active_deadline_seconds: "activeDeadlineSeconds",
        pod_failure_policy: "podFailurePolicy",
        success_policy: "successPolicy",
        #[keep] backoff_limit: "backoffLimit",
        #[keep] backoff_limit_per_index: "backoffLimitPerIndex",
        #[keep] max_failed_indexes: "maxFailedIndexes",
        selector: "selector",
        #[keep] manual_selector: "manualSelector",
        template: "template",
        #[keep] ttl_seconds_after_finished: "ttlSecondsAfterFinished",
        #[keep] completion_mode: "completionMode",
        #[keep] suspend: "suspend",
        #[keep] pod_replacement_policy: "podReplacementPolicy",
        #[keep] managed_by: "managedBy",
    }
    batchv1::JobStatus {
        conditions: "conditions",
        start_time: "startTime",
        completion_time: "completionTime",
        active: "active",
        succeeded: "succeeded",
        failed: "failed",
        #[keep] terminating: "terminating",
        completed_indexes: "completedIndexes",
        #[keep] failed_indexes: "failedIndexes",
        uncounted_terminated_pods: "uncountedTerminatedPods",
        #[keep] ready: "ready",
    }
    appsv1::DeploymentStrategy {
        r#type: "type",
        rolling_update: "rollingUpdate",
    }
    appsv1::DeploymentCondition {
        #[keep] r#type: "type",
        #[keep] status: "status",
        last_update_time: "lastUpdateTime",
        last_transition_time: "lastTransitionTime",
        reason: "reason",
        message: "message",
    }
    appsv1::ReplicaSetCondition {
        #[keep] r#type: "type",
        #[keep] status: "status",
        last_transition_time: "lastTransitionTime",
        reason: "reason",
        message: "message",
    }
    appsv1::DaemonSetUpdateStrategy {
        r#type: "type",
        rolling_update: "rollingUpdate",
    }
    appsv1::DaemonSetCondition {
        #[keep] r#type: "type",
        #[keep] status: "status",
        last_transition_time: "lastTransitionTime",
        reason: "reason",
        message: "message",
    }
    appsv1::StatefulSetUpdateStrategy {
        r#type: "type",
        rolling_update: "rollingUpdate",
    }
    appsv1::StatefulSetPersistentVolumeClaimRetentionPolicy {
        when_deleted: "whenDeleted",
        when_scaled: "whenScaled",
    }
    appsv1::StatefulSetOrdinals {
        #[keep] start: "start",
    }
    appsv1::StatefulSetCondition {
        #[keep] r#type: "type",
        #[keep] status: "status",
        last_transition_time: "lastTransitionTime",
        reason: "reason",
        message: "message",
    }
    batchv1::PodFailurePolicy {
        rules: "rules",
    }
    batchv1::SuccessPolicy {
        rules: "rules",
    }
    batchv1::JobCondition {
        #[keep] r#type: "type",
        #[keep] status: "status",
        last_probe_time: "lastProbeTime",
        last_transition_time: "lastTransitionTime",
        reason: "reason",
        message: "message",
    }
    batchv1::UncountedTerminatedPods {
        succeeded: "succeeded",
        failed: "failed",
    }
    appsv1::RollingUpdateDeployment {
        #[keep] max_unavailable: "maxUnavailable",
        #[keep] max_surge: "maxSurge",
    }
    appsv1::RollingUpdateDaemonSet {
        #[keep] max_unavailable: "maxUnavailable",
        #[keep] max_surge: "maxSurge",
    }
    appsv1::RollingUpdateStatefulSetStrategy {
        #[keep] partition: "partition",
        #[keep] max_unavailable: "maxUnavailable",
    }
    batchv1::PodFailurePolicyRule {
        #[keep] action: "action",
        on_exit_codes: "onExitCodes",
        on_pod_conditions: "onPodConditions",
    }
    batchv1::SuccessPolicyRule {
        #[keep] succeeded_indexes: "succeededIndexes",
        #[keep] succeeded_count: "succeededCount",
    }
    batchv1::PodFailurePolicyOnExitCodesRequirement {
        #[keep] container_name: "containerName",
        #[keep] operator: "operator",
        values: "values",
    }
    batchv1::PodFailurePolicyOnPodConditionsPattern {
        #[keep] r#type: "type",
        #[keep] status: "status",
    }
}
