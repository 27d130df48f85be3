#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod agent;
pub mod connection;
#[cfg(feature = "containerd")]
pub mod containerd;
pub mod credentials;
pub mod durable;
pub mod hollow;
pub mod image_cache;
#[cfg(feature = "containerd")]
pub mod network;
pub mod oci;
pub mod pod;
pub mod run;
