use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::chrono::TimeZone;

use super::*;
use crate::controllers::pod_disruption::tests::{node, pod, tolerate};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn taint(key: &str, value: Option<&str>, effect: &str, added: Option<DateTime<Utc>>) -> Taint {
    Taint {
        key: key.into(),
        value: value.map(str::to_string),
        effect: effect.into(),
        time_added: added.map(Time),
    }
}

fn toleration(key: &str, operator: Option<&str>, value: Option<&str>, effect: &str) -> Toleration {
    Toleration {
        key: (!key.is_empty()).then(|| key.to_string()),
        operator: operator.map(str::to_string),
        value: value.map(str::to_string),
        effect: (!effect.is_empty()).then(|| effect.to_string()),
        toleration_seconds: None,
    }
}

fn secs(n: i64) -> ChronoDuration {
    ChronoDuration::seconds(n)
}

#[test]
fn tolerations_match_like_kubernetes() {
    let dedicated = taint("dedicated", Some("gpu"), NO_EXECUTE, None);
    assert!(tolerates(
        &toleration("dedicated", None, Some("gpu"), ""),
        &dedicated
    ));
    assert!(tolerates(
        &toleration("dedicated", Some("Equal"), Some("gpu"), NO_EXECUTE),
        &dedicated
    ));
    assert!(!tolerates(
        &toleration("dedicated", Some("Equal"), Some("cpu"), ""),
        &dedicated
    ));
    assert!(tolerates(
        &toleration("dedicated", Some("Exists"), None, ""),
        &dedicated
    ));
    assert!(!tolerates(
        &toleration("dedicated", Some("Exists"), None, NO_SCHEDULE),
        &dedicated
    ));
    assert!(!tolerates(
        &toleration("other", Some("Exists"), None, ""),
        &dedicated
    ));
    // An empty key with Exists tolerates everything.
    assert!(tolerates(
        &toleration("", Some("Exists"), None, ""),
        &dedicated
    ));
    assert!(!tolerates(
        &toleration("dedicated", Some("Gt"), Some("gpu"), ""),
        &dedicated
    ));
}

#[test]
fn an_untolerated_taint_evicts_now() {
    let p = pod("a", "n1", vec![tolerate(NOT_READY, Some(300))]);
    let taints = [taint(UNREACHABLE, None, NO_EXECUTE, Some(t0()))];
    assert_eq!(eviction(&p, &taints, t0()), Eviction::Now);
    assert_eq!(
        eviction(&pod("b", "n1", vec![]), &taints, t0()),
        Eviction::Now
    );
}

#[test]
fn toleration_seconds_count_from_time_added() {
    let p = pod("a", "n1", vec![tolerate(UNREACHABLE, Some(300))]);
    let taints = [taint(UNREACHABLE, None, NO_EXECUTE, Some(t0()))];
    // The pod is older than the taint (bound at the fixture's creation: t0 - 1h).
    let mut p = p;
    p.metadata.creation_timestamp = Some(Time(t0() - secs(3600)));
    assert_eq!(eviction(&p, &taints, t0()), Eviction::At(t0() + secs(300)));
    assert_eq!(
        eviction(&p, &taints, t0() + secs(299)),
        Eviction::At(t0() + secs(300))
    );
    assert_eq!(eviction(&p, &taints, t0() + secs(300)), Eviction::Now);
}

#[test]
fn a_pod_bound_after_the_taint_gets_its_full_toleration() {
    let mut p = pod("a", "n1", vec![tolerate(UNREACHABLE, Some(60))]);
    p.metadata.creation_timestamp = Some(Time(t0() + secs(100)));
    let taints = [taint(UNREACHABLE, None, NO_EXECUTE, Some(t0()))];
    assert_eq!(
        eviction(&p, &taints, t0() + secs(120)),
        Eviction::At(t0() + secs(160))
    );
}

#[test]
fn the_earliest_expiry_wins_and_forever_means_never() {
    let p = pod(
        "a",
        "n1",
        vec![tolerate(NOT_READY, None), tolerate("dedicated", Some(50))],
    );
    let mut p = p;
    p.metadata.creation_timestamp = Some(Time(t0()));
    let forever = [taint(NOT_READY, None, NO_EXECUTE, Some(t0()))];
    assert_eq!(eviction(&p, &forever, t0()), Eviction::Never);
    let both = [
        taint(NOT_READY, None, NO_EXECUTE, Some(t0())),
        taint("dedicated", Some("x"), NO_EXECUTE, Some(t0() + secs(10))),
    ];
    assert_eq!(eviction(&p, &both, t0()), Eviction::At(t0() + secs(60)));
}

#[test]
fn zero_or_negative_seconds_evict_at_once() {
    let mut p = pod("a", "n1", vec![tolerate(UNREACHABLE, Some(-5))]);
    p.metadata.creation_timestamp = Some(Time(t0()));
    let taints = [taint(UNREACHABLE, None, NO_EXECUTE, Some(t0()))];
    assert_eq!(eviction(&p, &taints, t0()), Eviction::Now);
}

#[test]
fn node_helpers_read_taints_and_conditions() {
    let mut n = node("n1", Some("Unknown"));
    assert_eq!(node_condition(&n, "Ready"), Some("Unknown"));
    assert_eq!(node_condition(&n, "DiskPressure"), None);
    assert!(taints_of(&n).is_empty());
    n.spec.as_mut().unwrap().taints = Some(vec![taint(OUT_OF_SERVICE, None, NO_EXECUTE, None)]);
    assert!(has_taint(&n, OUT_OF_SERVICE, NO_EXECUTE));
    assert!(!has_taint(&n, OUT_OF_SERVICE, NO_SCHEDULE));
    assert!(has_taint_key(&n, OUT_OF_SERVICE));
}
