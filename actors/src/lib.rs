//! Skylark's actors and storage engine.
pub mod store;
