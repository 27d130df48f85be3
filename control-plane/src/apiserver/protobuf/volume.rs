//! Field listings for pod volumes: every volume source, projections and the ephemeral
//! PersistentVolumeClaim template.
//!
//! See `convert` for the listing syntax and the presence rule behind `#[keep]`.

use k8s_pb::api::core::v1 as corev1;

use super::convert::to_json;

to_json! {
    corev1::Volume {
        #[keep] name: "name",
        #[flatten] volume_source,
    }
    corev1::PersistentVolumeClaim {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    corev1::VolumeSource {
        host_path: "hostPath",
        empty_dir: "emptyDir",
        gce_persistent_disk: "gcePersistentDisk",
        aws_elastic_block_store: "awsElasticBlockStore",
        git_repo: "gitRepo",
        secret: "secret",
        nfs: "nfs",
        iscsi: "iscsi",
        glusterfs: "glusterfs",
        persistent_volume_claim: "persistentVolumeClaim",
        rbd: "rbd",
        flex_volume: "flexVolume",
        cinder: "cinder",
        cephfs: "cephfs",
        flocker: "flocker",
        downward_api: "downwardAPI",
        fc: "fc",
        azure_file: "azureFile",
        config_map: "configMap",
        vsphere_volume: "vsphereVolume",
        quobyte: "quobyte",
        azure_disk: "azureDisk",
        photon_persistent_disk: "photonPersistentDisk",
        projected: "projected",
        portworx_volume: "portworxVolume",
        scale_io: "scaleIO",
        storageos: "storageos",
        csi: "csi",
        ephemeral: "ephemeral",
        image: "image",
    }
    corev1::PersistentVolumeClaimSpec {
        access_modes: "accessModes",
        selector: "selector",
        resources: "resources",
        volume_name: "volumeName",
        #[keep] storage_class_name: "storageClassName",
        #[keep] volume_mode: "volumeMode",
        data_source: "dataSource",
        data_source_ref: "dataSourceRef",
        #[keep] volume_attributes_class_name: "volumeAttributesClassName",
    }
    corev1::PersistentVolumeClaimStatus {
        phase: "phase",
        access_modes: "accessModes",
        capacity: "capacity",
        conditions: "conditions",
        allocated_resources: "allocatedResources",
        allocated_resource_statuses: "allocatedResourceStatuses",
        #[keep] current_volume_attributes_class_name: "currentVolumeAttributesClassName",
        modify_volume_status: "modifyVolumeStatus",
    }
    corev1::HostPathVolumeSource {
        #[keep] path: "path",
        #[keep] r#type: "type",
    }
    corev1::EmptyDirVolumeSource {
        medium: "medium",
        size_limit: "sizeLimit",
    }
    corev1::GcePersistentDiskVolumeSource {
        #[keep] pd_name: "pdName",
        fs_type: "fsType",
        partition: "partition",
        read_only: "readOnly",
    }
    corev1::AwsElasticBlockStoreVolumeSource {
        #[keep] volume_id: "volumeID",
        fs_type: "fsType",
        partition: "partition",
        read_only: "readOnly",
    }
    corev1::GitRepoVolumeSource {
        #[keep] repository: "repository",
        revision: "revision",
        directory: "directory",
    }
    corev1::SecretVolumeSource {
        secret_name: "secretName",
        items: "items",
        #[keep] default_mode: "defaultMode",
        #[keep] optional: "optional",
    }
    corev1::NfsVolumeSource {
        #[keep] server: "server",
        #[keep] path: "path",
        read_only: "readOnly",
    }
    corev1::IscsiVolumeSource {
        #[keep] target_portal: "targetPortal",
        #[keep] iqn: "iqn",
        #[keep] lun: "lun",
        iscsi_interface: "iscsiInterface",
        fs_type: "fsType",
        read_only: "readOnly",
        portals: "portals",
        chap_auth_discovery: "chapAuthDiscovery",
        chap_auth_session: "chapAuthSession",
        secret_ref: "secretRef",
        #[keep] initiator_name: "initiatorName",
    }
    corev1::GlusterfsVolumeSource {
        #[keep] endpoints: "endpoints",
        #[keep] path: "path",
        read_only: "readOnly",
    }
    corev1::PersistentVolumeClaimVolumeSource {
        #[keep] claim_name: "claimName",
        read_only: "readOnly",
    }
    corev1::RbdVolumeSource {
        monitors: "monitors",
        #[keep] image: "image",
        fs_type: "fsType",
        pool: "pool",
        user: "user",
        keyring: "keyring",
        secret_ref: "secretRef",
        read_only: "readOnly",
    }
    corev1::FlexVolumeSource {
        #[keep] driver: "driver",
        fs_type: "fsType",
        secret_ref: "secretRef",
        read_only: "readOnly",
        options: "options",
    }
    corev1::CinderVolumeSource {
        #[keep] volume_id: "volumeID",
        fs_type: "fsType",
        read_only: "readOnly",
        secret_ref: "secretRef",
    }
    corev1::CephFsVolumeSource {
        monitors: "monitors",
        path: "path",
        user: "user",
        secret_file: "secretFile",
        secret_ref: "secretRef",
        read_only: "readOnly",
    }
    corev1::FlockerVolumeSource {
        dataset_name: "datasetName",
        dataset_uuid: "datasetUUID",
    }
    corev1::DownwardAPIVolumeSource {
        items: "items",
        #[keep] default_mode: "defaultMode",
    }
    corev1::FcVolumeSource {
        target_ww_ns: "targetWWNs",
        #[keep] lun: "lun",
        fs_type: "fsType",
        read_only: "readOnly",
        wwids: "wwids",
    }
    corev1::AzureFileVolumeSource {
        #[keep] secret_name: "secretName",
        #[keep] share_name: "shareName",
        read_only: "readOnly",
    }
    corev1::ConfigMapVolumeSource {
        #[flatten] local_object_reference,
        items: "items",
        #[keep] default_mode: "defaultMode",
        #[keep] optional: "optional",
    }
    corev1::VsphereVirtualDiskVolumeSource {
        #[keep] volume_path: "volumePath",
        fs_type: "fsType",
        storage_policy_name: "storagePolicyName",
        storage_policy_id: "storagePolicyID",
    }
    corev1::QuobyteVolumeSource {
        #[keep] registry: "registry",
        #[keep] volume: "volume",
        read_only: "readOnly",
        user: "user",
        group: "group",
        tenant: "tenant",
    }
    corev1::AzureDiskVolumeSource {
        #[keep] disk_name: "diskName",
        #[keep] disk_uri: "diskURI",
        #[keep] caching_mode: "cachingMode",
        #[keep] fs_type: "fsType",
        #[keep] read_only: "readOnly",
        #[keep] kind: "kind",
    }
    corev1::PhotonPersistentDiskVolumeSource {
        #[keep] pd_id: "pdID",
        fs_type: "fsType",
    }
    corev1::ProjectedVolumeSource {
        sources: "sources",
        #[keep] default_mode: "defaultMode",
    }
    corev1::PortworxVolumeSource {
        #[keep] volume_id: "volumeID",
        fs_type: "fsType",
        read_only: "readOnly",
    }
    corev1::ScaleIoVolumeSource {
        #[keep] gateway: "gateway",
        #[keep] system: "system",
        secret_ref: "secretRef",
        ssl_enabled: "sslEnabled",
        protection_domain: "protectionDomain",
        storage_pool: "storagePool",
        storage_mode: "storageMode",
        volume_name: "volumeName",
        fs_type: "fsType",
        read_only: "readOnly",
    }
    corev1::StorageOsVolumeSource {
        volume_name: "volumeName",
        volume_namespace: "volumeNamespace",
        fs_type: "fsType",
        read_only: "readOnly",
        secret_ref: "secretRef",
    }
    corev1::CSIVolumeSource {
        #[keep] driver: "driver",
        #[keep] read_only: "readOnly",
        #[keep] fs_type: "fsType",
        volume_attributes: "volumeAttributes",
        node_publish_secret_ref: "nodePublishSecretRef",
    }
    corev1::EphemeralVolumeSource {
        volume_claim_template: "volumeClaimTemplate",
    }
    corev1::ImageVolumeSource {
        reference: "reference",
        pull_policy: "pullPolicy",
    }
    corev1::VolumeResourceRequirements {
        limits: "limits",
        requests: "requests",
    }
    corev1::TypedLocalObjectReference {
        #[keep] api_group: "apiGroup",
        #[keep] kind: "kind",
        #[keep] name: "name",
    }
    corev1::TypedObjectReference {
        #[keep] api_group: "apiGroup",
        #[keep] kind: "kind",
        #[keep] name: "name",
        #[keep] namespace: "namespace",
    }
    corev1::PersistentVolumeClaimCondition {
        #[keep] r#type: "type",
        #[keep] status: "status",
        last_probe_time: "lastProbeTime",
        last_transition_time: "lastTransitionTime",
        reason: "reason",
        message: "message",
    }
    corev1::ModifyVolumeStatus {
        target_volume_attributes_class_name: "targetVolumeAttributesClassName",
        #[keep] status: "status",
    }
    corev1::KeyToPath {
        #[keep] key: "key",
        #[keep] path: "path",
        #[keep] mode: "mode",
    }
    corev1::DownwardAPIVolumeFile {
        #[keep] path: "path",
        field_ref: "fieldRef",
        resource_field_ref: "resourceFieldRef",
        #[keep] mode: "mode",
    }
    corev1::VolumeProjection {
        secret: "secret",
        downward_api: "downwardAPI",
        config_map: "configMap",
        service_account_token: "serviceAccountToken",
        cluster_trust_bundle: "clusterTrustBundle",
    }
    corev1::PersistentVolumeClaimTemplate {
        metadata: "metadata",
        spec: "spec",
    }
    corev1::SecretProjection {
        #[flatten] local_object_reference,
        items: "items",
        #[keep] optional: "optional",
    }
    corev1::DownwardAPIProjection {
        items: "items",
    }
    corev1::ConfigMapProjection {
        #[flatten] local_object_reference,
        items: "items",
        #[keep] optional: "optional",
    }
    corev1::ServiceAccountTokenProjection {
        audience: "audience",
        #[keep] expiration_seconds: "expirationSeconds",
        #[keep] path: "path",
    }
    corev1::ClusterTrustBundleProjection {
        #[keep] name: "name",
        #[keep] signer_name: "signerName",
        label_selector: "labelSelector",
        #[keep] optional: "optional",
        #[keep] path: "path",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::convert::ToJson;
    use super::*;

    #[test]
    fn volume_sources_are_inline_and_pointer_strings_keep_empty() {
        let volumes = [
            corev1::Volume {
                name: Some("cfg".to_owned()),
                volume_source: Some(corev1::VolumeSource {
                    config_map: Some(corev1::ConfigMapVolumeSource {
                        local_object_reference: Some(corev1::LocalObjectReference {
                            name: Some("settings".to_owned()),
                        }),
                        default_mode: Some(0o644),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
            corev1::Volume {
                name: Some("scratch".to_owned()),
                volume_source: Some(corev1::VolumeSource {
                    ephemeral: Some(corev1::EphemeralVolumeSource {
                        volume_claim_template: Some(corev1::PersistentVolumeClaimTemplate {
                            metadata: None,
                            spec: Some(corev1::PersistentVolumeClaimSpec {
                                storage_class_name: Some(String::new()),
                                volume_mode: Some("Filesystem".to_owned()),
                                ..Default::default()
                            }),
                        }),
                    }),
                    ..Default::default()
                }),
            },
        ];
        let got: Vec<_> = volumes.iter().map(|v| v.to_json().ok()).collect();
        let want = [
            json!({"name": "cfg", "configMap": {"name": "settings", "defaultMode": 420}}),
            json!({"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {
                "storageClassName": "",
                "volumeMode": "Filesystem",
            }}}}),
        ];
        assert_eq!(got, want.map(Some));
    }
}
