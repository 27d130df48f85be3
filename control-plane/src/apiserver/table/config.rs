//! Printers for configuration kinds: config maps, secrets and service accounts.

use serde_json::Value;

use super::format::{age, len_at, name, str_at};
use super::{column, Context, Printer, AGE, NAME};

pub(super) static CONFIG_MAP: Printer = Printer {
    columns: &[
        NAME,
        column("Data", "string", "Data contains the configuration data."),
        AGE,
    ],
    cells: config_map_cells,
    conditions: super::no_conditions,
};

fn config_map_cells(config_map: &Value, context: &Context) -> Vec<Value> {
    let entries = len_at(config_map, &["data"]).saturating_add(len_at(config_map, &["binaryData"]));
    vec![
        name(config_map),
        Value::from(entries),
        age(config_map, context),
    ]
}

pub(super) static SECRET: Printer = Printer {
    columns: &[
        NAME,
        column(
            "Type",
            "string",
            "Used to facilitate programmatic handling of secret data.",
        ),
        column("Data", "string", "Data contains the secret data."),
        AGE,
    ],
    cells: secret_cells,
    conditions: super::no_conditions,
};

fn secret_cells(secret: &Value, context: &Context) -> Vec<Value> {
    // v1 defaulting sets an empty type to Opaque.
    let kind = match str_at(secret, &["type"]) {
        "" => "Opaque",
        kind => kind,
    };
    vec![
        name(secret),
        Value::from(kind),
        Value::from(len_at(secret, &["data"])),
        age(secret, context),
    ]
}

pub(super) static SERVICE_ACCOUNT: Printer = Printer {
    columns: &[
        NAME,
        column(
            "Secrets",
            "string",
            "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
        ),
        AGE,
    ],
    cells: service_account_cells,
    conditions: super::no_conditions,
};

fn service_account_cells(account: &Value, context: &Context) -> Vec<Value> {
    vec![
        name(account),
        Value::from(len_at(account, &["secrets"])),
        age(account, context),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ago, wide_row};
    use serde_json::json;

    #[test]
    fn secret_counts_keys_and_defaults_its_type() {
        let tls = json!({
            "metadata": {"name": "cert", "creationTimestamp": ago(45)},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "QQ==", "tls.key": "Qg=="},
        });
        assert_eq!(
            wide_row("Secret", tls)["cells"],
            json!(["cert", "kubernetes.io/tls", 2, "45s"])
        );
        let bare = json!({"metadata": {"name": "empty"}});
        assert_eq!(
            wide_row("Secret", bare)["cells"],
            json!(["empty", "Opaque", 0, "<unknown>"])
        );
    }

    #[test]
    fn config_map_counts_data_and_binary_data() {
        let cm = json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"},
                        "binaryData": {"c": "AA=="}});
        assert_eq!(wide_row("ConfigMap", cm)["cells"][1], 3);
    }

    #[test]
    fn service_account_counts_secrets() {
        let sa = json!({"metadata": {"name": "default"}, "secrets": [{"name": "t"}]});
        assert_eq!(
            wide_row("ServiceAccount", sa)["cells"],
            json!(["default", 1, "<unknown>"])
        );
    }
}
