use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::controllers::deployment::tests::{template, web, Harness};

fn condition_times(h: &Harness, type_: &str) -> (Time, Time) {
    let condition = h
        .status()
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == type_)
        .unwrap();
    (
        condition.last_update_time.unwrap(),
        condition.last_transition_time.unwrap(),
    )
}

#[tokio::test]
async fn a_complete_rollout_reports_every_count_and_both_conditions() {
    let h = Harness::with(&web(3));
    h.reconcile().await;
    let name = rs_name(&h.rss()[0]);
    let status = h.status();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.unavailable_replicas, Some(3));
    assert_eq!(
        h.condition(AVAILABLE).unwrap(),
        (
            "False".into(),
            "MinimumReplicasUnavailable".into(),
            "Deployment does not have minimum availability.".into()
        )
    );
    assert_eq!(
        h.condition(PROGRESSING).unwrap(),
        (
            "True".into(),
            NEW_RS_CREATED.into(),
            format!("Created new replica set \"{name}\"")
        )
    );

    h.fake.advance(Duration::from_secs(5));
    h.set_rs_status(&name, 3, 1);
    h.reconcile().await;
    assert_eq!(
        h.condition(PROGRESSING).unwrap(),
        (
            "True".into(),
            RS_UPDATED.into(),
            format!("ReplicaSet \"{name}\" is progressing.")
        )
    );
    // Same status: the transition time stays, the update time moves.
    let (updated, transitioned) = condition_times(&h, PROGRESSING);
    assert!(updated.0 > transitioned.0);

    h.settle();
    h.reconcile().await;
    let status = h.status();
    assert_eq!(status.replicas, Some(3));
    assert_eq!(status.updated_replicas, Some(3));
    assert_eq!(status.ready_replicas, Some(3));
    assert_eq!(status.available_replicas, Some(3));
    assert_eq!(status.unavailable_replicas, None);
    assert_eq!(status.collision_count, None);
    assert_eq!(
        h.condition(AVAILABLE).unwrap(),
        (
            "True".into(),
            "MinimumReplicasAvailable".into(),
            "Deployment has minimum availability.".into()
        )
    );
    assert_eq!(
        h.condition(PROGRESSING).unwrap(),
        (
            "True".into(),
            NEW_RS_AVAILABLE.into(),
            format!("ReplicaSet \"{name}\" has successfully progressed.")
        )
    );

    // Nothing changed: nothing written, and nothing to wait for.
    h.take_writes();
    assert_eq!(h.reconcile().await, Action::Done);
    assert!(h.take_writes().is_empty());
}

#[tokio::test]
async fn a_stuck_rollout_times_out_at_the_progress_deadline() {
    let mut deployment = web(2);
    deployment.spec.as_mut().unwrap().progress_deadline_seconds = Some(60);
    let h = Harness::with(&deployment);
    h.reconcile().await;
    h.settle();
    h.reconcile().await;

    h.edit(|spec| spec.template = template("nginx:broken"));
    let action = h.reconcile().await;
    assert_eq!(action, Action::RequeueAfter(Duration::from_secs(61)));
    assert_eq!(h.condition(PROGRESSING).unwrap().1, NEW_RS_CREATED);
    // Its pod starts (progress, the deadline restarts) but never becomes ready.
    let new = rs_name(&h.rs_running("nginx:broken"));
    h.set_rs_status(&new, 1, 0);
    h.fake.advance(Duration::from_secs(5));
    assert_eq!(
        h.reconcile().await,
        Action::RequeueAfter(Duration::from_secs(61))
    );
    assert_eq!(h.condition(PROGRESSING).unwrap().1, RS_UPDATED);

    h.fake.advance(Duration::from_secs(30));
    assert_eq!(
        h.reconcile().await,
        Action::RequeueAfter(Duration::from_secs(31))
    );
    assert_eq!(h.condition(PROGRESSING).unwrap().1, RS_UPDATED);

    h.fake.advance(Duration::from_secs(31));
    assert_eq!(h.reconcile().await, Action::Done);
    assert_eq!(
        h.condition(PROGRESSING).unwrap(),
        (
            "False".into(),
            TIMED_OUT.into(),
            format!("ReplicaSet \"{new}\" has timed out progressing.")
        )
    );
    // The old pods keep serving.
    assert_eq!(h.condition(AVAILABLE).unwrap().0, "True");
}

#[tokio::test]
async fn without_a_deadline_there_is_no_progressing_condition() {
    let mut deployment = web(1);
    deployment.spec.as_mut().unwrap().progress_deadline_seconds = Some(i32::MAX);
    let h = Harness::with(&deployment);
    assert_eq!(h.reconcile().await, Action::Done);
    assert!(h.condition(PROGRESSING).is_none());
    assert!(h.condition(AVAILABLE).is_some());
}

#[tokio::test]
async fn replica_set_failures_show_on_the_deployment() {
    let h = Harness::with(&web(1));
    h.reconcile().await;
    let name = rs_name(&h.rss()[0]);
    let mut rs: ReplicaSet = h.rs(&name);
    let status = rs.status.get_or_insert_with(Default::default);
    status.conditions = Some(vec![ReplicaSetCondition {
        type_: REPLICA_FAILURE.into(),
        status: "True".into(),
        reason: Some("FailedCreate".into()),
        message: Some("pods \"web-x\" is forbidden: exceeded quota".into()),
        last_transition_time: Some(Time(h.ctx.now())),
    }]);
    h.fake.insert(&rs);
    h.reconcile().await;
    let (status, reason, _) = h.condition(REPLICA_FAILURE).unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "FailedCreate"));

    h.settle();
    h.reconcile().await;
    assert!(h.condition(REPLICA_FAILURE).is_none());
}

#[test]
fn conditions_keep_their_transition_time_while_their_status_holds() {
    let t0 = k8s_openapi::chrono::DateTime::UNIX_EPOCH;
    let t1 = t0 + k8s_openapi::chrono::Duration::seconds(10);
    let mut status = DeploymentStatus::default();
    set_condition(
        &mut status,
        new_condition(PROGRESSING, "True", NEW_RS_CREATED, "a".into(), t0),
    );
    set_condition(
        &mut status,
        new_condition(PROGRESSING, "True", NEW_RS_CREATED, "b".into(), t1),
    );
    let condition = get_condition(&status, PROGRESSING).unwrap().clone();
    assert_eq!(
        condition.message.as_deref(),
        Some("a"),
        "same reason: unchanged"
    );
    set_condition(
        &mut status,
        new_condition(PROGRESSING, "True", RS_UPDATED, "c".into(), t1),
    );
    let condition = get_condition(&status, PROGRESSING).unwrap().clone();
    assert_eq!(condition.last_transition_time.unwrap().0, t0);
    assert_eq!(condition.last_update_time.unwrap().0, t1);
    set_condition(
        &mut status,
        new_condition(PROGRESSING, "False", TIMED_OUT, "d".into(), t1),
    );
    let condition = get_condition(&status, PROGRESSING).unwrap().clone();
    assert_eq!(condition.last_transition_time.unwrap().0, t1);
    assert_eq!(status.conditions.unwrap().len(), 1);
}
