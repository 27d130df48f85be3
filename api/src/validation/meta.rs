//! Validation of object metadata (`metadata.name`, `generateName`, labels, annotations) with
//! the per-kind name rules and the field-error wording of the Kubernetes API server.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::{
    is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_path_segment_name,
    is_path_segment_prefix, is_qualified_name, is_valid_label_value, DNS1035_LABEL_MAX_LENGTH,
};

/// Limit on the summed byte length of all annotation keys and values of one object.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
/// CronJob names leave 11 characters for the `-<timestamp>` suffix of the Jobs they create.
pub const CRONJOB_NAME_MAX_LENGTH: usize = DNS1035_LABEL_MAX_LENGTH - 11;

/// Which rule a kind's `metadata.name` must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// A DNS-1123 subdomain: most kinds.
    Dns1123Subdomain,
    /// A DNS-1123 label: Namespace, StatefulSet.
    Dns1123Label,
    /// A DNS-1035 label: Service.
    Dns1035Label,
    /// Anything that is safe as a URL path segment: RBAC kinds and core/v1 Events.
    PathSegment,
}

impl NameRule {
    /// Checks `name` against this rule, returning Kubernetes' messages.
    ///
    /// With `prefix` set the name is a `generateName` prefix: a trailing '-' is allowed because
    /// random characters will follow it, and path segments skip the "may not be '.'" check.
    pub fn check(self, name: &str, prefix: bool) -> Vec<String> {
        let masked;
        let name = if prefix && self != NameRule::PathSegment {
            masked = mask_trailing_dash(name);
            masked.as_str()
        } else {
            name
        };
        match self {
            NameRule::Dns1123Subdomain => is_dns1123_subdomain(name),
            NameRule::Dns1123Label => is_dns1123_label(name),
            NameRule::Dns1035Label => is_dns1035_label(name),
            NameRule::PathSegment if prefix => is_path_segment_prefix(name),
            NameRule::PathSegment => is_path_segment_name(name),
        }
    }
}

/// The rule Kubernetes applies to `metadata.name` of `kind` (the object's `kind` field).
///
/// Unknown kinds, custom resources included, get the DNS-1123 subdomain rule as they do in
/// Kubernetes.
pub fn name_rule_for_kind(kind: &str) -> NameRule {
    match kind {
        "Namespace" | "StatefulSet" => NameRule::Dns1123Label,
        "Service" => NameRule::Dns1035Label,
        // core/v1 Events never had name validation beyond the storage path check.
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" | "Event" => {
            NameRule::PathSegment
        }
        _ => NameRule::Dns1123Subdomain,
    }
}

/// Validates `metadata.name` of a new object of `kind`, returning field errors as
/// Kubernetes prints them (empty when valid).
pub fn validate_object_name(kind: &str, name: &str) -> Vec<String> {
    const PATH: &str = "metadata.name";
    if name.is_empty() {
        return vec![format!(
            "{PATH}: Required value: name or generateName is required"
        )];
    }
    let mut errs: Vec<String> = name_rule_for_kind(kind)
        .check(name, false)
        .into_iter()
        .map(|msg| invalid(PATH, name, &msg))
        .collect();
    if kind == "CronJob" && name.len() > CRONJOB_NAME_MAX_LENGTH {
        errs.push(invalid(
            PATH,
            name,
            &format!("must be no more than {CRONJOB_NAME_MAX_LENGTH} characters"),
        ));
    }
    errs
}

/// Validates `metadata.generateName` of a new object of `kind`, returning field errors.
pub fn validate_generate_name(kind: &str, prefix: &str) -> Vec<String> {
    name_rule_for_kind(kind)
        .check(prefix, true)
        .into_iter()
        .map(|msg| invalid("metadata.generateName", prefix, &msg))
        .collect()
}

/// Validates `metadata.labels`: keys must be qualified names and values label values.
pub fn validate_labels(labels: &Map<String, Value>) -> Vec<String> {
    validate_labels_at("metadata.labels", labels)
}

/// Validates a label map found at `path` (e.g. `spec.template.metadata.labels`).
pub fn validate_labels_at(path: &str, labels: &Map<String, Value>) -> Vec<String> {
    let mut errs = Vec::new();
    for (key, value) in labels {
        errs.extend(
            is_qualified_name(key)
                .iter()
                .map(|msg| invalid(path, key, msg)),
        );
        match value.as_str() {
            Some(v) => errs.extend(
                is_valid_label_value(v)
                    .iter()
                    .map(|msg| invalid(path, v, msg)),
            ),
            None => errs.push(not_a_string(path, key, value)),
        }
    }
    errs
}

/// Validates `metadata.annotations`: keys must be qualified names (case-insensitively) and
/// all keys and values together may not exceed [`TOTAL_ANNOTATION_SIZE_LIMIT`] bytes.
pub fn validate_annotations(annotations: &Map<String, Value>) -> Vec<String> {
    validate_annotations_at("metadata.annotations", annotations)
}

/// Validates an annotation map found at `path`.
pub fn validate_annotations_at(path: &str, annotations: &Map<String, Value>) -> Vec<String> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (key, value) in annotations {
        // Kubernetes checks the lower-cased key, so "Example.COM/Key" is allowed.
        errs.extend(
            is_qualified_name(&key.to_ascii_lowercase())
                .iter()
                .map(|msg| invalid(path, key, msg)),
        );
        match value.as_str() {
            Some(v) => total = total.saturating_add(key.len()).saturating_add(v.len()),
            None => errs.push(not_a_string(path, key, value)),
        }
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(format!(
            "{path}: Too long: may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"
        ));
    }
    errs
}
/// Lets a `generateName` prefix end in '-' by checking a stand-in for the completed name.
///
/// Kubernetes replaces the last *two* bytes by "a" (`name[:len(name)-2] + "a"`), so the
/// character before the dash is never checked; this keeps that quirk for identical verdicts.
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') {
        // A non-ASCII character before the dash fails every rule whether masked or not.
        if let Some(head) = name.get(..name.len() - 2) {
            return format!("{head}a");
        }
    }
    name.to_owned()
}

/// A field error of type "Invalid value" with a string value, printed as Kubernetes does.
fn invalid(path: &str, value: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {}: {detail}", go_quote(value))
}

fn not_a_string(path: &str, key: &str, value: &Value) -> String {
    format!(
        "{path}: Invalid value: {value}: the value of {} must be a string",
        go_quote(key)
    )
}

/// Quotes like Go's `%q`: printable characters stay, quotes, backslashes and control
/// characters are escaped, so that hostile values cannot forge lines in a message.
fn go_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x80 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(m) => m,
            other => panic!("test fixture is not an object: {other}"),
        }
    }

    #[test]
    fn name_rules_per_kind() {
        assert_eq!(name_rule_for_kind("Namespace"), NameRule::Dns1123Label);
        assert_eq!(name_rule_for_kind("Service"), NameRule::Dns1035Label);
        assert_eq!(name_rule_for_kind("StatefulSet"), NameRule::Dns1123Label);
        assert_eq!(name_rule_for_kind("ClusterRole"), NameRule::PathSegment);
        for kind in ["Pod", "ConfigMap", "Secret", "Deployment", "Node", "Widget"] {
            assert_eq!(name_rule_for_kind(kind), NameRule::Dns1123Subdomain);
        }
    }

    #[test]
    fn object_names() {
        assert!(validate_object_name("Pod", "web-1.example").is_empty());
        assert!(validate_object_name("Node", "node-1.local").is_empty());
        assert_eq!(
            validate_object_name("Namespace", "team.a"),
            vec!["metadata.name: Invalid value: \"team.a\": must not contain dots"]
        );
        let errs = validate_object_name("Service", "1web");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("metadata.name: Invalid value: \"1web\": a DNS-1035 label"));
        assert!(validate_object_name("Pod", "1web").is_empty());
        assert_eq!(
            validate_object_name("Pod", ""),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
        assert!(validate_object_name("ClusterRole", "system:aggregate-to-edit").is_empty());
        assert_eq!(
            validate_object_name("Role", "a/b"),
            vec!["metadata.name: Invalid value: \"a/b\": may not contain '/'"]
        );
        let cron = "c".repeat(53);
        assert_eq!(
            validate_object_name("CronJob", &cron),
            vec![format!(
                "metadata.name: Invalid value: \"{cron}\": must be no more than 52 characters"
            )]
        );
        assert!(validate_object_name("CronJob", &"c".repeat(52)).is_empty());
        assert!(validate_object_name("Job", &"c".repeat(53)).is_empty());
    }

    #[test]
    fn hostile_names_are_quoted() {
        let errs = validate_object_name("Pod", "a\"b\nc\u{7}\u{1}\u{85}é");
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("metadata.name: Invalid value: \"a\\\"b\\nc\\a\\x01\\u0085é\": "),
            "{}",
            errs[0]
        );
        let huge = "x".repeat(100_000);
        assert_eq!(validate_object_name("Pod", &huge).len(), 1);
    }

    #[test]
    fn generate_name_allows_trailing_dash() {
        assert!(validate_generate_name("Pod", "web-").is_empty());
        assert!(validate_generate_name("Namespace", "team-").is_empty());
        assert_eq!(validate_generate_name("Pod", "-").len(), 1);
        assert_eq!(validate_generate_name("Pod", "Web-").len(), 1);
        assert!(validate_generate_name("Role", "..").is_empty());
        assert_eq!(validate_generate_name("Role", "a/").len(), 1);
        assert!(validate_generate_name("Pod", "web--").is_empty());
        // Kubernetes never looks at the character before the trailing dash.
        assert!(validate_generate_name("Pod", "x_-").is_empty());
        assert_eq!(validate_generate_name("Pod", "xé-").len(), 1);
    }

    #[test]
    fn label_maps() {
        assert!(validate_labels(&map(json!({"app": "web", "example.com/tier": ""}))).is_empty());
        let errs = validate_labels(&map(json!({"bad key": "ok", "k": "bad value", "n": 5})));
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0]
            .starts_with("metadata.labels: Invalid value: \"bad key\": name part must consist of"));
        assert!(errs[1]
            .starts_with("metadata.labels: Invalid value: \"bad value\": a valid label must be"));
        assert_eq!(
            errs[2],
            "metadata.labels: Invalid value: 5: the value of \"n\" must be a string"
        );
        let errs = validate_labels_at("spec.template.metadata.labels", &map(json!({"-": "x"})));
        assert!(errs[0].starts_with("spec.template.metadata.labels: Invalid value: \"-\""));
    }

    #[test]
    fn annotation_keys_are_case_insensitive() {
        assert!(validate_annotations(&map(json!({
            "Example.COM/Some-Key": "anything at all: {\"json\": true}",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
        })))
        .is_empty());
        let errs = validate_annotations(&map(json!({"a/b/c": "x", "ok": null})));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("metadata.annotations: Invalid value: \"a/b/c\": a qualified name")
        );
    }

    #[test]
    fn annotation_total_size_is_limited() {
        let at_limit = "v".repeat(TOTAL_ANNOTATION_SIZE_LIMIT - 1);
        assert!(validate_annotations(&map(json!({"k": at_limit}))).is_empty());
        let over = "v".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        assert_eq!(
            validate_annotations(&map(json!({"k": over}))),
            vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
    }
}
