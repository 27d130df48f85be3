//! What the plugins return (results and errors in the CNI formats) and the per-pod record the
//! agent keeps of an attachment, so DEL after a restart gets the configuration and result of
//! the ADD, as libcni's result cache provides.

use std::fs;
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::parse_cidr;
use super::{NetworkError, PodAttachment, PortMapping};

/// A plugin's error, the JSON it prints on stdout when it exits non-zero.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct PluginError {
    /// The error code; 1-99 are the spec's, the rest the plugin's own.
    pub code: u32,
    /// The message.
    #[serde(default)]
    pub msg: String,
    /// Further details.
    #[serde(default)]
    pub details: String,
}

/// Parses a failing plugin's stdout as a CNI error, if it is one.
pub(crate) fn parse_plugin_error(stdout: &[u8]) -> Option<PluginError> {
    serde_json::from_slice(stdout).ok()
}

/// The pod's address and gateway in a CNI result (spec 0.4.0 and 1.0.0 shape the `ips` alike).
///
/// The first IPv4 address wins when a result holds both families, as kubelet's primary pod IP.
pub(crate) fn pod_address(result: &Value) -> Result<(IpAddr, Option<IpAddr>), String> {
    let ips = result
        .get("ips")
        .and_then(Value::as_array)
        .filter(|ips| !ips.is_empty())
        .ok_or("the result has no \"ips\"")?;
    let mut parsed = Vec::with_capacity(ips.len());
    for ip in ips {
        let address = ip
            .get("address")
            .and_then(Value::as_str)
            .ok_or("an entry of \"ips\" has no \"address\"")?;
        let (addr, _) =
            parse_cidr(address).ok_or_else(|| format!("address {address:?} is not a CIDR"))?;
        let gateway = match ip.get("gateway").and_then(Value::as_str) {
            Some(gw) => Some(
                gw.parse::<IpAddr>()
                    .map_err(|_| format!("gateway {gw:?} is not an IP address"))?,
            ),
            None => None,
        };
        parsed.push((addr, gateway));
    }
    let first_v4 = parsed.iter().find(|(addr, _)| addr.is_ipv4()).copied();
    Ok(first_v4.unwrap_or(parsed[0]))
}

/// The record of one pod's attachment, `<state_dir>/results/<uid>.json`.
///
/// Written before ADD without a result (so an interrupted ADD is still undone with the same
/// configuration), and again with the result once the chain succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Record {
    /// The pod's uid, also the CNI container id.
    pub pod_uid: String,
    /// The pod's namespace.
    pub pod_namespace: String,
    /// The pod's name.
    pub pod_name: String,
    /// The network namespace file.
    pub netns: PathBuf,
    /// The configuration list the ADD ran with.
    pub conflist: Value,
    /// The port mappings the ADD ran with.
    pub port_mappings: Vec<PortMapping>,
    /// The chain's final result; absent while ADD has not completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

impl Record {
    /// The attachment this record describes, once ADD has completed.
    pub(crate) fn attachment(&self) -> Option<PodAttachment> {
        let (ip, gateway) = pod_address(self.result.as_ref()?).ok()?;
        Some(PodAttachment {
            netns: self.netns.clone(),
            ip,
            gateway,
        })
    }
}

/// Reads a record, `None` if there is none.
pub(crate) fn read(path: &Path) -> Result<Option<Record>, NetworkError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(NetworkError::io("read", path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| NetworkError::Cache {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes a record atomically (a crash leaves the old record or the new one, never half).
pub(crate) fn write(path: &Path, record: &Record) -> Result<(), NetworkError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| NetworkError::io("create", dir, e))?;
    }
    let bytes = serde_json::to_vec_pretty(record).map_err(|source| NetworkError::Cache {
        path: path.to_path_buf(),
        source,
    })?;
    let tmp = path.with_extension("json.tmp");
    let mut file = fs::File::create(&tmp).map_err(|e| NetworkError::io("create", &tmp, e))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| NetworkError::io("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| NetworkError::io("rename", &tmp, e))
}

/// Deletes a record; succeeds if there is none.
pub(crate) fn remove(path: &Path) -> Result<(), NetworkError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetworkError::io("delete", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_a_bridge_result_of_spec_1_0_0() {
        // The shape bridge 1.1.1 prints for cniVersion 1.0.0.
        let result = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                { "name": "brtest", "mac": "7a:3b:1e:2c:11:01" },
                { "name": "veth1234", "mac": "8a:11:22:33:44:55" },
                { "name": "eth0", "mac": "0e:aa:bb:cc:dd:ee", "sandbox": "/x/netns/pod" }
            ],
            "ips": [{ "interface": 2, "address": "10.123.0.2/24", "gateway": "10.123.0.1" }],
            "routes": [{ "dst": "0.0.0.0/0" }],
            "dns": {}
        });
        let (ip, gw) = pod_address(&result).unwrap();
        assert_eq!(ip, "10.123.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(gw, Some("10.123.0.1".parse().unwrap()));
    }

    #[test]
    fn prefers_ipv4_and_accepts_a_missing_gateway() {
        let result = json!({
            "cniVersion": "0.4.0",
            "ips": [
                { "version": "6", "address": "fd00::5/64" },
                { "version": "4", "address": "10.0.0.5/16" }
            ]
        });
        assert_eq!(
            pod_address(&result).unwrap(),
            ("10.0.0.5".parse().unwrap(), None)
        );
    }

    #[test]
    fn rejects_results_without_a_usable_address() {
        for result in [
            json!({ "cniVersion": "1.0.0" }),
            json!({ "ips": [] }),
            json!({ "ips": [{ "gateway": "10.0.0.1" }] }),
            json!({ "ips": [{ "address": "10.0.0.300/24" }] }),
            json!({ "ips": [{ "address": "10.0.0.3/24", "gateway": "nope" }] }),
        ] {
            assert!(pod_address(&result).is_err(), "{result}");
        }
    }

    #[test]
    fn parses_the_cni_error_format() {
        let out = br#"{"cniVersion":"1.0.0","code":11,"msg":"failed to allocate","details":"range full"}"#;
        let err = parse_plugin_error(out).unwrap();
        assert_eq!(err.code, 11);
        assert_eq!(err.msg, "failed to allocate");
        assert_eq!(err.details, "range full");
        let bare = parse_plugin_error(br#"{"code":999,"msg":"x"}"#).unwrap();
        assert_eq!(bare.details, "");
        assert!(parse_plugin_error(b"panic: runtime error").is_none());
    }

    #[test]
    fn records_round_trip_and_only_complete_ones_have_an_attachment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results").join("pod-1.json");
        assert!(read(&path).unwrap().is_none());
        let mut record = Record {
            pod_uid: "pod-1".into(),
            pod_namespace: "default".into(),
            pod_name: "web".into(),
            netns: dir.path().join("netns/pod-1"),
            conflist: json!({ "name": "bramble" }),
            port_mappings: vec![],
            result: None,
        };
        write(&path, &record).unwrap();
        let read_back = read(&path).unwrap().unwrap();
        assert_eq!(read_back, record);
        assert!(read_back.attachment().is_none());

        record.result =
            Some(json!({ "ips": [{ "address": "10.1.0.9/16", "gateway": "10.1.0.1" }] }));
        write(&path, &record).unwrap();
        let attachment = read(&path).unwrap().unwrap().attachment().unwrap();
        assert_eq!(attachment.ip, "10.1.0.9".parse::<IpAddr>().unwrap());
        assert_eq!(attachment.netns, dir.path().join("netns/pod-1"));

        remove(&path).unwrap();
        remove(&path).unwrap();
        assert!(read(&path).unwrap().is_none());
    }

    #[test]
    fn a_corrupt_record_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        fs::write(&path, b"{not json").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("corrupt") && err.contains("bad.json"), "{err}");
    }
}
