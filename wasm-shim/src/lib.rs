#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod cache;
pub mod digest;
pub mod engine;
pub mod exit;
pub mod guest;
pub mod http;
pub mod instance;
pub mod limits;
pub mod log;
pub mod output;
#[cfg(feature = "compiler")]
pub mod precompile;
pub mod sandbox;
pub mod sockets;
