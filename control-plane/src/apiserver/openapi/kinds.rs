//! Which Rust type from k8s-openapi describes each kind Bramble serves, so that its schema can be
//! generated from the crate's schemars support instead of being written by hand.

use k8s_openapi::api::{
    apps, authentication, authorization, autoscaling, batch, coordination, core, discovery, events,
    node, policy,
};
use schemars::{Schema, SchemaGenerator};

/// Generates a kind's schema into a generator's definitions and returns a `$ref` to it.
pub(super) type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// The schema generator for `kind` in `group`/`version` ("" is the core group).
///
/// The table holds every kind in `RESOURCES` and every kind their subresources exchange, plus a
/// few close relatives (CronJob, ControllerRevision, PodDisruptionBudget, events.k8s.io Event,
/// TokenRequest) so that adding them to `RESOURCES` needs no change here. A kind missing from the
/// table makes `build()` fail, which the unit tests catch.
pub(super) fn kind_schema(group: &str, version: &str, kind: &str) -> Option<SchemaFn> {
    let f: SchemaFn = match (group, version, kind) {
        ("", "v1", "Binding") => SchemaGenerator::subschema_for::<core::v1::Binding>,
        ("", "v1", "ConfigMap") => SchemaGenerator::subschema_for::<core::v1::ConfigMap>,
        ("", "v1", "Endpoints") => SchemaGenerator::subschema_for::<core::v1::Endpoints>,
        ("", "v1", "Event") => SchemaGenerator::subschema_for::<core::v1::Event>,
        ("", "v1", "Namespace") => SchemaGenerator::subschema_for::<core::v1::Namespace>,
        ("", "v1", "Node") => SchemaGenerator::subschema_for::<core::v1::Node>,
        ("", "v1", "Pod") => SchemaGenerator::subschema_for::<core::v1::Pod>,
        ("", "v1", "ReplicationController") => {
            SchemaGenerator::subschema_for::<core::v1::ReplicationController>
        }
        ("", "v1", "Secret") => SchemaGenerator::subschema_for::<core::v1::Secret>,
        ("", "v1", "Service") => SchemaGenerator::subschema_for::<core::v1::Service>,
        ("", "v1", "ServiceAccount") => SchemaGenerator::subschema_for::<core::v1::ServiceAccount>,
        ("apps", "v1", "ControllerRevision") => {
            SchemaGenerator::subschema_for::<apps::v1::ControllerRevision>
        }
        ("apps", "v1", "DaemonSet") => SchemaGenerator::subschema_for::<apps::v1::DaemonSet>,
        ("apps", "v1", "Deployment") => SchemaGenerator::subschema_for::<apps::v1::Deployment>,
        ("apps", "v1", "ReplicaSet") => SchemaGenerator::subschema_for::<apps::v1::ReplicaSet>,
        ("apps", "v1", "StatefulSet") => SchemaGenerator::subschema_for::<apps::v1::StatefulSet>,
        ("authentication.k8s.io", "v1", "TokenRequest") => {
            SchemaGenerator::subschema_for::<authentication::v1::TokenRequest>
        }
        ("authorization.k8s.io", "v1", "SelfSubjectAccessReview") => {
            SchemaGenerator::subschema_for::<authorization::v1::SelfSubjectAccessReview>
        }
        ("authorization.k8s.io", "v1", "SelfSubjectRulesReview") => {
            SchemaGenerator::subschema_for::<authorization::v1::SelfSubjectRulesReview>
        }
        ("autoscaling", "v1", "Scale") => SchemaGenerator::subschema_for::<autoscaling::v1::Scale>,
        ("batch", "v1", "CronJob") => SchemaGenerator::subschema_for::<batch::v1::CronJob>,
        ("batch", "v1", "Job") => SchemaGenerator::subschema_for::<batch::v1::Job>,
        ("coordination.k8s.io", "v1", "Lease") => {
            SchemaGenerator::subschema_for::<coordination::v1::Lease>
        }
        ("discovery.k8s.io", "v1", "EndpointSlice") => {
            SchemaGenerator::subschema_for::<discovery::v1::EndpointSlice>
        }
        ("events.k8s.io", "v1", "Event") => SchemaGenerator::subschema_for::<events::v1::Event>,
        ("node.k8s.io", "v1", "RuntimeClass") => {
            SchemaGenerator::subschema_for::<node::v1::RuntimeClass>
        }
        ("policy", "v1", "Eviction") => SchemaGenerator::subschema_for::<policy::v1::Eviction>,
        ("policy", "v1", "PodDisruptionBudget") => {
            SchemaGenerator::subschema_for::<policy::v1::PodDisruptionBudget>
        }
        _ => return None,
    };
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::RESOURCES;
    use schemars::generate::SchemaSettings;

    #[test]
    fn every_served_kind_and_subresource_kind_has_a_schema() {
        for r in RESOURCES {
            assert!(
                kind_schema(r.group, r.version, r.kind).is_some(),
                "{}",
                r.kind
            );
            for s in r
                .subresources
                .iter()
                .filter(|s| !s.kind.is_empty() && s.exchanges_objects())
            {
                assert!(
                    kind_schema(s.group, s.version, s.kind).is_some(),
                    "{}",
                    s.kind
                );
            }
        }
    }

    #[test]
    fn generated_names_are_the_kubernetes_definition_names() {
        let mut generator = SchemaSettings::openapi3().into_generator();
        let deployment = kind_schema("apps", "v1", "Deployment").map(|f| f(&mut generator));
        let reference = deployment
            .as_ref()
            .and_then(|s| s.get("$ref"))
            .and_then(|v| v.as_str());
        assert_eq!(
            reference,
            Some("#/components/schemas/io.k8s.api.apps.v1.Deployment")
        );
        assert!(generator
            .definitions()
            .contains_key("io.k8s.api.core.v1.PodTemplateSpec"));
    }

    #[test]
    fn unknown_kinds_and_wrong_versions_have_none() {
        assert!(kind_schema("", "v1", "Widget").is_none());
        assert!(kind_schema("apps", "v1beta1", "Deployment").is_none());
        assert!(kind_schema("apps", "v1", "Pod").is_none());
    }
}
