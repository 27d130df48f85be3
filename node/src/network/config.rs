//! The network configuration list handed to the CNI plugins, and the per-plugin configuration
//! derived from it for each invocation (what libcni does for a `.conflist`).

use std::net::IpAddr;
use std::path::Path;

use serde_json::{json, Map, Value};

use super::{NetworkError, PodNetworkConfig, PortMapping};

/// The CNI spec version spoken to the plugins; containernetworking-plugins 1.x speak it.
pub(crate) const CNI_VERSION: &str = "1.0.0";
/// Every plugin executable the network needs (host-local is the bridge's IPAM).
pub(crate) const REQUIRED_PLUGINS: [&str; 4] = ["bridge", "host-local", "portmap", "loopback"];
/// Linux's limit on interface names (IFNAMSIZ less the terminating nul).
const MAX_IFNAME: usize = 15;

/// Checks the fields of `config` that the plugins would otherwise reject late and obscurely.
pub(crate) fn validate(config: &PodNetworkConfig) -> Result<(), NetworkError> {
    let invalid = |field, value: &str, reason| NetworkError::InvalidConfig {
        field,
        value: value.to_string(),
        reason,
    };
    let bridge = &config.bridge;
    if bridge.is_empty() || bridge.len() > MAX_IFNAME {
        return Err(invalid(
            "bridge",
            bridge,
            "must be 1 to 15 characters (a Linux interface name)",
        ));
    }
    if !bridge
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(invalid(
            "bridge",
            bridge,
            "may only hold letters, digits, '-', '_' and '.'",
        ));
    }
    parse_cidr(&config.subnet).ok_or_else(|| {
        invalid(
            "subnet",
            &config.subnet,
            "must be a CIDR such as 10.88.0.0/16",
        )
    })?;
    let name = &config.network_name;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(invalid(
            "network_name",
            name,
            "must be non-empty and only hold letters, digits, '-', '_' and '.'",
        ));
    }
    if config.plugin_dirs.is_empty() {
        return Err(invalid(
            "plugin_dirs",
            "",
            "must name at least one directory",
        ));
    }
    Ok(())
}

/// Splits `a.b.c.d/n` (or an IPv6 CIDR) into address and prefix length, if well formed.
pub(crate) fn parse_cidr(cidr: &str) -> Option<(IpAddr, u8)> {
    let (addr, prefix) = cidr.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((addr, prefix))
}

/// The configuration list of the pod network: a bridge with host-local IPAM, then portmap
/// when the pod forwards host ports (a plugin run costs milliseconds of every pod start).
/// Outbound traffic is masqueraded by one rule for the whole subnet ([`masquerade_rule`]),
/// not per pod by the bridge plugin, which would add iptables work to every start and stop.
pub(crate) fn conflist(config: &PodNetworkConfig, ipam_dir: &Path, host_ports: bool) -> Value {
    let default_route = match parse_cidr(&config.subnet) {
        Some((IpAddr::V6(_), _)) => "::/0",
        _ => "0.0.0.0/0",
    };
    let mut plugins = vec![json!({
                "type": "bridge",
                "bridge": config.bridge,
                "isGateway": true,
                "ipMasq": false,
                // Lets a pod reach itself through a service or host port.
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": config.subnet }]],
                    "routes": [{ "dst": default_route }],
                    // Per agent, so two agents on one machine never share allocations.
                    "dataDir": ipam_dir,
                },
    })];
    if host_ports {
        plugins.push(json!({
            "type": "portmap",
            "capabilities": { "portMappings": true },
            "snat": true,
        }));
    }
    json!({
        "cniVersion": CNI_VERSION,
        "name": config.network_name,
        "plugins": plugins,
    })
}

/// The iptables rule (nat table, POSTROUTING) that masquerades the pods' traffic leaving the
/// subnet, so pods reach beyond the node; the same rule for every pod.
pub(crate) fn masquerade_rule(config: &PodNetworkConfig) -> Vec<String> {
    let comment = format!("bramble pod network {}", config.network_name);
    [
        "-s",
        &config.subnet,
        "!",
        "-d",
        &config.subnet,
        "-m",
        "comment",
        "--comment",
        &comment,
        "-j",
        "MASQUERADE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The configuration for the loopback plugin, run on `lo` in the pod's namespace.
pub(crate) fn loopback() -> Value {
    json!({ "cniVersion": CNI_VERSION, "name": "cni-loopback", "type": "loopback" })
}

/// The plugins of a configuration list, in ADD order.
pub(crate) fn plugins(list: &Value) -> &[Value] {
    list.get("plugins")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A plugin's `type`, the name of its executable.
pub(crate) fn plugin_type(plugin: &Value) -> &str {
    plugin.get("type").and_then(Value::as_str).unwrap_or("")
}

/// The stdin of one plugin invocation: the plugin's own section with the list's name and
/// version, the previous result of the chain, and the runtime arguments for the capabilities
/// the plugin declares (as libcni injects them).
pub(crate) fn plugin_stdin(
    list: &Value,
    plugin: &Value,
    prev_result: Option<&Value>,
    port_mappings: &[PortMapping],
) -> Value {
    let mut conf: Map<String, Value> = plugin.as_object().cloned().unwrap_or_default();
    for key in ["cniVersion", "name"] {
        if let Some(value) = list.get(key) {
            conf.insert(key.to_string(), value.clone());
        }
    }
    if let Some(prev) = prev_result {
        conf.insert("prevResult".to_string(), prev.clone());
    }
    let wants_ports = plugin
        .pointer("/capabilities/portMappings")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if wants_ports {
        conf.insert(
            "runtimeConfig".to_string(),
            json!({ "portMappings": port_mappings }),
        );
    }
    Value::Object(conf)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn config() -> PodNetworkConfig {
        PodNetworkConfig {
            plugin_dirs: vec![PathBuf::from("/usr/lib/cni")],
            state_dir: PathBuf::from("/var/lib/bramble/network"),
            bridge: "bramble0".into(),
            subnet: "10.88.0.0/16".into(),
            network_name: "bramble".into(),
        }
    }

    #[test]
    fn conflist_has_bridge_with_host_local_in_the_state_dir_then_portmap() {
        let list = conflist(&config(), Path::new("/var/lib/bramble/network/ipam"), true);
        assert_eq!(list["cniVersion"], "1.0.0");
        assert_eq!(list["name"], "bramble");
        let bridge = &list["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "bramble0");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], false);
        assert_eq!(bridge["hairpinMode"], true);
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.88.0.0/16");
        assert_eq!(bridge["ipam"]["dataDir"], "/var/lib/bramble/network/ipam");
        assert_eq!(bridge["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        let portmap = &list["plugins"][1];
        assert_eq!(portmap["type"], "portmap");
        assert_eq!(portmap["capabilities"]["portMappings"], true);
        assert_eq!(portmap["snat"], true);
        let types: Vec<&str> = plugins(&list).iter().map(plugin_type).collect();
        assert_eq!(types, ["bridge", "portmap"]);
    }

    #[test]
    fn portmap_runs_only_for_pods_with_host_ports() {
        let list = conflist(&config(), Path::new("/x"), false);
        let types: Vec<&str> = plugins(&list).iter().map(plugin_type).collect();
        assert_eq!(types, ["bridge"]);
    }

    #[test]
    fn ipv6_subnet_routes_the_ipv6_default() {
        let mut config = config();
        config.subnet = "fd00:88::/64".into();
        let list = conflist(&config, Path::new("/x"), false);
        assert_eq!(list["plugins"][0]["ipam"]["routes"][0]["dst"], "::/0");
    }

    #[test]
    fn plugin_stdin_injects_name_version_prev_result_and_only_declared_capabilities() {
        let list = conflist(&config(), Path::new("/x"), true);
        let ports = [PortMapping {
            host_port: 18080,
            container_port: 8080,
            protocol: "tcp".into(),
            host_ip: None,
        }];
        let prev = json!({ "cniVersion": "1.0.0", "ips": [] });

        let bridge = plugin_stdin(&list, &plugins(&list)[0], None, &ports);
        assert_eq!(bridge["name"], "bramble");
        assert_eq!(bridge["cniVersion"], "1.0.0");
        assert!(bridge.get("prevResult").is_none());
        assert!(
            bridge.get("runtimeConfig").is_none(),
            "bridge declares no capabilities"
        );

        let portmap = plugin_stdin(&list, &plugins(&list)[1], Some(&prev), &ports);
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(
            portmap["runtimeConfig"]["portMappings"],
            json!([{ "hostPort": 18080, "containerPort": 8080, "protocol": "tcp" }])
        );
    }

    #[test]
    fn validate_rejects_what_the_plugins_would_reject_late() {
        assert!(validate(&config()).is_ok());
        let mut long = config();
        long.bridge = "a-very-long-bridge-name".into();
        let err = validate(&long).unwrap_err().to_string();
        assert!(err.contains("bridge") && err.contains("15"), "{err}");

        for subnet in ["10.88.0.0", "10.88.0.0/33", "banana/16", ""] {
            let mut bad = config();
            bad.subnet = subnet.into();
            let err = validate(&bad).unwrap_err().to_string();
            assert!(err.contains("subnet"), "{subnet}: {err}");
        }
        let mut bad = config();
        bad.network_name = "a;b".into();
        assert!(validate(&bad).is_err());
    }
}
