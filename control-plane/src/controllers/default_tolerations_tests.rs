use serde_json::json;

use super::*;

fn pod_with(tolerations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "c", "image": "x"}], "tolerations": tolerations},
    })
}

fn default(key: &str, seconds: i64) -> Value {
    json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds})
}

#[test]
fn adds_both_tolerations_once() {
    let mut pod = json!({"spec": {"containers": []}});
    add_default_tolerations(&mut pod, 300);
    let expected = json!([default(NOT_READY, 300), default(UNREACHABLE, 300)]);
    assert_eq!(pod["spec"]["tolerations"], expected);
    add_default_tolerations(&mut pod, 300);
    assert_eq!(pod["spec"]["tolerations"], expected);
}

#[test]
fn appends_after_existing_tolerations_with_the_given_seconds() {
    let other =
        json!({"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"});
    let mut pod = pod_with(json!([other]));
    add_default_tolerations(&mut pod, 30);
    assert_eq!(
        pod["spec"]["tolerations"],
        json!([other, default(NOT_READY, 30), default(UNREACHABLE, 30)])
    );
}

#[test]
fn respects_a_pod_that_already_tolerates_a_taint() {
    // Its own not-ready toleration (forever) stays as it is; only unreachable is added.
    let own = json!({"key": NOT_READY, "operator": "Exists", "effect": "NoExecute"});
    let mut pod = pod_with(json!([own]));
    add_default_tolerations(&mut pod, 300);
    assert_eq!(
        pod["spec"]["tolerations"],
        json!([own, default(UNREACHABLE, 300)])
    );

    // An empty effect covers NoExecute too.
    let any_effect = json!({"key": UNREACHABLE, "operator": "Exists"});
    let mut pod = pod_with(json!([any_effect]));
    add_default_tolerations(&mut pod, 300);
    assert_eq!(
        pod["spec"]["tolerations"],
        json!([any_effect, default(NOT_READY, 300)])
    );

    // An empty key with Exists tolerates everything: nothing to add.
    let everything = json!({"operator": "Exists"});
    let mut pod = pod_with(json!([everything]));
    add_default_tolerations(&mut pod, 300);
    assert_eq!(pod["spec"]["tolerations"], json!([everything]));
}

#[test]
fn a_toleration_of_another_effect_does_not_count() {
    let no_schedule = json!({"key": NOT_READY, "operator": "Exists", "effect": "NoSchedule"});
    let mut pod = pod_with(json!([no_schedule]));
    add_default_tolerations(&mut pod, 300);
    assert_eq!(
        pod["spec"]["tolerations"],
        json!([
            no_schedule,
            default(NOT_READY, 300),
            default(UNREACHABLE, 300)
        ])
    );
}

#[test]
fn null_tolerations_are_replaced() {
    let mut pod = pod_with(Value::Null);
    add_default_tolerations(&mut pod, DEFAULT_TOLERATION_SECONDS);
    assert_eq!(
        pod["spec"]["tolerations"],
        json!([default(NOT_READY, 300), default(UNREACHABLE, 300)])
    );
}

#[test]
fn malformed_pods_are_left_unchanged() {
    for malformed in [
        json!("not a pod"),
        json!({"metadata": {"name": "no-spec"}}),
        json!({"spec": null}),
        json!({"spec": []}),
        pod_with(json!({"key": "not a list"})),
        pod_with(json!(["not an object"])),
        pod_with(json!([{"key": 7, "effect": "NoExecute"}])),
        pod_with(json!([{"key": NOT_READY, "effect": ["NoExecute"]}])),
    ] {
        let mut pod = malformed.clone();
        add_default_tolerations(&mut pod, 300);
        assert_eq!(pod, malformed);
    }
}
