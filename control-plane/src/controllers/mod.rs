//! Controllers: level-triggered loops that drive stored objects towards what they ask for.
//! Each reacts to the watch cache's changes, keeps its own small index, and acts through the
//! API server's own write paths, so its writes are validated, versioned and watched like any
//! client's.

pub mod garbage_collector;
