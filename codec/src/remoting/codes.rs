//! Request and response codes of RocketMQ's remoting protocol
//! (`RequestCode`, `ResponseCode`, `RemotingSysResponseCode` in RocketMQ),
//! the ones Skylark names. The numbers are RocketMQ's wire values.

/// Request codes (`RemotingCommand.code` of a request).
pub mod request {
    pub const SEND_MESSAGE: i32 = 10;
    pub const PULL_MESSAGE: i32 = 11;
    pub const QUERY_MESSAGE: i32 = 12;
    pub const QUERY_BROKER_OFFSET: i32 = 13;
    pub const QUERY_CONSUMER_OFFSET: i32 = 14;
    pub const UPDATE_CONSUMER_OFFSET: i32 = 15;
    pub const UPDATE_AND_CREATE_TOPIC: i32 = 17;
    pub const GET_ALL_TOPIC_CONFIG: i32 = 21;
    pub const UPDATE_BROKER_CONFIG: i32 = 25;
    pub const GET_BROKER_CONFIG: i32 = 26;
    pub const GET_BROKER_RUNTIME_INFO: i32 = 28;
    pub const SEARCH_OFFSET_BY_TIMESTAMP: i32 = 29;
    pub const GET_MAX_OFFSET: i32 = 30;
    pub const GET_MIN_OFFSET: i32 = 31;
    pub const GET_EARLIEST_MSG_STORETIME: i32 = 32;
    pub const VIEW_MESSAGE_BY_ID: i32 = 33;
    pub const HEART_BEAT: i32 = 34;
    pub const UNREGISTER_CLIENT: i32 = 35;
    pub const CONSUMER_SEND_MSG_BACK: i32 = 36;
    pub const END_TRANSACTION: i32 = 37;
    pub const GET_CONSUMER_LIST_BY_GROUP: i32 = 38;
    pub const CHECK_TRANSACTION_STATE: i32 = 39;
    pub const NOTIFY_CONSUMER_IDS_CHANGED: i32 = 40;
    pub const LOCK_BATCH_MQ: i32 = 41;
    pub const UNLOCK_BATCH_MQ: i32 = 42;
    pub const GET_ALL_CONSUMER_OFFSET: i32 = 43;
    pub const GET_ALL_DELAY_OFFSET: i32 = 45;
    pub const CHECK_CLIENT_CONFIG: i32 = 46;
    pub const UPDATE_AND_CREATE_ACL_CONFIG: i32 = 50;
    pub const DELETE_ACL_CONFIG: i32 = 51;
    pub const GET_BROKER_CLUSTER_ACL_INFO: i32 = 52;
    pub const PUT_KV_CONFIG: i32 = 100;
    pub const GET_KV_CONFIG: i32 = 101;
    pub const DELETE_KV_CONFIG: i32 = 102;
    pub const REGISTER_BROKER: i32 = 103;
    pub const UNREGISTER_BROKER: i32 = 104;
    pub const GET_ROUTEINFO_BY_TOPIC: i32 = 105;
    pub const GET_BROKER_CLUSTER_INFO: i32 = 106;
    pub const UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: i32 = 200;
    pub const GET_ALL_SUBSCRIPTIONGROUP_CONFIG: i32 = 201;
    pub const GET_TOPIC_STATS_INFO: i32 = 202;
    pub const GET_CONSUMER_CONNECTION_LIST: i32 = 203;
    pub const GET_PRODUCER_CONNECTION_LIST: i32 = 204;
    pub const WIPE_WRITE_PERM_OF_BROKER: i32 = 205;
    pub const GET_ALL_TOPIC_LIST_FROM_NAMESERVER: i32 = 206;
    pub const DELETE_SUBSCRIPTIONGROUP: i32 = 207;
    pub const GET_CONSUME_STATS: i32 = 208;
    pub const DELETE_TOPIC_IN_BROKER: i32 = 215;
    pub const DELETE_TOPIC_IN_NAMESRV: i32 = 216;
    pub const INVOKE_BROKER_TO_RESET_OFFSET: i32 = 222;
    pub const INVOKE_BROKER_TO_GET_CONSUMER_STATUS: i32 = 223;
    pub const GET_TOPICS_BY_CLUSTER: i32 = 224;
    pub const QUERY_TOPIC_CONSUME_BY_WHO: i32 = 300;
    pub const GET_CONSUMER_RUNNING_INFO: i32 = 307;
    pub const CONSUME_MESSAGE_DIRECTLY: i32 = 309;
    pub const SEND_MESSAGE_V2: i32 = 310;
    pub const CLONE_GROUP_OFFSET: i32 = 314;
    pub const VIEW_BROKER_STATS_DATA: i32 = 315;
    pub const CLEAN_UNUSED_TOPIC: i32 = 316;
    pub const GET_BROKER_CONSUME_STATS: i32 = 317;
    pub const UPDATE_NAMESRV_CONFIG: i32 = 318;
    pub const GET_NAMESRV_CONFIG: i32 = 319;
    pub const SEND_BATCH_MESSAGE: i32 = 320;
    pub const QUERY_CONSUME_QUEUE: i32 = 321;

    /// RocketMQ's name of every code above (its `RequestCode` constant),
    /// for error texts an operator can match with RocketMQ's tools.
    const NAMES: &[(i32, &str)] = &[
        (SEND_MESSAGE, "SEND_MESSAGE"),
        (PULL_MESSAGE, "PULL_MESSAGE"),
        (QUERY_MESSAGE, "QUERY_MESSAGE"),
        (QUERY_BROKER_OFFSET, "QUERY_BROKER_OFFSET"),
        (QUERY_CONSUMER_OFFSET, "QUERY_CONSUMER_OFFSET"),
        (UPDATE_CONSUMER_OFFSET, "UPDATE_CONSUMER_OFFSET"),
        (UPDATE_AND_CREATE_TOPIC, "UPDATE_AND_CREATE_TOPIC"),
        (GET_ALL_TOPIC_CONFIG, "GET_ALL_TOPIC_CONFIG"),
        (UPDATE_BROKER_CONFIG, "UPDATE_BROKER_CONFIG"),
        (GET_BROKER_CONFIG, "GET_BROKER_CONFIG"),
        (GET_BROKER_RUNTIME_INFO, "GET_BROKER_RUNTIME_INFO"),
        (SEARCH_OFFSET_BY_TIMESTAMP, "SEARCH_OFFSET_BY_TIMESTAMP"),
        (GET_MAX_OFFSET, "GET_MAX_OFFSET"),
        (GET_MIN_OFFSET, "GET_MIN_OFFSET"),
        (GET_EARLIEST_MSG_STORETIME, "GET_EARLIEST_MSG_STORETIME"),
        (VIEW_MESSAGE_BY_ID, "VIEW_MESSAGE_BY_ID"),
        (HEART_BEAT, "HEART_BEAT"),
        (UNREGISTER_CLIENT, "UNREGISTER_CLIENT"),
        (CONSUMER_SEND_MSG_BACK, "CONSUMER_SEND_MSG_BACK"),
        (END_TRANSACTION, "END_TRANSACTION"),
        (GET_CONSUMER_LIST_BY_GROUP, "GET_CONSUMER_LIST_BY_GROUP"),
        (CHECK_TRANSACTION_STATE, "CHECK_TRANSACTION_STATE"),
        (NOTIFY_CONSUMER_IDS_CHANGED, "NOTIFY_CONSUMER_IDS_CHANGED"),
        (LOCK_BATCH_MQ, "LOCK_BATCH_MQ"),
        (UNLOCK_BATCH_MQ, "UNLOCK_BATCH_MQ"),
        (GET_ALL_CONSUMER_OFFSET, "GET_ALL_CONSUMER_OFFSET"),
        (GET_ALL_DELAY_OFFSET, "GET_ALL_DELAY_OFFSET"),
        (CHECK_CLIENT_CONFIG, "CHECK_CLIENT_CONFIG"),
        (UPDATE_AND_CREATE_ACL_CONFIG, "UPDATE_AND_CREATE_ACL_CONFIG"),
        (DELETE_ACL_CONFIG, "DELETE_ACL_CONFIG"),
        (GET_BROKER_CLUSTER_ACL_INFO, "GET_BROKER_CLUSTER_ACL_INFO"),
        (PUT_KV_CONFIG, "PUT_KV_CONFIG"),
        (GET_KV_CONFIG, "GET_KV_CONFIG"),
        (DELETE_KV_CONFIG, "DELETE_KV_CONFIG"),
        (REGISTER_BROKER, "REGISTER_BROKER"),
        (UNREGISTER_BROKER, "UNREGISTER_BROKER"),
        (GET_ROUTEINFO_BY_TOPIC, "GET_ROUTEINFO_BY_TOPIC"),
        (GET_BROKER_CLUSTER_INFO, "GET_BROKER_CLUSTER_INFO"),
        (
            UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
            "UPDATE_AND_CREATE_SUBSCRIPTIONGROUP",
        ),
        (
            GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
            "GET_ALL_SUBSCRIPTIONGROUP_CONFIG",
        ),
        (GET_TOPIC_STATS_INFO, "GET_TOPIC_STATS_INFO"),
        (GET_CONSUMER_CONNECTION_LIST, "GET_CONSUMER_CONNECTION_LIST"),
        (GET_PRODUCER_CONNECTION_LIST, "GET_PRODUCER_CONNECTION_LIST"),
        (WIPE_WRITE_PERM_OF_BROKER, "WIPE_WRITE_PERM_OF_BROKER"),
        (
            GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
            "GET_ALL_TOPIC_LIST_FROM_NAMESERVER",
        ),
        (DELETE_SUBSCRIPTIONGROUP, "DELETE_SUBSCRIPTIONGROUP"),
        (GET_CONSUME_STATS, "GET_CONSUME_STATS"),
        (DELETE_TOPIC_IN_BROKER, "DELETE_TOPIC_IN_BROKER"),
        (DELETE_TOPIC_IN_NAMESRV, "DELETE_TOPIC_IN_NAMESRV"),
        (
            INVOKE_BROKER_TO_RESET_OFFSET,
            "INVOKE_BROKER_TO_RESET_OFFSET",
        ),
        (
            INVOKE_BROKER_TO_GET_CONSUMER_STATUS,
            "INVOKE_BROKER_TO_GET_CONSUMER_STATUS",
        ),
        (GET_TOPICS_BY_CLUSTER, "GET_TOPICS_BY_CLUSTER"),
        (QUERY_TOPIC_CONSUME_BY_WHO, "QUERY_TOPIC_CONSUME_BY_WHO"),
        (GET_CONSUMER_RUNNING_INFO, "GET_CONSUMER_RUNNING_INFO"),
        (CONSUME_MESSAGE_DIRECTLY, "CONSUME_MESSAGE_DIRECTLY"),
        (SEND_MESSAGE_V2, "SEND_MESSAGE_V2"),
        (CLONE_GROUP_OFFSET, "CLONE_GROUP_OFFSET"),
        (VIEW_BROKER_STATS_DATA, "VIEW_BROKER_STATS_DATA"),
        (CLEAN_UNUSED_TOPIC, "CLEAN_UNUSED_TOPIC"),
        (GET_BROKER_CONSUME_STATS, "GET_BROKER_CONSUME_STATS"),
        (UPDATE_NAMESRV_CONFIG, "UPDATE_NAMESRV_CONFIG"),
        (GET_NAMESRV_CONFIG, "GET_NAMESRV_CONFIG"),
        (SEND_BATCH_MESSAGE, "SEND_BATCH_MESSAGE"),
        (QUERY_CONSUME_QUEUE, "QUERY_CONSUME_QUEUE"),
    ];

    /// RocketMQ's name of request `code` (`UPDATE_AND_CREATE_TOPIC` for
    /// 17), `None` for a code not listed here.
    pub fn name(code: i32) -> Option<&'static str> {
        NAMES.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn every_listed_code_has_one_name() {
            for (i, (code, name)) in super::NAMES.iter().enumerate() {
                assert_eq!(super::name(*code), Some(*name));
                assert!(!super::NAMES[..i].iter().any(|(c, _)| c == code), "{name}");
            }
            assert_eq!(super::name(17), Some("UPDATE_AND_CREATE_TOPIC"));
            assert_eq!(super::name(9999), None);
        }
    }
}

/// Response codes (`RemotingCommand.code` of a response).
pub mod response {
    pub const SUCCESS: i32 = 0;
    pub const SYSTEM_ERROR: i32 = 1;
    pub const SYSTEM_BUSY: i32 = 2;
    pub const REQUEST_CODE_NOT_SUPPORTED: i32 = 3;
    pub const FLUSH_DISK_TIMEOUT: i32 = 10;
    pub const SLAVE_NOT_AVAILABLE: i32 = 11;
    pub const FLUSH_SLAVE_TIMEOUT: i32 = 12;
    pub const MESSAGE_ILLEGAL: i32 = 13;
    pub const SERVICE_NOT_AVAILABLE: i32 = 14;
    pub const NO_PERMISSION: i32 = 16;
    pub const TOPIC_NOT_EXIST: i32 = 17;
    pub const PULL_NOT_FOUND: i32 = 19;
    pub const PULL_RETRY_IMMEDIATELY: i32 = 20;
    pub const PULL_OFFSET_MOVED: i32 = 21;
    pub const QUERY_NOT_FOUND: i32 = 22;
    pub const SUBSCRIPTION_PARSE_FAILED: i32 = 23;
    pub const SUBSCRIPTION_GROUP_NOT_EXIST: i32 = 26;
}
