use k8s_openapi::api::apps::v1::DeploymentStrategy;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::controllers::context::controller_ref;
use crate::controllers::deployment::tests::{rolling, template, web, Harness, NS};
use crate::controllers::deployment_status::{PAUSED, PROGRESSING, RESUMED};
use crate::controllers::fake::Write;

/// Sum of spec.replicas, and pods available if every ReplicaSet's scale-down removed
/// available pods last (the worst case the controller must allow for).
fn totals(h: &Harness) -> (i32, i32) {
    let rss = h.rss();
    let asked = rss.iter().map(spec_replicas).sum();
    let available = rss
        .iter()
        .map(|rs| available_replicas(rs).min(spec_replicas(rs)))
        .sum();
    (asked, available)
}

fn image(h: &Harness, image: &str) -> String {
    rs_name(&h.rs_running(image))
}

#[tokio::test]
async fn rolling_update_stays_within_surge_and_availability() {
    let mut deployment = web(3);
    deployment.spec.as_mut().unwrap().strategy =
        Some(rolling(IntOrString::Int(1), IntOrString::Int(0)));
    let h = Harness::with(&deployment);
    h.reconcile().await;
    h.settle();
    h.reconcile().await;
    h.take_writes();

    h.edit(|spec| spec.template = template("nginx:2.0"));
    for _ in 0..20 {
        h.reconcile().await;
        let (asked, available) = totals(&h);
        assert!(asked <= 4, "{asked} replicas asked for");
        assert!(available >= 3, "only {available} available");
        // The ReplicaSet controller starts the pods, which become available a step later.
        for rs in h.rss() {
            let size = spec_replicas(&rs);
            h.set_rs_status(&rs_name(&rs), size, available_replicas(&rs).min(size));
        }
        h.reconcile().await;
        let (asked, available) = totals(&h);
        assert!(
            asked <= 4 && available >= 3,
            "{asked} asked, {available} available"
        );
        h.settle();
    }
    let (old, new) = (image(&h, "nginx:1.0"), image(&h, "nginx:2.0"));
    assert_eq!(spec_replicas(&h.rs(&old)), 0);
    assert_eq!(spec_replicas(&h.rs(&new)), 3);
    assert_eq!(
        h.events(),
        vec![
            format!("Scaled up replica set {new} from 0 to 1"),
            format!("Scaled down replica set {old} from 3 to 2"),
            format!("Scaled up replica set {new} from 1 to 2"),
            format!("Scaled down replica set {old} from 2 to 1"),
            format!("Scaled up replica set {new} from 2 to 3"),
            format!("Scaled down replica set {old} from 1 to 0"),
        ]
    );
    let status = h.status();
    assert_eq!(status.updated_replicas, Some(3));
    assert_eq!(status.replicas, Some(3));
    assert_eq!(status.observed_generation, Some(2));
}

#[tokio::test]
async fn unavailable_old_pods_go_first() {
    let mut deployment = web(4);
    deployment.spec.as_mut().unwrap().strategy =
        Some(rolling(IntOrString::Int(0), IntOrString::Int(1)));
    let h = Harness::with(&deployment);
    h.reconcile().await;
    let old = rs_name(&h.rss()[0]);
    // Two of the old pods crash-loop.
    h.set_rs_status(&old, 4, 2);
    h.edit(|spec| spec.template = template("nginx:2.0"));
    h.reconcile().await;
    // No surge: the new ReplicaSet starts empty, and a broken pod goes even though fewer
    // than replicas-maxUnavailable are available.
    let new = image(&h, "nginx:2.0");
    assert_eq!(spec_replicas(&h.rs(&new)), 0);
    assert_eq!(spec_replicas(&h.rs(&old)), 3);
    h.reconcile().await;
    assert_eq!(spec_replicas(&h.rs(&new)), 1);
    assert_eq!(spec_replicas(&h.rs(&old)), 3);
}

#[tokio::test]
async fn recreate_waits_for_old_pods_to_be_gone() {
    let mut deployment = web(3);
    deployment.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    let h = Harness::with(&deployment);
    h.reconcile().await;
    h.settle();
    let old = h.rss()[0].clone();
    let old_name = rs_name(&old);
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(format!("{old_name}-abcde")),
            namespace: Some(NS.into()),
            owner_references: Some(vec![controller_ref(&old)]),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        }),
    };
    h.fake.insert(&pod);
    h.reconcile().await;
    h.take_writes();

    h.edit(|spec| spec.template = template("nginx:2.0"));
    h.reconcile().await;
    assert_eq!(spec_replicas(&h.rs(&old_name)), 0);
    assert_eq!(h.rss().len(), 1, "no new replica set while old pods run");

    // The ReplicaSet controller reports none left, but one is still terminating.
    h.set_rs_status(&old_name, 0, 0);
    let mut terminating = pod.clone();
    terminating.metadata.deletion_timestamp = Some(Time(h.ctx.now()));
    h.fake.insert(&terminating);
    h.reconcile().await;
    assert_eq!(h.rss().len(), 1);

    h.fake.remove::<Pod>(Some(NS), &format!("{old_name}-abcde"));
    h.reconcile().await;
    let new = image(&h, "nginx:2.0");
    assert_eq!(spec_replicas(&h.rs(&new)), 3);
    assert_eq!(
        h.events(),
        vec![
            format!("Scaled down replica set {old_name} from 3 to 0"),
            format!("Scaled up replica set {new} from 0 to 3"),
        ]
    );
}

#[tokio::test]
async fn a_paused_deployment_scales_but_does_not_roll() {
    let h = Harness::with(&web(3));
    h.reconcile().await;
    h.settle();
    h.reconcile().await;
    let current = rs_name(&h.rss()[0]);
    h.take_writes();

    h.edit(|spec| {
        spec.paused = Some(true);
        spec.template = template("nginx:2.0");
    });
    h.reconcile().await;
    assert_eq!(h.rss().len(), 1, "no rollout while paused");
    let (status, reason, message) = h.condition(PROGRESSING).unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("Unknown", PAUSED));
    assert_eq!(message, "Deployment is paused");
    assert!(h.take_writes().iter().all(|w| w.kind() == "Deployment"));

    h.edit(|spec| spec.replicas = Some(5));
    h.reconcile().await;
    assert_eq!(spec_replicas(&h.rs(&current)), 5);
    assert_eq!(h.rss().len(), 1);

    h.edit(|spec| spec.paused = None);
    h.reconcile().await;
    let new = image(&h, "nginx:2.0");
    assert_ne!(new, current);
    assert!(h
        .take_writes()
        .iter()
        .any(|w| matches!(w, Write::Create("ReplicaSet", _))));
}

#[tokio::test]
async fn resuming_is_marked_until_the_rollout_moves() {
    let h = Harness::with(&web(3));
    h.reconcile().await;
    h.edit(|spec| spec.paused = Some(true));
    h.reconcile().await;
    assert_eq!(h.condition(PROGRESSING).unwrap().1, PAUSED);

    h.edit(|spec| spec.paused = Some(false));
    h.reconcile().await;
    let (status, reason, message) = h.condition(PROGRESSING).unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("Unknown", RESUMED));
    assert_eq!(message, "Deployment is resumed");
}

#[tokio::test]
async fn rollout_restart_is_a_new_revision() {
    let h = Harness::with(&web(2));
    h.reconcile().await;
    h.settle();
    h.reconcile().await;
    let first = rs_name(&h.rss()[0]);

    h.edit(|spec| {
        let meta = spec.template.metadata.get_or_insert_with(Default::default);
        meta.annotations = Some(
            [(
                "kubectl.kubernetes.io/restartedAt".to_string(),
                "2026-01-01T00:00:10Z".to_string(),
            )]
            .into(),
        );
    });
    h.reconcile().await;
    let rss = h.rss();
    assert_eq!(rss.len(), 2);
    assert_eq!(rs_name(&rss[0]), first);
    let annotations = rss[1].metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("2")
    );
    assert!(spec_replicas(&rss[1]) > 0);
}

#[tokio::test]
async fn replicas_changed_mid_rollout_scale_every_replica_set_in_proportion() {
    let mut deployment = web(10);
    deployment.spec.as_mut().unwrap().strategy =
        Some(rolling(IntOrString::Int(3), IntOrString::Int(2)));
    let h = Harness::with(&deployment);
    h.reconcile().await;
    h.settle();
    h.edit(|spec| spec.template = template("nginx:2.0"));
    h.reconcile().await;
    let (old, new) = (image(&h, "nginx:1.0"), image(&h, "nginx:2.0"));
    // Surge 3 up, and 2 old ones down as the new ones are not available yet.
    assert_eq!(
        (spec_replicas(&h.rs(&old)), spec_replicas(&h.rs(&new))),
        (8, 3)
    );
    h.set_rs_status(&new, 3, 0);
    h.set_rs_status(&old, 8, 8);

    h.edit(|spec| spec.replicas = Some(15));
    h.reconcile().await;
    let (old_size, new_size) = (spec_replicas(&h.rs(&old)), spec_replicas(&h.rs(&new)));
    assert_eq!(old_size + new_size, 18, "replicas + maxSurge");
    assert!(
        old_size > 8 && new_size > 3,
        "both grow: {old_size}, {new_size}"
    );
    for name in [&old, &new] {
        let annotations = h.rs(name).metadata.annotations.unwrap_or_default();
        assert_eq!(
            annotations["deployment.kubernetes.io/desired-replicas"],
            "15"
        );
        assert_eq!(annotations["deployment.kubernetes.io/max-replicas"], "18");
    }

    h.edit(|spec| spec.replicas = Some(4));
    h.reconcile().await;
    let (old_size, new_size) = (spec_replicas(&h.rs(&old)), spec_replicas(&h.rs(&new)));
    assert_eq!(old_size + new_size, 7, "replicas + maxSurge");
    assert!(old_size > 0 && new_size > 0);
}
