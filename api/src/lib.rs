#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod fields;
pub mod join_token;
pub mod labels;
pub mod node_protocol;
pub mod quantity;
pub mod validation;
