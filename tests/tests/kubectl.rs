//! The API server driven by the real kubectl 1.32, as a user would.

use anyhow::{ensure, Result};
use bramble_tests::Cluster;
use serde_json::Value;

const APP: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels:
    app: web
    tier: front
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: ghcr.io/bramble/http-echo:1
        env:
        - name: A
          value: "1"
        - name: B
          value: "2"
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
data:
  greeting: hello
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
  namespace: shop
stringData:
  password: hunter2
"#;

#[test]
fn version_reports_minor_32_and_unauthenticated_requests_get_401() -> Result<()> {
    let c = Cluster::start()?;
    let v: Value = serde_json::from_str(&c.kubectl_ok(&["version", "-o", "json"])?)?;
    ensure!(v["serverVersion"]["minor"] == "32", "{v}");
    ensure!(
        v["clientVersion"]["minor"]
            .as_str()
            .is_some_and(|m| m.starts_with("32")),
        "the dispatcher must run kubectl 1.32: {v}"
    );
    // A wrong bearer token gets 401; the admin token from the data dir works.
    let kc = std::fs::read_to_string(c.kubeconfig())?;
    let with_token = |token: &str| -> Result<String> {
        let path = c.scratch().join(format!("token-{}.yaml", token.len()));
        let lines: Vec<String> = kc
            .lines()
            .filter(|l| !l.contains("client-key-data"))
            .map(|l| {
                if l.contains("client-certificate-data") {
                    format!("    token: {token}")
                } else {
                    l.to_string()
                }
            })
            .collect();
        std::fs::write(&path, lines.join("\n") + "\n")?;
        Ok(path.to_string_lossy().to_string())
    };
    let bad = with_token("not-the-token")?;
    let err = c.kubectl_err(&["--kubeconfig", &bad, "get", "pods"])?;
    ensure!(
        err.contains("Unauthorized") || err.contains("provide credentials"),
        "{err}"
    );
    let token = std::fs::read_to_string(c.data_dir().join("pki/admin.token"))?;
    let good = with_token(token.trim())?;
    c.kubectl_ok(&["--kubeconfig", &good, "get", "pods"])?;
    Ok(())
}

#[test]
fn generators_send_protobuf_and_objects_come_back() -> Result<()> {
    let c = Cluster::start()?;
    c.kubectl_ok(&["create", "namespace", "team-a"])?;
    c.kubectl_ok(&[
        "-n",
        "team-a",
        "create",
        "deployment",
        "d3",
        "--image=nginx:1.27",
        "--replicas=2",
        "--port=80",
    ])?;
    c.kubectl_ok(&[
        "-n",
        "team-a",
        "create",
        "configmap",
        "cfg",
        "--from-literal=k=v",
        "--from-literal=x=y",
    ])?;
    c.kubectl_ok(&[
        "-n",
        "team-a",
        "create",
        "secret",
        "generic",
        "s",
        "--from-literal=password=p4ss",
    ])?;
    let d = c.get_json(&["-n", "team-a", "deployment", "d3"])?;
    ensure!(d["spec"]["replicas"] == 2, "{d}");
    ensure!(
        d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 80,
        "{d}"
    );
    ensure!(d["metadata"]["generation"] == 1, "{d}");
    let cm = c.get_json(&["-n", "team-a", "cm", "cfg"])?;
    ensure!(cm["data"]["k"] == "v" && cm["data"]["x"] == "y", "{cm}");
    let s = c.get_json(&["-n", "team-a", "secret", "s"])?;
    ensure!(s["data"]["password"] == "cDRzcw==", "{s}");
    let err = c.kubectl_err(&[
        "-n",
        "team-a",
        "create",
        "configmap",
        "cfg",
        "--from-literal=k=v",
    ])?;
    ensure!(err.contains("configmaps \"cfg\" already exists"), "{err}");
    let err = c.kubectl_err(&["-n", "nope", "create", "configmap", "cfg"])?;
    ensure!(err.contains("namespaces \"nope\" not found"), "{err}");
    Ok(())
}

#[test]
fn apply_three_way_merge_removes_what_the_manifest_dropped() -> Result<()> {
    let c = Cluster::start()?;
    c.kubectl_ok(&["create", "ns", "shop"])?;
    let out = c.kubectl_stdin(&["apply", "-f", "-"], APP)?;
    ensure!(
        out.contains("deployment.apps/web created") && out.contains("secret/creds created"),
        "{out}"
    );
    let again = c.kubectl_stdin(&["apply", "-f", "-"], APP)?;
    ensure!(again.contains("deployment.apps/web unchanged"), "{again}");
    let edited = APP
        .replace("        - name: B\n          value: \"2\"\n", "")
        .replace("    tier: front\n", "");
    let out = c.kubectl_stdin(&["apply", "-f", "-"], &edited)?;
    ensure!(out.contains("deployment.apps/web configured"), "{out}");
    let d = c.get_json(&["-n", "shop", "deploy", "web"])?;
    let env = &d["spec"]["template"]["spec"]["containers"][0]["env"];
    ensure!(
        env.as_array().map(Vec::len) == Some(1) && env[0]["name"] == "A",
        "env: {env}"
    );
    ensure!(
        d["metadata"]["labels"].get("tier").is_none(),
        "labels: {}",
        d["metadata"]["labels"]
    );
    ensure!(
        d["metadata"]["generation"] == 2,
        "generation: {}",
        d["metadata"]["generation"]
    );
    let svc = c.get_json(&["-n", "shop", "svc", "web"])?;
    ensure!(
        svc["spec"]["ports"][0]["targetPort"] == 8080 && svc["spec"]["type"] == "ClusterIP",
        "{svc}"
    );
    let secret = c.get_json(&["-n", "shop", "secret", "creds"])?;
    ensure!(secret["data"]["password"] == "aHVudGVyMg==", "{secret}");
    // Strict validation refuses unknown fields and writes nothing.
    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n  namespace: shop\ndata: {}\nbogus: 1\n";
    let out = c.kubectl_with_input(&["apply", "-f", "-"], bad)?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("unknown field \"bogus\""),
        "{err}"
    );
    ensure!(c
        .kubectl_err(&["-n", "shop", "get", "cm", "bad"])?
        .contains("NotFound"));
    Ok(())
}

#[test]
fn server_side_apply_tracks_owners_and_reports_conflicts() -> Result<()> {
    let c = Cluster::start()?;
    c.kubectl_ok(&["create", "ns", "shop"])?;
    let out = c.kubectl_stdin(&["apply", "--server-side", "-f", "-"], APP)?;
    ensure!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );
    let d = c.get_json(&["-n", "shop", "deploy", "web", "--show-managed-fields"])?;
    let managers: Vec<String> = d["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["manager"].as_str().map(String::from))
        .collect();
    ensure!(managers.contains(&"kubectl".to_string()), "{managers:?}");
    let other = APP.replace("replicas: 2", "replicas: 5");
    let out = c.kubectl_with_input(
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        &other,
    )?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("conflict") && err.contains(".spec.replicas"),
        "{err}"
    );
    ensure!(c.get_json(&["-n", "shop", "deploy", "web"])?["spec"]["replicas"] == 2);
    c.kubectl_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        &other,
    )?;
    ensure!(c.get_json(&["-n", "shop", "deploy", "web"])?["spec"]["replicas"] == 5);
    Ok(())
}

#[test]
fn get_prints_what_users_expect() -> Result<()> {
    let c = Cluster::start()?;
    c.kubectl_ok(&["create", "ns", "shop"])?;
    c.kubectl_stdin(&["apply", "-f", "-"], APP)?;
    c.kubectl_ok(&[
        "-n",
        "shop",
        "create",
        "deployment",
        "api",
        "--image=nginx:1.27",
    ])?;
    let table = c.kubectl_ok(&["-n", "shop", "get", "deployments"])?;
    ensure!(
        table
            .lines()
            .next()
            .is_some_and(|h| h.split_whitespace().collect::<Vec<_>>()
                == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]),
        "{table}"
    );
    ensure!(table.contains("web") && table.contains("0/2"), "{table}");
    let wide = c.kubectl_ok(&["-n", "shop", "get", "deploy", "-o", "wide"])?;
    ensure!(
        wide.contains("CONTAINERS") && wide.contains("ghcr.io/bramble/http-echo:1"),
        "{wide}"
    );
    let all = c.kubectl_ok(&["get", "deploy", "-A", "--show-labels"])?;
    ensure!(
        all.contains("NAMESPACE") && all.contains("shop") && all.contains("app=web"),
        "{all}"
    );
    let names = c.kubectl_ok(&["-n", "shop", "get", "deploy", "-l", "app=web", "-o", "name"])?;
    ensure!(names.trim() == "deployment.apps/web", "{names}");
    let names = c.kubectl_ok(&[
        "-n",
        "shop",
        "get",
        "deploy",
        "--field-selector",
        "metadata.name=api",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])?;
    ensure!(names.trim() == "api", "{names}");
    let sorted = c.kubectl_ok(&[
        "-n",
        "shop",
        "get",
        "deploy",
        "--sort-by=.metadata.name",
        "-o",
        "name",
    ])?;
    ensure!(
        sorted.trim() == "deployment.apps/api\ndeployment.apps/web",
        "{sorted}"
    );
    let yaml = c.kubectl_ok(&["-n", "shop", "get", "cm", "settings", "-o", "yaml"])?;
    ensure!(yaml.contains("greeting: hello"), "{yaml}");
    let ns = c.kubectl_ok(&["get", "ns"])?;
    for n in [
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "shop",
    ] {
        ensure!(ns.contains(n), "{ns}");
    }
    let svc = c.kubectl_ok(&["-n", "shop", "get", "svc"])?;
    ensure!(svc.contains("ClusterIP") && svc.contains("80/TCP"), "{svc}");
    let secrets = c.kubectl_ok(&["-n", "shop", "get", "secrets"])?;
    ensure!(secrets.contains("Opaque"), "{secrets}");
    let err = c.kubectl_err(&["-n", "shop", "get", "deploy", "nope"])?;
    ensure!(
        err.contains("NotFound") && err.contains("\"nope\" not found"),
        "{err}"
    );
    let paged = c.kubectl_ok(&[
        "-n",
        "shop",
        "get",
        "deploy",
        "--chunk-size=1",
        "-o",
        "name",
    ])?;
    ensure!(paged.lines().count() == 2, "{paged}");
    Ok(())
}

#[test]
fn watch_sees_a_later_change() -> Result<()> {
    let c = Cluster::start()?;
    c.kubectl_ok(&["create", "configmap", "watched", "--from-literal=a=1"])?;
    let mut child = c
        .kubectl_command(&["get", "configmaps", "-w", "-o", "name"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    std::thread::sleep(std::time::Duration::from_millis(1500));
    c.kubectl_ok(&["create", "configmap", "later", "--from-literal=b=2"])?;
    c.kubectl_ok(&["label", "configmap", "watched", "seen=yes"])?;
    std::thread::sleep(std::time::Duration::from_millis(1500));
    child.kill()?;
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(text.contains("configmap/later"), "{text}");
    ensure!(
        text.matches("configmap/watched").count() >= 2,
        "the label change must arrive as an event: {text}"
    );
    Ok(())
}

#[test]
fn describe_label_annotate_scale_edit_delete() -> Result<()> {
    let c = Cluster::start()?;
    c.kubectl_ok(&["create", "ns", "shop"])?;
    c.kubectl_stdin(&["apply", "-f", "-"], APP)?;
    let d = c.kubectl_ok(&["-n", "shop", "describe", "deployment", "web"])?;
    ensure!(
        d.contains("Name:") && d.contains("web") && d.contains("Replicas:"),
        "{d}"
    );
    c.kubectl_ok(&["-n", "shop", "label", "deploy", "web", "owner=ops"])?;
    c.kubectl_ok(&["-n", "shop", "annotate", "deploy", "web", "note=hi"])?;
    c.kubectl_ok(&["-n", "shop", "scale", "deploy", "web", "--replicas=4"])?;
    let obj = c.get_json(&["-n", "shop", "deploy", "web"])?;
    ensure!(
        obj["metadata"]["labels"]["owner"] == "ops"
            && obj["metadata"]["annotations"]["note"] == "hi"
            && obj["spec"]["replicas"] == 4,
        "{obj}"
    );
    // edit with a scripted editor
    let editor = c.scratch().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/greeting: hello/greeting: edited/' \"$1\"\n",
    )?;
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&editor)
        .status()?;
    let out = c
        .kubectl_command(&["-n", "shop", "edit", "cm", "settings"])
        .env("KUBE_EDITOR", &editor)
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(c.get_json(&["-n", "shop", "cm", "settings"])?["data"]["greeting"] == "edited");
    // delete by name, by label, --all
    c.kubectl_ok(&["-n", "shop", "delete", "svc", "web"])?;
    c.kubectl_ok(&["-n", "shop", "create", "cm", "l1", "--from-literal=a=b"])?;
    c.kubectl_ok(&["-n", "shop", "label", "cm", "l1", "group=x"])?;
    c.kubectl_ok(&["-n", "shop", "delete", "cm", "-l", "group=x"])?;
    ensure!(c
        .kubectl_err(&["-n", "shop", "get", "cm", "l1"])?
        .contains("NotFound"));
    c.kubectl_ok(&["-n", "shop", "delete", "cm", "--all"])?;
    ensure!(c
        .kubectl_ok(&["-n", "shop", "get", "cm", "-o", "name"])?
        .trim()
        .is_empty());
    // a namespace with contents
    c.kubectl_ok(&["delete", "ns", "shop", "--timeout=60s"])?;
    ensure!(c.kubectl_err(&["get", "ns", "shop"])?.contains("NotFound"));
    ensure!(c
        .kubectl_ok(&["get", "deploy", "-A", "-o", "name"])?
        .trim()
        .is_empty());
    Ok(())
}

#[test]
fn discovery_explain_and_auth() -> Result<()> {
    let c = Cluster::start()?;
    let res = c.kubectl_ok(&["api-resources"])?;
    for line in [
        "deployments",
        "deploy",
        "apps/v1",
        "runtimeclasses",
        "endpointslices",
        "leases",
    ] {
        ensure!(res.contains(line), "{line} missing from:\n{res}");
    }
    let explain = c.kubectl_ok(&["explain", "pod.spec.containers"])?;
    ensure!(
        explain.contains("KIND:") && explain.contains("Pod") && explain.contains("image"),
        "{explain}"
    );
    let can = c.kubectl_ok(&["auth", "can-i", "--list"])?;
    ensure!(can.contains("*.*"), "{can}");
    ensure!(
        c.kubectl_ok(&["auth", "can-i", "create", "deployments"])?
            .trim()
            == "yes"
    );
    Ok(())
}
