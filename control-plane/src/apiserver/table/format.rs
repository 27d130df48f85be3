//! Cell formatting shared by the printers: lenient reading of plain JSON, ages
//! (`duration.HumanDuration`), label sets and label selectors, as apimachinery formats them.
//!
//! Readers never fail: a missing field or one of the wrong type reads as the Go zero value, which
//! is what the Go printers see for an absent field.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::chrono::DateTime;
use serde_json::Value;

use super::Context;

/// A point in time or a duration, in nanoseconds (since the Unix epoch for points).
pub(super) type Nanos = i128;

const SECOND: Nanos = 1_000_000_000;
const MINUTE: Nanos = 60 * SECOND;
const HOUR: Nanos = 60 * MINUTE;

/// Go's zero `time.Time` (0001-01-01T00:00:00Z) in seconds since the Unix epoch; Kubernetes
/// treats it as "not set".
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// The value at `path` below `value`, if every step is an object holding the key.
pub(super) fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |current, key| current.get(key))
}

/// The string at `path`, or "" (Go's zero string).
pub(super) fn str_at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    at(value, path).and_then(Value::as_str).unwrap_or("")
}

/// The integer at `path`, if it is one.
pub(super) fn opt_int_at(value: &Value, path: &[&str]) -> Option<i64> {
    at(value, path).and_then(Value::as_i64)
}

/// The integer at `path`, or 0.
pub(super) fn int_at(value: &Value, path: &[&str]) -> i64 {
    opt_int_at(value, path).unwrap_or(0)
}

/// The boolean at `path`, or false.
pub(super) fn bool_at(value: &Value, path: &[&str]) -> bool {
    at(value, path).and_then(Value::as_bool).unwrap_or(false)
}

/// The array at `path`, or an empty slice.
pub(super) fn items_at<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    at(value, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The object at `path`, if there is one: a Go pointer-to-struct field that is not nil.
pub(super) fn object_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    at(value, path).filter(|v| v.is_object())
}

/// How many entries the map (or list) at `path` has, as the printers' `len(...)`.
pub(super) fn len_at(value: &Value, path: &[&str]) -> i64 {
    let len = match at(value, path) {
        Some(Value::Object(map)) => map.len(),
        Some(Value::Array(items)) => items.len(),
        _ => 0,
    };
    i64::try_from(len).unwrap_or(i64::MAX)
}

/// The Name cell: `metadata.name`.
pub(super) fn name(object: &Value) -> Value {
    Value::from(str_at(object, &["metadata", "name"]))
}

/// The Age cell: time since `metadata.creationTimestamp`.
pub(super) fn age(object: &Value, context: &Context) -> Value {
    let created = timestamp(at(object, &["metadata", "creationTimestamp"]));
    Value::from(since(created, context.now))
}

/// `now` in nanoseconds since the Unix epoch (negative before it).
pub(super) fn unix_nanos(now: SystemTime) -> Nanos {
    match now.duration_since(UNIX_EPOCH) {
        Ok(after) => Nanos::try_from(after.as_nanos()).unwrap_or(Nanos::MAX),
        Err(before) => -Nanos::try_from(before.duration().as_nanos()).unwrap_or(Nanos::MAX),
    }
}

/// Parses an RFC 3339 timestamp (`metav1.Time` or `MicroTime`). Null, absent, unparsable and
/// Go's zero time all read as "not set", which the printers show as `<unknown>`.
pub(super) fn timestamp(value: Option<&Value>) -> Option<Nanos> {
    let parsed = DateTime::parse_from_rfc3339(value?.as_str()?).ok()?;
    let seconds = parsed.timestamp();
    if seconds == GO_ZERO_TIME_SECONDS && parsed.timestamp_subsec_nanos() == 0 {
        return None;
    }
    Some(Nanos::from(seconds) * SECOND + Nanos::from(parsed.timestamp_subsec_nanos()))
}

/// `translateTimestampSince`: `<unknown>` for an unset time, else the human duration since it.
pub(super) fn since(time: Option<Nanos>, now: Nanos) -> String {
    match time {
        Some(time) => human_duration(go_duration(now - time)),
        None => "<unknown>".to_string(),
    }
}

/// Clamps to the range of Go's `time.Duration` (int64 nanoseconds), as `time.Sub` saturates.
pub(super) fn go_duration(nanos: Nanos) -> Nanos {
    nanos.clamp(Nanos::from(i64::MIN), Nanos::from(i64::MAX))
}

/// apimachinery's `duration.HumanDuration`: about two significant figures, e.g. `45s`, `5m30s`,
/// `3h12m`, `2d5h`, `3y40d`. A second of clock skew reads as `0s`; more than that as `<invalid>`.
pub(super) fn human_duration(nanos: Nanos) -> String {
    let seconds = nanos / SECOND;
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 2 * 60 {
        return format!("{seconds}s");
    }
    let minutes = nanos / MINUTE;
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % 60, "s");
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = nanos / HOUR;
    if hours < 8 {
        return with_remainder(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return with_remainder(hours / 24, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return with_remainder(hours / 24 / 365, "y", (hours / 24) % 365, "d");
    }
    format!("{}y", hours / 24 / 365)
}

/// "5m" when the remainder is 0, else "5m30s".
fn with_remainder(whole: Nanos, unit: &str, rest: Nanos, rest_unit: &str) -> String {
    if rest == 0 {
        format!("{whole}{unit}")
    } else {
        format!("{whole}{unit}{rest}{rest_unit}")
    }
}

/// `labels.FormatLabels`: `k=v` pairs sorted by key and joined by commas, `<none>` when empty.
pub(super) fn format_labels(map: Option<&Value>) -> String {
    let pairs: BTreeMap<&str, &str> = map
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    let parts: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(",")
}

/// `metav1.LabelSelectorAsSelector(selector).String()`: requirements sorted by key, e.g.
/// `app=web,tier in (a,b),!legacy`. Nil and empty selectors give "". `None` stands for the Go
/// error (an unknown operator, or values that do not fit the operator).
pub(super) fn label_selector(selector: Option<&Value>) -> Option<String> {
    let Some(selector) = selector.filter(|s| !s.is_null()) else {
        return Some(String::new());
    };
    let mut requirements: Vec<(&str, String)> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (key, value) in labels {
            requirements.push((key, format!("{key}={}", value.as_str()?)));
        }
    }
    for expression in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let key = str_at(expression, &["key"]);
        let mut values: Vec<&str> = items_at(expression, &["values"])
            .iter()
            .map(|v| v.as_str().unwrap_or(""))
            .collect();
        values.sort_unstable();
        let text = match str_at(expression, &["operator"]) {
            "In" if !values.is_empty() => format!("{key} in ({})", values.join(",")),
            "NotIn" if !values.is_empty() => format!("{key} notin ({})", values.join(",")),
            "Exists" if values.is_empty() => key.to_string(),
            "DoesNotExist" if values.is_empty() => format!("!{key}"),
            _ => return None,
        };
        requirements.push((key, text));
    }
    if requirements.iter().any(|(key, _)| key.is_empty()) {
        return None;
    }
    requirements.sort_by(|a, b| a.0.cmp(b.0));
    let parts: Vec<String> = requirements.into_iter().map(|(_, text)| text).collect();
    Some(parts.join(","))
}

/// `metav1.FormatLabelSelector`: the selector string, `<none>` when it selects nothing or
/// everything, `<error>` when it is invalid.
pub(super) fn format_label_selector(selector: Option<&Value>) -> String {
    match label_selector(selector) {
        Some(text) if text.is_empty() => "<none>".to_string(),
        Some(text) => text,
        None => "<error>".to_string(),
    }
}

/// `layoutContainerCells`: container names and images of a pod spec, each joined by commas.
pub(super) fn container_cells(pod_spec: Option<&Value>) -> (Value, Value) {
    let containers = pod_spec.map_or(&[][..], |spec| items_at(spec, &["containers"]));
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, &["image"])).collect();
    (Value::from(names.join(",")), Value::from(images.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn human(seconds: i128) -> String {
        human_duration(seconds * SECOND)
    }

    #[test]
    fn human_duration_boundaries() {
        assert_eq!(human_duration(-2 * SECOND), "<invalid>");
        assert_eq!(human_duration(-2 * SECOND + 1), "0s");
        assert_eq!(human_duration(-1), "0s");
        assert_eq!(human(0), "0s");
        assert_eq!(human(45), "45s");
        assert_eq!(human(119), "119s");
        assert_eq!(human(120), "2m");
        assert_eq!(human(330), "5m30s");
        assert_eq!(human(599), "9m59s");
        assert_eq!(human(600), "10m");
        assert_eq!(human(3 * 3600 - 1), "179m");
        assert_eq!(human(3 * 3600), "3h");
        assert_eq!(human(3 * 3600 + 12 * 60 + 59), "3h12m");
        assert_eq!(human(8 * 3600 - 1), "7h59m");
        assert_eq!(human(8 * 3600), "8h");
        assert_eq!(human(48 * 3600 - 1), "47h");
        assert_eq!(human(48 * 3600), "2d");
        assert_eq!(human(53 * 3600), "2d5h");
        assert_eq!(human(8 * 86400 - 1), "7d23h");
        assert_eq!(human(8 * 86400), "8d");
        assert_eq!(human(2 * 365 * 86400 - 1), "729d");
        assert_eq!(human(2 * 365 * 86400), "2y");
        assert_eq!(human(3 * 365 * 86400 + 40 * 86400), "3y40d");
        assert_eq!(human(8 * 365 * 86400 - 1), "7y364d");
        assert_eq!(human(8 * 365 * 86400), "8y");
        // Go's Duration saturates at about 292 years.
        assert_eq!(human_duration(go_duration(Nanos::MAX)), "292y");
    }

    #[test]
    fn timestamps_parse_leniently() {
        let now = 1_704_067_200 * SECOND;
        let at = |s: &str| timestamp(Some(&json!(s)));
        assert_eq!(at("2024-01-01T00:00:00Z"), Some(now));
        assert_eq!(at("2024-01-01T01:00:00+01:00"), Some(now));
        assert_eq!(at("2023-12-31T23:59:59.500000Z"), Some(now - SECOND / 2));
        assert_eq!(at("0001-01-01T00:00:00Z"), None);
        assert_eq!(at("not a time"), None);
        assert_eq!(timestamp(Some(&json!(17))), None);
        assert_eq!(timestamp(None), None);
        assert_eq!(since(None, now), "<unknown>");
        assert_eq!(since(Some(now - 90 * SECOND), now), "90s");
        assert_eq!(since(Some(now + 10 * SECOND), now), "<invalid>");
        assert_eq!(
            unix_nanos(UNIX_EPOCH - std::time::Duration::from_secs(1)),
            -SECOND
        );
    }

    #[test]
    fn labels_are_sorted_and_none_when_empty() {
        assert_eq!(format_labels(Some(&json!({"b": "2", "a": "1"}))), "a=1,b=2");
        assert_eq!(format_labels(Some(&json!({}))), "<none>");
        assert_eq!(format_labels(Some(&json!("a=1"))), "<none>");
        assert_eq!(format_labels(None), "<none>");
    }

    #[test]
    fn selectors_format_like_apimachinery() {
        let selector = json!({
            "matchLabels": {"tier": "web", "app": "shop"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                {"key": "zone", "operator": "NotIn", "values": ["b"]},
                {"key": "legacy", "operator": "DoesNotExist"},
                {"key": "canary", "operator": "Exists", "values": []},
            ],
        });
        assert_eq!(
            format_label_selector(Some(&selector)),
            "app=shop,canary,env in (dev,prod),!legacy,tier=web,zone notin (b)"
        );
        assert_eq!(label_selector(None), Some(String::new()));
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        assert_eq!(format_label_selector(Some(&json!(null))), "<none>");
        let bad_operator = json!({"matchExpressions": [{"key": "a", "operator": "Near"}]});
        assert_eq!(format_label_selector(Some(&bad_operator)), "<error>");
        let in_without_values = json!({"matchExpressions": [{"key": "a", "operator": "In"}]});
        assert_eq!(label_selector(Some(&in_without_values)), None);
        let numeric_label = json!({"matchLabels": {"a": 1}});
        assert_eq!(label_selector(Some(&numeric_label)), None);
    }

    #[test]
    fn container_cells_join_names_and_images() {
        let spec = json!({"containers": [{"name": "app", "image": "shop:1"}, {"name": "log"}]});
        assert_eq!(
            container_cells(Some(&spec)),
            (json!("app,log"), json!("shop:1,"))
        );
        assert_eq!(container_cells(None), (json!(""), json!("")));
    }
}
