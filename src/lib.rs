//! Skylark: a distributed message broker in the family of Apache RocketMQ.
pub use skylark_actors as actors;
pub use skylark_codec as codec;
