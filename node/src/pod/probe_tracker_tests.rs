use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Container;
use serde_json::json;

use super::*;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn fail() -> ProbeOutcome {
    ProbeOutcome::Failure("refused".into())
}

fn container(probes: serde_json::Value) -> Container {
    let mut value = json!({"name": "app", "image": "i"});
    if let (Some(target), Some(extra)) = (value.as_object_mut(), probes.as_object()) {
        target.extend(extra.clone());
    }
    serde_json::from_value(value).unwrap_or_default()
}

#[test]
fn probes_wait_for_the_initial_delay_then_run_every_period() {
    let start = Instant::now();
    let c = container(
        json!({"readinessProbe": {"tcpSocket": {"port": 80}, "initialDelaySeconds": 5, "periodSeconds": 3}}),
    );
    let mut tracker = ProbeTracker::new(
        ProbeKind::Readiness,
        c.readiness_probe.as_ref().unwrap_or(&Probe::default()),
        start,
    );
    assert!(!tracker.due(start + secs(4)));
    assert!(tracker.due(start + secs(5)));
    tracker.record(&ProbeOutcome::Success, start + secs(5));
    assert!(!tracker.due(start + secs(7)));
    assert!(tracker.due(start + secs(8)));
    // Defaults: a 10 s period.
    let mut default = ProbeTracker::new(ProbeKind::Liveness, &Probe::default(), start);
    assert!(default.due(start));
    default.record(&ProbeOutcome::Success, start);
    assert!(!default.due(start + secs(9)) && default.due(start + secs(10)));
}

#[test]
fn readiness_flips_after_its_thresholds() {
    let start = Instant::now();
    let c = container(
        json!({"readinessProbe": {"httpGet": {"port": 80}, "successThreshold": 2, "failureThreshold": 2}}),
    );
    let mut probes = ContainerProbes::new(&c, start);
    assert!(!probes.ready(), "not ready before a probe passes");
    let mut at = start;
    let mut record = |outcome: ProbeOutcome| {
        at += secs(10);
        probes.record(ProbeKind::Readiness, &outcome, at)
    };
    assert_eq!(record(ProbeOutcome::Success), None);
    assert_eq!(record(ProbeOutcome::Success), Some(Transition::Ready));
    assert_eq!(record(ProbeOutcome::Success), None);
    assert_eq!(record(fail()), None);
    assert_eq!(record(ProbeOutcome::Unsupported("exec".into())), None);
    assert_eq!(record(fail()), Some(Transition::NotReady));
    assert_eq!(record(fail()), None);
}

#[test]
fn liveness_fails_after_three_failures_and_then_holds() {
    let start = Instant::now();
    let c = container(json!({"livenessProbe": {"tcpSocket": {"port": 80}}}));
    let mut probes = ContainerProbes::new(&c, start);
    assert!(
        probes.ready(),
        "without a readiness probe a started container is ready"
    );
    let mut now = start;
    let mut transitions = Vec::new();
    for outcome in [
        fail(),
        fail(),
        ProbeOutcome::Success,
        fail(),
        fail(),
        fail(),
    ] {
        assert_eq!(probes.due(now), [ProbeKind::Liveness]);
        transitions.push(probes.record(ProbeKind::Liveness, &outcome, now));
        now += secs(10);
    }
    assert_eq!(
        transitions,
        [None, None, None, None, None, Some(Transition::Failed)]
    );
    assert!(
        probes.due(now).is_empty(),
        "no probing until the container is restarted"
    );
}

#[test]
fn the_startup_probe_gates_liveness_and_readiness() {
    let start = Instant::now();
    let c = container(json!({
        "startupProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1, "failureThreshold": 30},
        "livenessProbe": {"tcpSocket": {"port": 80}},
        "readinessProbe": {"tcpSocket": {"port": 80}}
    }));
    let mut probes = ContainerProbes::new(&c, start);
    assert!(!probes.started() && !probes.ready());
    assert_eq!(probes.due(start), [ProbeKind::Startup]);
    assert_eq!(probes.record(ProbeKind::Startup, &fail(), start), None);
    let later = start + secs(1);
    assert_eq!(probes.due(later), [ProbeKind::Startup]);
    assert_eq!(
        probes.record(ProbeKind::Startup, &ProbeOutcome::Success, later),
        Some(Transition::Started)
    );
    assert!(probes.started() && !probes.ready());
    assert_eq!(
        probes.due(later),
        [ProbeKind::Liveness, ProbeKind::Readiness]
    );
    assert_eq!(
        probes.record(ProbeKind::Readiness, &ProbeOutcome::Success, later),
        Some(Transition::Ready)
    );
    assert!(probes.ready());
}

#[test]
fn a_startup_probe_that_keeps_failing_restarts_the_container() {
    let start = Instant::now();
    let c = container(json!({"startupProbe": {"tcpSocket": {"port": 80}, "failureThreshold": 2}}));
    let mut probes = ContainerProbes::new(&c, start);
    assert_eq!(probes.record(ProbeKind::Startup, &fail(), start), None);
    assert_eq!(
        probes.record(ProbeKind::Startup, &fail(), start + secs(10)),
        Some(Transition::Failed)
    );
    assert!(probes.due(start + secs(20)).is_empty());
}
