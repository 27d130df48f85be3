#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod apiserver;
pub mod cli;
pub mod controllers;
pub mod patch;
pub mod pki;
pub mod registry;
pub mod server;
pub mod store;
pub mod watch_cache;
