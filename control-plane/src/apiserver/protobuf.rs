//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`).
//!
//! kubectl 1.32's typed clients (`kubectl create deployment|namespace|configmap|…`, typed
//! deletes) send protobuf and do not fall back to JSON on a 415, so the API server turns these
//! bodies into the JSON the same client would have sent, and handles them like any JSON body.
//!
//! A body is the magic `k8s\0` followed by a `runtime.Unknown` envelope that names the object's
//! apiVersion and kind and carries the object's own protobuf bytes in `raw`. The object is
//! decoded with the k8s-pb message type for its kind and converted field by field (see
//! `convert` for the presence rules). The field listings live in the submodules and are checked
//! for completeness by the compiler: every field of every message reachable from a supported
//! kind is converted, none is dropped.
//!
//! Field numbers the k8s-pb 0.7 schema (Kubernetes 1.33) does not know are skipped by prost, as
//! they are by the Go decoder of the real API server.

mod apps;
mod convert;
mod core_v1;
mod meta;
mod pod;
mod volume;

use k8s_pb::api::apps::v1 as appsv1;
use k8s_pb::api::authorization::v1 as authorizationv1;
use k8s_pb::api::batch::v1 as batchv1;
use k8s_pb::api::coordination::v1 as coordinationv1;
use k8s_pb::api::core::v1 as corev1;
use k8s_pb::api::discovery::v1 as discoveryv1;
use k8s_pb::api::node::v1 as nodev1;
use k8s_pb::api::policy::v1 as policyv1;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as metav1;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message;
use serde_json::{Map, Value};

use convert::ToJson;

/// The four bytes (`"k8s\0"`) that start every Kubernetes protobuf body.
pub const MAGIC: [u8; 4] = [0x6b, 0x38, 0x73, 0x00];

/// The content type envelopes may name for their `raw` bytes; empty means the same.
const PROTOBUF_CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Group versions that register `DeleteOptions`: `metav1.AddToGroupVersion` adds it to every
/// group version, and a typed client may encode it in its own (`apps/v1` for a Deployment).
const DELETE_OPTIONS_VERSIONS: &[&str] = &[
    "v1",
    "meta.k8s.io/v1",
    "apps/v1",
    "batch/v1",
    "coordination.k8s.io/v1",
    "node.k8s.io/v1",
    "discovery.k8s.io/v1",
    "policy/v1",
    "authorization.k8s.io/v1",
];

/// Why a protobuf request body could not be turned into JSON.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0` (this includes an empty body).
    #[error(
        "protobuf body of {len} bytes does not start with the kubernetes magic bytes 6b 38 73 00"
    )]
    MissingMagic {
        /// Length of the body that was received.
        len: usize,
    },
    /// The `runtime.Unknown` envelope after the magic is not valid protobuf.
    #[error("cannot decode the protobuf envelope (runtime.Unknown): {source}")]
    Envelope {
        /// What prost reported.
        source: prost::DecodeError,
    },
    /// The envelope does not say which kind of object it carries.
    #[error("protobuf envelope has an empty apiVersion or kind (apiVersion {api_version:?}, kind {kind:?})")]
    MissingTypeMeta {
        /// The apiVersion found, possibly empty.
        api_version: String,
        /// The kind found, possibly empty.
        kind: String,
    },
    /// The envelope's object is compressed or otherwise encoded.
    #[error("protobuf envelope content encoding {encoding:?} is not supported; send the object unencoded")]
    UnsupportedEncoding {
        /// The envelope's `contentEncoding`.
        encoding: String,
    },
    /// The envelope's object is not protobuf.
    #[error("protobuf envelope content type {content_type:?} is not supported; send {PROTOBUF_CONTENT_TYPE}")]
    UnsupportedContentType {
        /// The envelope's `contentType`.
        content_type: String,
    },
    /// The server has no protobuf decoder for this kind; it answers 415 with this message.
    #[error("protobuf request bodies of kind {kind:?} in {api_version:?} are not supported; send application/json")]
    UnsupportedKind {
        /// The envelope's apiVersion.
        api_version: String,
        /// The envelope's kind.
        kind: String,
    },
    /// The object bytes are not a valid protobuf message of the named kind.
    #[error("cannot decode protobuf {kind} ({api_version}): {source}")]
    Object {
        /// The envelope's apiVersion.
        api_version: String,
        /// The envelope's kind.
        kind: String,
        /// What prost reported.
        source: prost::DecodeError,
    },
    /// A decoded value has no JSON form (a time outside years 0–9999, a bad IntOrString, …).
    #[error("invalid {type_name} in protobuf body: {reason}")]
    InvalidValue {
        /// The apimachinery type holding the value.
        type_name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Decodes a Kubernetes protobuf body into the object's Kubernetes JSON form, with
/// `apiVersion` and `kind` set from the envelope.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body
        .strip_prefix(&MAGIC)
        .ok_or(ProtobufError::MissingMagic { len: body.len() })?;
    let Unknown {
        type_meta,
        raw,
        content_encoding,
        content_type,
    } = Unknown::decode(envelope).map_err(|source| ProtobufError::Envelope { source })?;

    let encoding = content_encoding.unwrap_or_default();
    if !encoding.is_empty() {
        return Err(ProtobufError::UnsupportedEncoding { encoding });
    }
    let content_type = content_type.unwrap_or_default();
    if !content_type.is_empty() && content_type != PROTOBUF_CONTENT_TYPE {
        return Err(ProtobufError::UnsupportedContentType { content_type });
    }
    let TypeMeta { api_version, kind } = type_meta.unwrap_or_default();
    let (api_version, kind) = (api_version.unwrap_or_default(), kind.unwrap_or_default());
    if api_version.is_empty() || kind.is_empty() {
        return Err(ProtobufError::MissingTypeMeta { api_version, kind });
    }

    let object = object_json(&api_version, &kind, raw.as_deref().unwrap_or_default())?;
    let mut out = Map::new();
    out.insert("apiVersion".to_owned(), Value::String(api_version));
    out.insert("kind".to_owned(), Value::String(kind));
    if let Value::Object(fields) = object {
        out.extend(fields);
    }
    Ok(Value::Object(out))
}

/// Decodes an object's protobuf bytes as one k8s-pb message type.
type Decoder = fn(&[u8]) -> Result<Box<dyn ToJson>, prost::DecodeError>;

fn decode_as<T: Message + Default + ToJson + 'static>(
    raw: &[u8],
) -> Result<Box<dyn ToJson>, prost::DecodeError> {
    Ok(Box::new(T::decode(raw)?))
}

/// Picks the k8s-pb type for an envelope's apiVersion and kind and converts `raw` with it.
fn object_json(api_version: &str, kind: &str, raw: &[u8]) -> Result<Value, ProtobufError> {
    let decoder: Decoder = match (api_version, kind) {
        ("v1", "Namespace") => decode_as::<corev1::Namespace>,
        ("v1", "ConfigMap") => decode_as::<corev1::ConfigMap>,
        ("v1", "Secret") => decode_as::<corev1::Secret>,
        ("v1", "Service") => decode_as::<corev1::Service>,
        ("v1", "Pod") => decode_as::<corev1::Pod>,
        ("v1", "Node") => decode_as::<corev1::Node>,
        ("v1", "Endpoints") => decode_as::<corev1::Endpoints>,
        ("v1", "ServiceAccount") => decode_as::<corev1::ServiceAccount>,
        ("v1", "ReplicationController") => decode_as::<corev1::ReplicationController>,
        ("v1", "Event") => decode_as::<corev1::Event>,
        ("apps/v1", "Deployment") => decode_as::<appsv1::Deployment>,
        ("apps/v1", "ReplicaSet") => decode_as::<appsv1::ReplicaSet>,
        ("apps/v1", "DaemonSet") => decode_as::<appsv1::DaemonSet>,
        ("apps/v1", "StatefulSet") => decode_as::<appsv1::StatefulSet>,
        ("batch/v1", "Job") => decode_as::<batchv1::Job>,
        ("coordination.k8s.io/v1", "Lease") => decode_as::<coordinationv1::Lease>,
        ("node.k8s.io/v1", "RuntimeClass") => decode_as::<nodev1::RuntimeClass>,
        ("discovery.k8s.io/v1", "EndpointSlice") => decode_as::<discoveryv1::EndpointSlice>,
        ("policy/v1", "Eviction") => decode_as::<policyv1::Eviction>,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => {
            decode_as::<authorizationv1::SelfSubjectAccessReview>
        }
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => {
            decode_as::<authorizationv1::SelfSubjectRulesReview>
        }
        (version, "DeleteOptions") if DELETE_OPTIONS_VERSIONS.contains(&version) => {
            decode_as::<metav1::DeleteOptions>
        }
        _ => {
            return Err(ProtobufError::UnsupportedKind {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
            })
        }
    };
    let message = decoder(raw).map_err(|source| ProtobufError::Object {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        source,
    })?;
    message.to_json()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_pb::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
    use serde_json::json;

    use super::*;

    fn envelope_with(type_meta: Option<TypeMeta>, raw: Vec<u8>, encoding: &str) -> Vec<u8> {
        let unknown = Unknown {
            type_meta,
            raw: Some(raw),
            content_encoding: Some(encoding.to_owned()),
            content_type: Some(String::new()),
        };
        let mut body = MAGIC.to_vec();
        body.extend(unknown.encode_to_vec());
        body
    }

    fn envelope(api_version: &str, kind: &str, object: &impl Message) -> Vec<u8> {
        let type_meta = TypeMeta {
            api_version: Some(api_version.to_owned()),
            kind: Some(kind.to_owned()),
        };
        envelope_with(Some(type_meta), object.encode_to_vec(), "")
    }

    fn labels(app: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("app".to_owned(), app.to_owned())])
    }

    fn s(value: &str) -> Option<String> {
        Some(value.to_owned())
    }

    /// Object metadata as gogo-protobuf writes it: unset strings as "", an empty
    /// creationTimestamp message and generation 0.
    fn meta(name: &str, namespace: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: s(name),
            generate_name: s(""),
            namespace: s(namespace),
            self_link: s(""),
            uid: s(""),
            resource_version: s(""),
            generation: Some(0),
            creation_timestamp: Some(Time::default()),
            labels,
            ..Default::default()
        }
    }

    /// What `kubectl create deployment d3 --image=nginx:1.27 --replicas=2 --port=80` sends.
    fn kubectl_deployment() -> appsv1::Deployment {
        let container = corev1::Container {
            name: s("nginx"),
            image: s("nginx:1.27"),
            working_dir: s(""),
            ports: vec![corev1::ContainerPort {
                name: s(""),
                host_port: Some(0),
                container_port: Some(80),
                protocol: s(""),
                host_ip: s(""),
            }],
            resources: Some(corev1::ResourceRequirements::default()),
            termination_message_path: s(""),
            termination_message_policy: s(""),
            image_pull_policy: s(""),
            stdin: Some(false),
            stdin_once: Some(false),
            tty: Some(false),
            ..Default::default()
        };
        appsv1::Deployment {
            metadata: Some(meta("d3", "", labels("d3"))),
            spec: Some(appsv1::DeploymentSpec {
                replicas: Some(2),
                selector: Some(LabelSelector {
                    match_labels: labels("d3"),
                    match_expressions: Vec::new(),
                }),
                template: Some(corev1::PodTemplateSpec {
                    metadata: Some(meta("", "", labels("d3"))),
                    spec: Some(corev1::PodSpec {
                        containers: vec![container],
                        restart_policy: s(""),
                        dns_policy: s(""),
                        service_account_name: s(""),
                        host_network: Some(false),
                        ..Default::default()
                    }),
                }),
                strategy: Some(appsv1::DeploymentStrategy {
                    r#type: s(""),
                    rolling_update: None,
                }),
                min_ready_seconds: Some(0),
                paused: Some(false),
                ..Default::default()
            }),
            status: Some(appsv1::DeploymentStatus {
                observed_generation: Some(0),
                replicas: Some(0),
                updated_replicas: Some(0),
                ready_replicas: Some(0),
                available_replicas: Some(0),
                unavailable_replicas: Some(0),
                collision_count: None,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn kubectl_create_deployment_body_becomes_its_json() {
        let body = envelope("apps/v1", "Deployment", &kubectl_deployment());
        let want = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d3", "labels": {"app": "d3"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "d3"}},
                "template": {
                    "metadata": {"labels": {"app": "d3"}},
                    "spec": {"containers": [{
                        "name": "nginx",
                        "image": "nginx:1.27",
                        "ports": [{"containerPort": 80}],
                        "resources": {},
                    }]},
                },
                "strategy": {},
            },
            "status": {},
        });
        let got = decode(&body).expect("deployment body decodes");
        assert_eq!(got, want);
        let keys: Vec<&String> = got
            .as_object()
            .map(|o| o.keys().take(2).collect())
            .unwrap_or_default();
        assert_eq!(keys, ["apiVersion", "kind"]);
    }

    #[test]
    fn pointer_fields_keep_zero_values() {
        let mut deployment = kubectl_deployment();
        if let Some(spec) = deployment.spec.as_mut() {
            spec.replicas = Some(0);
            spec.revision_history_limit = Some(0);
            spec.paused = Some(true);
        }
        let got = decode(&envelope("apps/v1", "Deployment", &deployment)).expect("decodes");
        assert_eq!(got["spec"]["replicas"], json!(0));
        assert_eq!(got["spec"]["revisionHistoryLimit"], json!(0));
        assert_eq!(got["spec"]["paused"], json!(true));
        assert!(got["spec"].get("minReadySeconds").is_none());
        assert!(got["spec"].get("progressDeadlineSeconds").is_none());
    }

    #[test]
    fn configmap_data_keeps_empty_values() {
        let config_map = corev1::ConfigMap {
            metadata: Some(meta("cfg", "default", BTreeMap::new())),
            data: BTreeMap::from([
                ("a".to_owned(), "1".to_owned()),
                ("empty".to_owned(), String::new()),
            ]),
            binary_data: BTreeMap::from([("bin".to_owned(), vec![1, 2, 3])]),
            immutable: None,
        };
        let got = decode(&envelope("v1", "ConfigMap", &config_map)).expect("decodes");
        let want = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "default"},
            "data": {"a": "1", "empty": ""},
            "binaryData": {"bin": "AQID"},
        });
        assert_eq!(got, want);
    }

    #[test]
    fn secret_bytes_become_base64() {
        let secret = corev1::Secret {
            metadata: Some(meta("s1", "", BTreeMap::new())),
            data: BTreeMap::from([("key".to_owned(), vec![0, 1, 2, 0xff])]),
            r#type: s("Opaque"),
            string_data: BTreeMap::new(),
            immutable: Some(false),
        };
        let got = decode(&envelope("v1", "Secret", &secret)).expect("decodes");
        let want = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s1"},
            "data": {"key": "AAEC/w=="},
            "type": "Opaque",
            "immutable": false,
        });
        assert_eq!(got, want);
    }

    #[test]
    fn namespace_with_empty_spec_and_status() {
        let namespace = corev1::Namespace {
            metadata: Some(meta("ns1", "", BTreeMap::new())),
            spec: Some(corev1::NamespaceSpec::default()),
            status: Some(corev1::NamespaceStatus {
                phase: s(""),
                conditions: Vec::new(),
            }),
        };
        let got = decode(&envelope("v1", "Namespace", &namespace)).expect("decodes");
        let want = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "ns1"},
            "spec": {},
            "status": {},
        });
        assert_eq!(got, want);
    }

    #[test]
    fn delete_options_in_any_registered_group_version() {
        let options = metav1::DeleteOptions {
            grace_period_seconds: Some(0),
            preconditions: Some(metav1::Preconditions {
                uid: s("5f1c"),
                resource_version: None,
            }),
            propagation_policy: s("Background"),
            ..Default::default()
        };
        for version in ["meta.k8s.io/v1", "v1", "apps/v1"] {
            let got = decode(&envelope(version, "DeleteOptions", &options)).expect("decodes");
            let want = json!({
                "apiVersion": version,
                "kind": "DeleteOptions",
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": "5f1c"},
                "propagationPolicy": "Background",
            });
            assert_eq!(got, want);
        }
        let err = decode(&envelope("example.com/v1", "DeleteOptions", &options));
        assert!(matches!(err, Err(ProtobufError::UnsupportedKind { .. })));
    }

    #[test]
    fn bodies_without_the_magic_are_rejected() {
        let valid = envelope("v1", "Namespace", &corev1::Namespace::default());
        for body in [&b""[..], b"k8s", b"{\"kind\":\"Namespace\"}", &valid[4..]] {
            assert!(
                matches!(decode(body), Err(ProtobufError::MissingMagic { len }) if len == body.len()),
                "{body:?}"
            );
        }
    }

    #[test]
    fn unknown_kinds_are_unsupported() {
        let body = envelope("batch/v1", "CronJob", &corev1::Namespace::default());
        let err = decode(&body).expect_err("cronjob is not decoded");
        assert_eq!(
            err.to_string(),
            "protobuf request bodies of kind \"CronJob\" in \"batch/v1\" are not supported; send application/json"
        );
        let body = envelope("v2", "Namespace", &corev1::Namespace::default());
        assert!(matches!(
            decode(&body),
            Err(ProtobufError::UnsupportedKind { .. })
        ));
    }

    #[test]
    fn envelopes_without_type_or_with_encoding_are_rejected() {
        assert!(matches!(
            decode(&envelope_with(None, Vec::new(), "")),
            Err(ProtobufError::MissingTypeMeta { .. })
        ));
        let type_meta = TypeMeta {
            api_version: s("v1"),
            kind: s("Namespace"),
        };
        assert!(matches!(
            decode(&envelope_with(Some(type_meta), Vec::new(), "gzip")),
            Err(ProtobufError::UnsupportedEncoding { encoding }) if encoding == "gzip"
        ));
    }

    #[test]
    fn garbage_object_bytes_are_rejected() {
        let type_meta = TypeMeta {
            api_version: s("apps/v1"),
            kind: s("Deployment"),
        };
        // Field 1 (metadata) declared 100 bytes long with 2 present; then a bad wire type.
        for raw in [
            vec![0x0a, 100, 1, 2],
            vec![0x0f, 0xff, 0xff],
            vec![0xff; 12],
        ] {
            let body = envelope_with(Some(type_meta.clone()), raw, "");
            assert!(
                matches!(decode(&body), Err(ProtobufError::Object { ref kind, .. }) if kind == "Deployment"),
                "{body:?}"
            );
        }
        // metadata.name (field 1 of field 1) holding invalid UTF-8.
        let body = envelope_with(Some(type_meta), vec![0x0a, 3, 0x0a, 1, 0xff], "");
        assert!(matches!(decode(&body), Err(ProtobufError::Object { .. })));
    }

    #[test]
    fn invalid_values_are_rejected_not_dropped() {
        let mut deployment = kubectl_deployment();
        if let Some(meta) = deployment.metadata.as_mut() {
            meta.creation_timestamp = Some(Time {
                seconds: Some(i64::MAX),
                nanos: None,
            });
        }
        let body = envelope("apps/v1", "Deployment", &deployment);
        assert!(matches!(
            decode(&body),
            Err(ProtobufError::InvalidValue {
                type_name: "Time",
                ..
            })
        ));
    }

    #[test]
    fn truncated_and_corrupted_bodies_never_panic() {
        let body = envelope("apps/v1", "Deployment", &kubectl_deployment());
        let mut rejected = 0;
        for len in 0..body.len() {
            if decode(&body[..len]).is_err() {
                rejected += 1;
            }
        }
        // Only cuts at the envelope's own field boundaries can still parse.
        assert_eq!(rejected, body.len() - 3);
        for index in 0..body.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut corrupted = body.clone();
                if let Some(byte) = corrupted.get_mut(index) {
                    *byte ^= flip;
                }
                let _ = decode(&corrupted);
            }
        }
    }
}
