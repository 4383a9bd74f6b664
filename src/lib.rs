//! Skylark: a distributed message broker in the family of Apache RocketMQ.
//!
//! * [`codec`] — the wire protocol (re-export of `skylark-codec`).
//! * [`actors`] — the server actors and storage engine (re-export of `skylark-actors`).
//! * [`client`] — the actor-based Producer and PullConsumer.
//! * [`embedded`] — start a NameServer and a Broker inside your own actix System.
//! * [`cli`], [`config`], [`logging`] — the `skylark` command line.

pub use skylark_actors as actors;
pub use skylark_codec as codec;

pub mod cli;
pub mod client;
pub mod config;
pub mod embedded;
pub mod logging;
