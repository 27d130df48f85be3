use std::time::Duration;

use bramble_api::node_protocol::{node_message, DesiredPod, NodeMessage, PodEvent, PodSnapshot};
use tokio::sync::mpsc;

use super::*;
use crate::agent::AgentConfig;
use crate::oci::client::{ClientConfig, RegistryClient};

/// Nothing listens on port 1: every pull fails at once.
const IMAGE: &str = "127.0.0.1:1/missing:v1";

async fn open_agent(dir: &std::path::Path) -> (Arc<Agent>, mpsc::UnboundedReceiver<Event>) {
    let registry = RegistryClient::new(ClientConfig {
        plain_http_loopback: true,
        ..ClientConfig::default()
    })
    .expect("registry client");
    let config = AgentConfig {
        data_dir: dir.to_path_buf(),
        node_name: "board-1".into(),
        board: "generic".into(),
        max_pods: 10,
        host_ip: "127.0.0.1".into(),
        image_budget: 1 << 20,
        log_max_bytes: 1 << 20,
        log_max_files: 1,
        containerd: None,
        wasm_compile: crate::run::WasmCompile::Local,
    };
    Agent::open(config, registry).await.expect("agent")
}

fn desired_pod() -> DesiredPod {
    let pod = serde_json::json!({
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1"},
        "spec": {"containers": [{"name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent"}]}
    });
    DesiredPod {
        uid: "u-1".into(),
        pod_json: serde_json::to_vec(&pod).expect("json"),
        ..Default::default()
    }
}

fn pod_events(uplink: &mut mpsc::Receiver<NodeMessage>) -> Vec<PodEvent> {
    let mut events = Vec::new();
    while let Ok(message) = uplink.try_recv() {
        if let Some(node_message::Kind::PodEvent(event)) = message.kind {
            events.push(event);
        }
    }
    events
}

/// Waits for the start task's verdict and hands it to the loop.
async fn handle_next(agent: &Arc<Agent>, events: &mut mpsc::UnboundedReceiver<Event>) {
    let event = tokio::time::timeout(Duration::from_secs(30), events.recv())
        .await
        .expect("the start task reports")
        .expect("the channel is open");
    assert!(matches!(event, Event::StartFailed { .. }));
    agent.handle(event);
}

#[tokio::test]
async fn a_failed_pull_is_announced_once_per_back_off_however_many_passes_see_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (agent, mut events) = open_agent(dir.path()).await;
    let (tx, mut uplink) = mpsc::channel(256);
    agent.attach_uplink(tx);
    agent.apply_snapshot(PodSnapshot {
        revision: 1,
        pods: vec![desired_pod()],
    });
    agent.sync_all(); // starts the container
    handle_next(&agent, &mut events).await;
    agent.sync_all(); // the first failure is retried at once, as the kubelet does
    handle_next(&agent, &mut events).await;
    for _ in 0..5 {
        // Every pass sees the container in back-off.
        agent.sync_all();
    }
    let seen = pod_events(&mut uplink);
    let reasons: Vec<&str> = seen.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "Pulling", "Failed", "Failed", // first attempt
            "Pulling", "Failed", "Failed", // second attempt
            "BackOff", "Failed", // the back-off, once
        ]
    );
    let messages: Vec<&str> = seen.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages[0], format!("Pulling image {IMAGE:?}"));
    assert!(messages[1].starts_with(&format!("Failed to pull image {IMAGE:?}: ")));
    assert_eq!(messages[2], "Error: ErrImagePull");
    assert_eq!(messages[6], format!("Back-off pulling image {IMAGE:?}"));
    assert_eq!(messages[7], "Error: ImagePullBackOff");
    for event in &seen {
        assert_eq!(
            (
                event.namespace.as_str(),
                event.pod_name.as_str(),
                event.pod_uid.as_str()
            ),
            ("shop", "web-1", "u-1")
        );
        assert_eq!(event.field_path, "spec.containers{app}");
    }
    assert_eq!(
        seen[6].r#type, "Normal",
        "the kubelet's pull back-off is Normal"
    );
    assert_eq!(seen[7].r#type, "Warning");
}

#[tokio::test]
async fn a_missing_config_map_is_recorded_once_per_retry_not_once_per_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (agent, _events) = open_agent(dir.path()).await;
    let (tx, mut uplink) = mpsc::channel(256);
    agent.attach_uplink(tx);
    let pod = serde_json::json!({
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-2"},
        "spec": {
            "containers": [{"name": "app", "image": IMAGE}, {"name": "side", "image": IMAGE}],
            "volumes": [{"name": "cfg", "configMap": {"name": "settings"}}]
        }
    });
    agent.apply_snapshot(PodSnapshot {
        revision: 1,
        pods: vec![DesiredPod {
            uid: "u-2".into(),
            pod_json: serde_json::to_vec(&pod).expect("json"),
            ..Default::default()
        }],
    });
    for _ in 0..5 {
        agent.sync_all();
        agent.mark("u-2");
    }
    let seen: Vec<(String, String, String)> = pod_events(&mut uplink)
        .into_iter()
        .map(|e| (e.reason, e.message, e.field_path))
        .collect();
    let failed = |field: &str| {
        (
            "Failed".to_string(),
            r#"Error: volume "cfg": configmap "settings" not found"#.to_string(),
            field.to_string(),
        )
    };
    // Both containers would be tried, each once until the retry is due.
    assert_eq!(
        seen,
        [
            failed("spec.containers{app}"),
            failed("spec.containers{side}")
        ]
    );
}

#[tokio::test]
async fn events_are_dropped_while_offline_and_never_take_the_last_places_of_the_uplink() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (agent, _events) = open_agent(dir.path()).await;
    let event = || events::started("app").to_pod(&PodRef::default(), "spec.containers{app}");
    // Offline: nothing to send on, nothing waits.
    agent.send_event(event());
    let (tx, mut uplink) = mpsc::channel(256);
    agent.attach_uplink(tx.clone());
    agent.send_event(event());
    assert_eq!(pod_events(&mut uplink).len(), 1);
    // Fill the queue up to the headroom kept for statuses: events are dropped, not queued.
    for _ in 0..(256 - crate::agent::EVENT_HEADROOM) {
        tx.try_send(NodeMessage::default()).expect("room");
    }
    agent.send_event(event());
    assert_eq!(tx.capacity(), crate::agent::EVENT_HEADROOM);
    assert!(pod_events(&mut uplink).is_empty());
}

#[test]
fn a_stopped_instance_is_announced_once() {
    let spec = Container {
        name: "app".into(),
        ..Default::default()
    };
    let mut slot = Slot::new(&spec, None, "spec.containers{app}".into());
    assert!(!slot.stop_once(), "nothing runs yet");
    slot.phase = Phase::Starting(Stopper::default());
    let passes: Vec<bool> = (0..3).map(|_| slot.stop_once()).collect();
    assert_eq!(passes, [true, false, false]);
}
