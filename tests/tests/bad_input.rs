//! Hostile and malformed requests get a clear 4xx Status and change nothing.

use anyhow::{ensure, Result};
use bramble_tests::{kube_client, Cluster};

#[test]
fn malformed_requests_are_refused_and_change_nothing() -> Result<()> {
    let c = Cluster::start()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = kube_client::client(&c).await?;
        let cms = "/api/v1/namespaces/default/configmaps";
        let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
            ("malformed JSON", "application/json", b"{\"metadata\": {".to_vec(), 400, "not valid JSON"),
            ("malformed YAML", "application/yaml", b"metadata: [\n".to_vec(), 400, "not valid YAML"),
            ("garbage protobuf", "application/vnd.kubernetes.protobuf", b"k8s\0\xff\xff\xff".to_vec(), 400, "protobuf"),
            ("not an object", "application/json", b"[1, 2]".to_vec(), 400, "object"),
            ("wrong kind for the path", "application/json", br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#.to_vec(), 400, "does not match"),
            ("invalid name", "application/json", br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}"#.to_vec(), 422, "metadata.name"),
            ("wrong field type", "application/json", br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":1}}"#.to_vec(), 400, "data"),
            ("unsupported media type", "text/plain", b"hello".to_vec(), 415, "unknown format"),
            ("body over 3 MiB", "application/json", format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"a":"{}"}}}}"#, "x".repeat(3 * 1024 * 1024 + 10)).into_bytes(), 413, "larger than"),
        ];
        for (what, ct, body, want, needle) in cases {
            let (code, status) = kube_client::send_raw(&client, "POST", cms, ct, body).await?;
            ensure!(code == want, "{what}: got {code}, want {want}: {status}");
            ensure!(status["kind"] == "Status" && status["code"] == want, "{what}: not a Status: {status}");
            let msg = status["message"].as_str().unwrap_or_default();
            ensure!(msg.contains(needle), "{what}: message {msg:?} should mention {needle:?}");
        }
        // Strict field validation names the unknown field.
        let (code, status) = kube_client::send_raw(&client, "POST", &format!("{cms}?fieldValidation=Strict"), "application/json", br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"bogus":true}"#.to_vec()).await?;
        ensure!(code == 400 && status["message"].as_str().unwrap_or_default().contains("unknown field \"bogus\""), "{status}");
        // Bad patches.
        kube_client::send_raw(&client, "POST", cms, "application/json", br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"target"},"data":{"a":"1"}}"#.to_vec()).await?;
        let target = format!("{cms}/target");
        let (code, _) = kube_client::send_raw(&client, "PATCH", &target, "application/json-patch+json", br#"[{"op":"replace","path":"/nope/deeper","value":1}]"#.to_vec()).await?;
        ensure!(code == 422, "json patch on a missing path: {code}");
        let (code, _) = kube_client::send_raw(&client, "PATCH", &target, "application/strategic-merge-patch+json", b"{not json".to_vec()).await?;
        ensure!(code == 400, "malformed strategic merge patch: {code}");
        let (code, _) = kube_client::send_raw(&client, "PATCH", &target, "application/merge-patch+json", br#"{"metadata":{"resourceVersion":"1"},"data":{"a":"2"}}"#.to_vec()).await?;
        ensure!(code == 409, "stale resourceVersion in a patch must conflict: {code}");
        let (code, _) = kube_client::send_raw(&client, "GET", "/api/v1/namespaces/default/configmaps?labelSelector=a%20in%20(b", "application/json", vec![]).await?;
        ensure!(code == 400, "bad label selector: {code}");
        let (code, _) = kube_client::send_raw(&client, "GET", "/api/v1/namespaces/default/configmaps?fieldSelector=spec.nope%3D1", "application/json", vec![]).await?;
        ensure!(code == 400, "unsupported field selector: {code}");
        let (code, _) = kube_client::send_raw(&client, "GET", "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=abc", "application/json", vec![]).await?;
        ensure!(code == 400, "a non-numeric resourceVersion: {code}");
        anyhow::Ok(())
    })?;
    // Nothing but the one good object was written.
    let names = c.kubectl_ok(&["get", "cm", "-o", "name"])?;
    ensure!(names.trim() == "configmap/target", "{names}");
    ensure!(c.get_json(&["cm", "target"])?["data"]["a"] == "1");
    Ok(())
}
