//! Skylark: a distributed message broker in the family of Apache RocketMQ.
//!
//! * [`codec`] — the wire protocol (re-export of `skylark-codec`).
//! * [`client`] — the actor-based Producer, TransactionProducer, PullConsumer
//!   and PushConsumer; it talks to brokers over the wire only and builds
//!   against `skylark-codec` alone.
//!
//! With the default feature `broker` (turn it off with
//! `default-features = false` to depend on the client alone):
//!
//! * `actors` — the server actors and storage engine (re-export of `skylark-actors`).
//! * `embedded` — start a NameServer and a Broker inside your own actix System.
//! * `cli`, `config`, `logging` — the `skylark` command line.

#[cfg(feature = "broker")]
pub use skylark_actors as actors;
pub use skylark_codec as codec;

#[cfg(feature = "broker")]
pub mod cli;
pub mod client;
#[cfg(feature = "broker")]
pub mod config;
#[cfg(feature = "broker")]
pub mod embedded;
#[cfg(feature = "broker")]
pub mod logging;
