//! What a slave's Broker publishes about its master: the addresses each
//! NameServer registration answer names ([`MasterAddrs`]), sent to the one
//! subscriber that asked with [`WatchMaster`] (the Replicator).
//!
//! The messages live with their publisher, so the Replicator (and the
//! controller's member, which names the master in controller mode) import
//! them from here and the Broker imports nothing of the Replicator.

use actix::prelude::*;

/// Slave: the master's addresses as a NameServer answered a registration.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct MasterAddrs {
    pub master_addr: Option<String>,
    pub ha_master_addr: Option<String>,
}

/// Slave: send the master's addresses from every registration answer to
/// this recipient (the Replicator).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WatchMaster(pub Recipient<MasterAddrs>);
