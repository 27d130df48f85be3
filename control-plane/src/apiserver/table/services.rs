//! Printers for service networking: services, endpoints and endpoint slices.

use std::collections::BTreeSet;

use serde_json::Value;

use super::format::{age, at, format_labels, int_at, items_at, name, opt_int_at, str_at};
use super::{column, wide_column, Context, Printer, AGE, NAME};

/// Non-wide output clips the load-balancer addresses to this many bytes.
const LOAD_BALANCER_WIDTH: usize = 16;
/// Endpoints and ports beyond this many are summarised as "+ N more...".
const LIST_MAX: usize = 3;

pub(super) static SERVICE: Printer = Printer {
    columns: &[
        NAME,
        column("Type", "string", "type determines how the Service is exposed."),
        column(
            "Cluster-IP",
            "string",
            "clusterIP is the IP address of the service and is usually assigned randomly.",
        ),
        column(
            "External-IP",
            "string",
            "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
        ),
        column(
            "Port(s)",
            "string",
            "The list of ports that are exposed by this service.",
        ),
        AGE,
        wide_column(
            "Selector",
            "string",
            "Route service traffic to pods with label keys and values matching this selector.",
        ),
    ],
    cells: service_cells,
    conditions: super::no_conditions,
};

fn service_cells(service: &Value, context: &Context) -> Vec<Value> {
    // v1 defaulting sets an empty type to ClusterIP and copies clusterIP into clusterIPs.
    let kind = match str_at(service, &["spec", "type"]) {
        "" => "ClusterIP",
        kind => kind,
    };
    let cluster_ip = match items_at(service, &["spec", "clusterIPs"]).first() {
        Some(first) => first.as_str().unwrap_or(""),
        None => match str_at(service, &["spec", "clusterIP"]) {
            "" => "<none>",
            ip => ip,
        },
    };
    let ports = service_ports(service);
    vec![
        name(service),
        Value::from(kind),
        Value::from(cluster_ip),
        Value::from(external_ip(service, kind, context.wide)),
        Value::from(if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports
        }),
        age(service, context),
        Value::from(format_labels(at(service, &["spec", "selector"]))),
    ]
}

/// `getServiceExternalIP`: depends on the service type.
fn external_ip(service: &Value, kind: &str, wide: bool) -> String {
    let external_ips: Vec<&str> = items_at(service, &["spec", "externalIPs"])
        .iter()
        .map(|ip| ip.as_str().unwrap_or(""))
        .collect();
    match kind {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let balancer = load_balancer_addresses(service, wide);
            if !external_ips.is_empty() {
                let mut all: Vec<&str> = Vec::new();
                if !balancer.is_empty() {
                    all.extend(balancer.split(','));
                }
                all.extend(external_ips);
                all.join(",")
            } else if balancer.is_empty() {
                "<pending>".to_string()
            } else {
                balancer
            }
        }
        "ExternalName" => str_at(service, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// Sorted, deduplicated ingress IPs (or hostnames), clipped to 16 bytes unless `wide`.
fn load_balancer_addresses(service: &Value, wide: bool) -> String {
    let addresses: BTreeSet<&str> = items_at(service, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|ingress| {
            let ip = str_at(ingress, &["ip"]);
            let hostname = str_at(ingress, &["hostname"]);
            [ip, hostname].into_iter().find(|a| !a.is_empty())
        })
        .collect();
    let joined = addresses.into_iter().collect::<Vec<_>>().join(",");
    if wide || joined.len() <= LOAD_BALANCER_WIDTH {
        return joined;
    }
    // Go slices bytes; cut at the nearest character boundary so that text stays valid UTF-8.
    let mut end = LOAD_BALANCER_WIDTH - 3;
    while !joined.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &joined[..end])
}

/// `makePortString`: `80/TCP`, or `80:30080/TCP` with a node port, joined by commas.
fn service_ports(service: &Value) -> String {
    let pieces: Vec<String> = items_at(service, &["spec", "ports"])
        .iter()
        .map(|port| {
            // v1 defaulting sets an empty protocol to TCP.
            let protocol = match str_at(port, &["protocol"]) {
                "" => "TCP",
                protocol => protocol,
            };
            let number = int_at(port, &["port"]);
            match int_at(port, &["nodePort"]) {
                node_port if node_port > 0 => format!("{number}:{node_port}/{protocol}"),
                _ => format!("{number}/{protocol}"),
            }
        })
        .collect();
    pieces.join(",")
}

pub(super) static ENDPOINTS: Printer = Printer {
    columns: &[
        NAME,
        column(
            "Endpoints",
            "string",
            "The set of all endpoints is the union of all subsets.",
        ),
        AGE,
    ],
    cells: endpoints_cells,
    conditions: super::no_conditions,
};

fn endpoints_cells(endpoints: &Value, context: &Context) -> Vec<Value> {
    vec![
        name(endpoints),
        Value::from(format_endpoints(endpoints)),
        age(endpoints, context),
    ]
}

/// `formatEndpoints`: up to three `ip:port` pairs (bare IPs for port-less subsets) and a count of
/// the rest; `<none>` without subsets.
fn format_endpoints(endpoints: &Value) -> String {
    let subsets = items_at(endpoints, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut list: Vec<String> = Vec::new();
    let mut count = 0usize;
    let mut more = false;
    for subset in subsets {
        let addresses = items_at(subset, &["addresses"]);
        let ports = items_at(subset, &["ports"]);
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            for address in addresses {
                if list.len() == LIST_MAX {
                    more = true;
                    break;
                }
                list.push(str_at(address, &["ip"]).to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for address in addresses {
                if list.len() == LIST_MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(
                    str_at(address, &["ip"]),
                    int_at(port, &["port"]),
                ));
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count.saturating_sub(LIST_MAX))
    } else {
        joined
    }
}

/// `net.JoinHostPort`: brackets around IPv6 hosts.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

pub(super) static ENDPOINT_SLICE: Printer = Printer {
    columns: &[
        NAME,
        column(
            "AddressType",
            "string",
            "addressType specifies the type of address carried by this EndpointSlice.",
        ),
        column(
            "Ports",
            "string",
            "ports specifies the list of network ports exposed by each endpoint in this slice.",
        ),
        column(
            "Endpoints",
            "string",
            "endpoints is a list of unique endpoints in this slice.",
        ),
        AGE,
    ],
    cells: endpoint_slice_cells,
    conditions: super::no_conditions,
};

fn endpoint_slice_cells(slice: &Value, context: &Context) -> Vec<Value> {
    let ports = items_at(slice, &["ports"]).iter().map(|port| {
        match (
            opt_int_at(port, &["port"]),
            port.get("name").and_then(Value::as_str),
        ) {
            (Some(number), _) => number.to_string(),
            (None, Some(name)) => name.to_string(),
            (None, None) => "*".to_string(),
        }
    });
    let addresses = items_at(slice, &["endpoints"])
        .iter()
        .flat_map(|endpoint| items_at(endpoint, &["addresses"]))
        .map(|address| address.as_str().unwrap_or("").to_string());
    vec![
        name(slice),
        Value::from(str_at(slice, &["addressType"])),
        Value::from(list_with_more(ports)),
        Value::from(list_with_more(addresses)),
        age(slice, context),
    ]
}

/// `listWithMoreString`: the first three items and "+ N more...", `<unset>` when empty.
fn list_with_more(items: impl Iterator<Item = String>) -> String {
    let mut list: Vec<String> = Vec::new();
    let mut count = 0usize;
    for item in items {
        if list.len() < LIST_MAX {
            list.push(item);
        }
        count += 1;
    }
    let joined = list.join(",");
    if count > LIST_MAX {
        format!("{joined} + {} more...", count - LIST_MAX)
    } else if joined.is_empty() {
        "<unset>".to_string()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ago, cell_range, wide_row};
    use serde_json::json;

    #[test]
    fn service_with_ports_and_selector() {
        let service = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(330)},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
                     "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"},
                               {"port": 53, "protocol": "UDP"}, {"port": 8080}],
                     "selector": {"tier": "front", "app": "web"}},
        });
        assert_eq!(
            wide_row("Service", service)["cells"],
            json!([
                "web",
                "NodePort",
                "10.96.0.10",
                "<none>",
                "80:30080/TCP,53/UDP,8080/TCP",
                "5m30s",
                "app=web,tier=front"
            ])
        );
    }

    #[test]
    fn service_defaults_and_external_addresses() {
        let bare = json!({"metadata": {"name": "bare"}});
        assert_eq!(
            cell_range(&wide_row("Service", bare), 1..5),
            json!(["ClusterIP", "<none>", "<none>", "<none>"])
        );
        let headless = json!({"metadata": {"name": "db"},
            "spec": {"clusterIP": "None", "clusterIPs": ["None"], "externalIPs": ["1.2.3.4"]}});
        assert_eq!(
            cell_range(&wide_row("Service", headless), 2..4),
            json!(["None", "1.2.3.4"])
        );
        let pending = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer"}});
        assert_eq!(wide_row("Service", pending)["cells"][3], "<pending>");
        let balanced = json!({"metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "externalIPs": ["9.9.9.9"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "5.5.5.5"}, {"hostname": "lb.example"},
                                                     {"ip": "5.5.5.5"}]}}});
        assert_eq!(
            wide_row("Service", balanced)["cells"][3],
            "5.5.5.5,lb.example,9.9.9.9"
        );
        let external = json!({"metadata": {"name": "x"},
            "spec": {"type": "ExternalName", "externalName": "db.example"}});
        assert_eq!(wide_row("Service", external)["cells"][3], "db.example");
        let odd = json!({"metadata": {"name": "x"}, "spec": {"type": "Weird"}});
        assert_eq!(wide_row("Service", odd)["cells"][3], "<unknown>");
    }

    #[test]
    fn narrow_load_balancer_addresses_are_clipped_on_character_boundaries() {
        let service = |host: &str| {
            json!({"spec": {"type": "LoadBalancer"},
                   "status": {"loadBalancer": {"ingress": [{"hostname": host}]}}})
        };
        assert_eq!(
            super::external_ip(
                &service("a-very-long-name.example.com"),
                "LoadBalancer",
                false
            ),
            "a-very-long-n..."
        );
        assert_eq!(
            super::external_ip(&service("ééééééééé.example"), "LoadBalancer", false),
            "éééééé..."
        );
        assert_eq!(
            super::external_ip(
                &service("a-very-long-name.example.com"),
                "LoadBalancer",
                true
            ),
            "a-very-long-name.example.com"
        );
    }

    #[test]
    fn endpoints_list_three_and_count_the_rest() {
        let endpoints = json!({"metadata": {"name": "web"}, "subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::2"}],
             "ports": [{"port": 80}, {"port": 443}]},
            {"addresses": [{"ip": "10.0.0.9"}]},
        ]});
        assert_eq!(
            wide_row("Endpoints", endpoints)["cells"][1],
            "10.0.0.1:80,[fd00::2]:80,10.0.0.1:443 + 2 more..."
        );
        let empty = json!({"metadata": {"name": "web"}, "subsets": []});
        assert_eq!(wide_row("Endpoints", empty)["cells"][1], "<none>");
    }

    #[test]
    fn endpoint_slice_ports_and_addresses() {
        let slice = json!({
            "metadata": {"name": "web-abc"}, "addressType": "IPv4",
            "ports": [{"port": 80, "name": "http"}, {"name": "dns"}, {"port": null}],
            "endpoints": [{"addresses": ["10.0.0.1", "10.0.0.2"]}, {"addresses": ["10.0.0.3"]},
                          {"addresses": ["10.0.0.4"]}],
        });
        assert_eq!(
            wide_row("EndpointSlice", slice)["cells"],
            json!([
                "web-abc",
                "IPv4",
                "80,dns,*",
                "10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...",
                "<unknown>"
            ])
        );
        let empty = json!({"metadata": {"name": "e"}, "addressType": "IPv6"});
        assert_eq!(
            cell_range(&wide_row("EndpointSlice", empty), 2..4),
            json!(["<unset>", "<unset>"])
        );
    }
}
