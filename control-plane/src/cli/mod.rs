//! The cluster-facing commands of the `bramble` CLI. They find the cluster the way kubectl does
//! (`--kubeconfig`, else `KUBECONFIG`, else `~/.kube/config`).

pub mod image;
pub mod kubeconfig;
pub mod token;
