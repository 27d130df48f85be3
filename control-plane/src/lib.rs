#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod apiserver;
pub mod bootstrap_token;
pub mod cli;
pub mod controllers;
pub mod leader_election;
pub mod node_gateway;
pub mod patch;
pub mod pki;
pub mod registry;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod up;
pub mod watch_cache;
