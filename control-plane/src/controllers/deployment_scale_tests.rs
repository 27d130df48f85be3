use k8s_openapi::api::apps::v1::DeploymentStrategy;

use super::*;
use crate::controllers::deployment::tests::{rolling, web};

fn plan(replicas: i32, strategy: Option<DeploymentStrategy>) -> Result<Plan, String> {
    let mut spec = web(replicas).spec.unwrap();
    spec.strategy = strategy;
    Plan::of(&spec)
}

fn percent(p: &str) -> IntOrString {
    IntOrString::String(p.into())
}

#[test]
fn surge_rounds_up_and_unavailability_down() {
    let p = plan(10, Some(rolling(percent("25%"), percent("25%")))).unwrap();
    assert_eq!((p.max_surge, p.max_unavailable), (3, 2));
    assert_eq!(p.max_total(), 13);
    let p = plan(3, Some(rolling(IntOrString::Int(1), IntOrString::Int(0)))).unwrap();
    assert_eq!((p.max_surge, p.max_unavailable), (1, 0));
}

#[test]
fn bounds_both_zero_allow_one_unavailable() {
    let p = plan(3, Some(rolling(percent("10%"), percent("10%")))).unwrap();
    assert_eq!((p.max_surge, p.max_unavailable), (1, 0));
    let p = plan(3, Some(rolling(percent("0%"), percent("10%")))).unwrap();
    assert_eq!((p.max_surge, p.max_unavailable), (0, 1));
    // Never more unavailable than there are replicas, none at all for zero replicas.
    let p = plan(2, Some(rolling(IntOrString::Int(0), IntOrString::Int(5)))).unwrap();
    assert_eq!(p.max_unavailable, 2);
    let p = plan(0, Some(rolling(IntOrString::Int(0), IntOrString::Int(5)))).unwrap();
    assert_eq!(p.max_unavailable, 0);
}

#[test]
fn defaults_are_the_api_servers() {
    let mut spec = web(4).spec.unwrap();
    spec.strategy = None;
    spec.replicas = None;
    spec.progress_deadline_seconds = None;
    spec.revision_history_limit = None;
    let p = Plan::of(&spec).unwrap();
    assert_eq!(p.strategy, Strategy::RollingUpdate);
    assert_eq!((p.replicas, p.max_surge, p.max_unavailable), (1, 1, 0));
    assert_eq!(p.progress_deadline, Some(600));
    assert_eq!(p.history_limit, Some(10));
    assert!(!p.paused);
}

#[test]
fn recreate_has_no_bounds_and_unknown_strategies_are_refused() {
    let recreate = DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    };
    let p = plan(5, Some(recreate)).unwrap();
    assert_eq!(
        (p.strategy, p.max_surge, p.max_unavailable),
        (Strategy::Recreate, 0, 0)
    );
    let odd = DeploymentStrategy {
        type_: Some("BlueGreen".into()),
        rolling_update: None,
    };
    assert!(plan(5, Some(odd)).is_err());
    assert!(plan(5, Some(rolling(percent("a lot"), percent("1%")))).is_err());
}
