//! Scheduler admin: how many delayed messages a broker still holds.
//!
//! Delayed sends themselves travel in the ordinary `SendMessage` /
//! `SendBatch` bodies (`MessageData::delay_level`, `deliver_at_ms`); this
//! family only reports the Scheduler's state.

use serde::{Deserialize, Serialize};

use crate::command::{rpc, Command};

/// Admin → broker: pending delayed messages per level and in the timer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetScheduleStatsRequest {}

/// One delay level's backlog.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DelayLevelStats {
    /// Level, 1-based (RocketMQ's numbering).
    pub level: u32,
    /// The level's delay in milliseconds.
    pub delay_ms: u64,
    /// Messages stored on this level and not delivered yet.
    pub pending: u64,
    /// Schedule-queue offset delivered up to (exclusive).
    pub delivered_offset: u64,
}

/// Answer to [`GetScheduleStatsRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ScheduleStats {
    /// One entry per configured delay level.
    pub levels: Vec<DelayLevelStats>,
    /// Arbitrary-time (timer) messages not delivered yet.
    pub timer_pending: u64,
    /// Timer deliveries are complete up to this time (Unix ms).
    pub timer_delivered_up_to_ms: i64,
    /// Largest accepted delay of a timer message, in milliseconds.
    pub max_delay_ms: u64,
}

rpc!(GetScheduleStatsRequest => ScheduleStats, Command::GetScheduleStats);
