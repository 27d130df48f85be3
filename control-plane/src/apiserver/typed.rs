//! Typed work on objects with the k8s-openapi types: decoding into the real Kubernetes struct
//! (so a wrong type anywhere is refused with its path), finding fields the type does not have
//! (strict field validation), and Kubernetes' defaulting. Storage and the wire stay JSON; the
//! typed form is a checkpoint every write passes through.

use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::batch::v1 as batch;
use k8s_openapi::api::coordination::v1 as coordination;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::node::v1 as node;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Why an object could not be decoded into its type.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    /// The field path where decoding failed (`spec.replicas`), if known.
    pub path: String,
    /// What failed.
    pub message: String,
}

/// An object after typed decoding and defaulting.
pub struct Normalized {
    /// The object as Kubernetes would store it.
    pub object: Value,
    /// Fields of the input that the type does not have (`spec.foo`).
    pub unknown_fields: Vec<String>,
}

/// Decodes `value` as `kind`, applies defaults, and re-encodes it. Kinds without a typed form
/// here pass through unchanged.
pub fn normalize(kind: &str, value: Value) -> Result<Normalized, DecodeError> {
    match kind {
        "Pod" => typed::<core::Pod>(value, |p| {
            p.spec.as_mut().into_iter().for_each(default_pod_spec)
        }),
        "Namespace" => typed::<core::Namespace>(value, default_namespace),
        "Node" => typed::<core::Node>(value, |_| {}),
        "Service" => typed::<core::Service>(value, default_service),
        "Endpoints" => typed::<core::Endpoints>(value, |_| {}),
        "ConfigMap" => typed::<core::ConfigMap>(value, |_| {}),
        "Secret" => typed::<core::Secret>(value, default_secret),
        "Event" => typed::<core::Event>(value, |_| {}),
        "ServiceAccount" => typed::<core::ServiceAccount>(value, |_| {}),
        "ReplicationController" => {
            typed::<core::ReplicationController>(value, default_replication_controller)
        }
        "Deployment" => typed::<apps::Deployment>(value, default_deployment),
        "ReplicaSet" => typed::<apps::ReplicaSet>(value, default_replica_set),
        "DaemonSet" => typed::<apps::DaemonSet>(value, default_daemon_set),
        "StatefulSet" => typed::<apps::StatefulSet>(value, default_stateful_set),
        "Job" => typed::<batch::Job>(value, default_job),
        "ControllerRevision" => typed::<apps::ControllerRevision>(value, |_| {}),
        "Lease" => typed::<coordination::Lease>(value, |_| {}),
        "RuntimeClass" => typed::<node::RuntimeClass>(value, |_| {}),
        "EndpointSlice" => typed::<discovery::EndpointSlice>(value, |_| {}),
        _ => Ok(Normalized {
            object: value,
            unknown_fields: Vec::new(),
        }),
    }
}

fn typed<T: DeserializeOwned + Serialize>(
    value: Value,
    defaults: impl FnOnce(&mut T),
) -> Result<Normalized, DecodeError> {
    let mut obj: T = serde_path_to_error::deserialize(&value).map_err(|e| DecodeError {
        path: e.path().to_string(),
        message: format!("{}: {}", e.path(), e.inner()),
    })?;
    let encode = |obj: &T| {
        serde_json::to_value(obj).map_err(|e| DecodeError {
            path: String::new(),
            message: e.to_string(),
        })
    };
    // Unknown fields are found before defaulting, which may legitimately move fields (a
    // Secret's stringData goes into data).
    let mut unknown_fields = Vec::new();
    unknown(&value, &encode(&obj)?, "", &mut unknown_fields);
    defaults(&mut obj);
    let object = encode(&obj)?;
    Ok(Normalized {
        object,
        unknown_fields,
    })
}

/// Collects paths present in `input` but absent from the typed round trip `typed`. A field that
/// the type knows always survives the round trip (possibly defaulted), so what is missing is
/// unknown. Null inputs are skipped: they mean "unset".
fn unknown(input: &Value, typed: &Value, prefix: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match b.get(k) {
                    Some(t) => unknown(v, t, &path, out),
                    None if v.is_null() || is_empty(v) || is_free_form(prefix) => {}
                    None => out.push(path),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                unknown(x, y, &format!("{prefix}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Empty objects and lists disappear in the typed form (`resources: {}` for instance) without
/// being unknown.
fn is_empty(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.is_empty()) || matches!(v, Value::Array(a) if a.is_empty())
}

/// Maps whose keys are data, not fields.
fn is_free_form(prefix: &str) -> bool {
    let last = prefix.rsplit('.').next().unwrap_or(prefix);
    matches!(
        last,
        "labels"
            | "annotations"
            | "data"
            | "binaryData"
            | "stringData"
            | "selector"
            | "matchLabels"
            | "nodeSelector"
            | "capacity"
            | "allocatable"
            | "limits"
            | "requests"
    )
}

fn default_namespace(ns: &mut core::Namespace) {
    let spec = ns.spec.get_or_insert_with(Default::default);
    if spec.finalizers.is_none() {
        spec.finalizers = Some(vec!["kubernetes".into()]);
    }
    let status = ns.status.get_or_insert_with(Default::default);
    if status.phase.is_none() {
        status.phase = Some("Active".into());
    }
}

fn default_secret(secret: &mut core::Secret) {
    if secret.type_.as_deref().unwrap_or("").is_empty() {
        secret.type_ = Some("Opaque".into());
    }
    // stringData is write-only: it is merged into data and never stored (as Kubernetes does).
    if let Some(string_data) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(Default::default);
        for (k, v) in string_data {
            data.insert(k, k8s_openapi::ByteString(v.into_bytes()));
        }
    }
}

fn default_service(svc: &mut core::Service) {
    let spec = svc.spec.get_or_insert_with(Default::default);
    if spec.type_.is_none() {
        spec.type_ = Some("ClusterIP".into());
    }
    if spec.session_affinity.is_none() {
        spec.session_affinity = Some("None".into());
    }
    if spec.internal_traffic_policy.is_none() {
        spec.internal_traffic_policy = Some("Cluster".into());
    }
    for port in spec.ports.iter_mut().flatten() {
        if port.protocol.is_none() {
            port.protocol = Some("TCP".into());
        }
        if port.target_port.is_none() {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }
}

/// Pod spec defaults, as the Kubernetes defaulters set them (v1.32).
pub fn default_pod_spec(spec: &mut core::PodSpec) {
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.security_context.get_or_insert_with(Default::default);
    spec.enable_service_links.get_or_insert(true);
    spec.preemption_policy
        .get_or_insert_with(|| "PreemptLowerPriority".into());
    spec.priority.get_or_insert(0);
    if let Some(account) = &spec.service_account_name {
        spec.service_account.get_or_insert_with(|| account.clone());
    }
    for c in spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut())
    {
        default_container(c);
    }
}

fn default_container(c: &mut core::Container) {
    c.termination_message_path
        .get_or_insert_with(|| "/dev/termination-log".into());
    c.termination_message_policy
        .get_or_insert_with(|| "File".into());
    if c.image_pull_policy.is_none() {
        let image = c.image.as_deref().unwrap_or("");
        let tag_latest = image
            .rsplit_once(':')
            .map(|(_, t)| t == "latest" || t.contains('/'))
            .unwrap_or(true);
        let by_digest = image.contains('@');
        c.image_pull_policy = Some(
            if tag_latest && !by_digest {
                "Always"
            } else {
                "IfNotPresent"
            }
            .into(),
        );
    }
    for p in c.ports.iter_mut().flatten() {
        p.protocol.get_or_insert_with(|| "TCP".into());
    }
    c.resources.get_or_insert_with(Default::default);
}

fn default_template(template: &mut core::PodTemplateSpec) {
    if let Some(spec) = template.spec.as_mut() {
        default_pod_spec(spec);
    }
}

fn default_deployment(d: &mut apps::Deployment) {
    let Some(spec) = d.spec.as_mut() else { return };
    spec.replicas.get_or_insert(1);
    spec.revision_history_limit.get_or_insert(10);
    spec.progress_deadline_seconds.get_or_insert(600);
    let strategy = spec.strategy.get_or_insert_with(Default::default);
    let kind = strategy.type_.get_or_insert_with(|| "RollingUpdate".into());
    if kind == "RollingUpdate" {
        let ru = strategy.rolling_update.get_or_insert_with(Default::default);
        ru.max_surge
            .get_or_insert_with(|| IntOrString::String("25%".into()));
        ru.max_unavailable
            .get_or_insert_with(|| IntOrString::String("25%".into()));
    }
    default_template(&mut spec.template);
}

fn default_replica_set(rs: &mut apps::ReplicaSet) {
    let Some(spec) = rs.spec.as_mut() else { return };
    spec.replicas.get_or_insert(1);
    if let Some(t) = spec.template.as_mut() {
        default_template(t);
    }
}

fn default_replication_controller(rc: &mut core::ReplicationController) {
    let Some(spec) = rc.spec.as_mut() else { return };
    spec.replicas.get_or_insert(1);
    if let Some(t) = spec.template.as_mut() {
        default_template(t);
    }
}

fn default_daemon_set(ds: &mut apps::DaemonSet) {
    let Some(spec) = ds.spec.as_mut() else { return };
    spec.revision_history_limit.get_or_insert(10);
    let strategy = spec.update_strategy.get_or_insert_with(Default::default);
    if strategy.type_.get_or_insert_with(|| "RollingUpdate".into()) == "RollingUpdate" {
        let ru = strategy.rolling_update.get_or_insert_with(Default::default);
        ru.max_unavailable.get_or_insert(IntOrString::Int(1));
        ru.max_surge.get_or_insert(IntOrString::Int(0));
    }
    default_template(&mut spec.template);
}

fn default_stateful_set(sts: &mut apps::StatefulSet) {
    let Some(spec) = sts.spec.as_mut() else {
        return;
    };
    spec.replicas.get_or_insert(1);
    spec.revision_history_limit.get_or_insert(10);
    spec.pod_management_policy
        .get_or_insert_with(|| "OrderedReady".into());
    let strategy = spec.update_strategy.get_or_insert_with(Default::default);
    if strategy.type_.get_or_insert_with(|| "RollingUpdate".into()) == "RollingUpdate" {
        strategy
            .rolling_update
            .get_or_insert_with(Default::default)
            .partition
            .get_or_insert(0);
    }
    default_template(&mut spec.template);
}

fn default_job(job: &mut batch::Job) {
    let Some(spec) = job.spec.as_mut() else {
        return;
    };
    spec.backoff_limit.get_or_insert(6);
    spec.completions.get_or_insert(1);
    spec.parallelism.get_or_insert(1);
    spec.completion_mode
        .get_or_insert_with(|| "NonIndexed".into());
    spec.suspend.get_or_insert(false);
    spec.manual_selector.get_or_insert(false);
    if let Some(pod) = spec.template.spec.as_mut() {
        default_pod_spec(pod);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_a_deployment_like_kubernetes() {
        let d = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},
            "spec":{"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},
            "spec":{"containers":[{"name":"web","image":"nginx:1.27","ports":[{"containerPort":80}]}]}}}});
        let n = normalize("Deployment", d)
            .map_err(|e| e.message)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n.object["spec"]["replicas"], 1);
        assert_eq!(
            n.object["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
            "25%"
        );
        let c = &n.object["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert!(n.unknown_fields.is_empty(), "{:?}", n.unknown_fields);
    }

    #[test]
    fn finds_unknown_fields_and_type_errors_with_their_path() {
        let p = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"any":"x"}},
            "spec":{"containers":[{"name":"c","image":"i","bogus":1}],"extra":{"a":1}}});
        let n = normalize("Pod", p)
            .map_err(|e| e.message)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            n.unknown_fields,
            vec![
                "spec.containers[0].bogus".to_string(),
                "spec.extra".to_string()
            ]
        );

        let bad = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"replicas":"three"}});
        let e = normalize("Deployment", bad).err().map(|e| e.path);
        assert_eq!(e.as_deref(), Some("spec.replicas"));
    }

    #[test]
    fn secret_string_data_moves_into_data() {
        let s = json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"stringData":{"k":"v"}});
        let n = normalize("Secret", s)
            .map_err(|e| e.message)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n.object["data"]["k"], "dg==");
        assert_eq!(n.object["type"], "Opaque");
        assert!(n.object.get("stringData").is_none());
    }
}
