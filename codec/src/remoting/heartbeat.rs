//! RocketMQ's JSON request bodies a broker reads from its clients
//! (`HeartbeatData` of HEART_BEAT, `CheckClientRequestBody` of
//! CHECK_CLIENT_CONFIG), with the fields Skylark uses: decode them with
//! [`super::decode_json_body`], under the decode budget.

/// RocketMQ's `HeartbeatData` body (JSON), the fields Skylark uses.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatData {
    #[serde(rename = "clientID", alias = "clientId")]
    pub client_id: String,
    #[serde(default)]
    pub producer_data_set: Vec<ProducerData>,
    #[serde(default)]
    pub consumer_data_set: Vec<ConsumerData>,
}

/// One producer group of a heartbeat.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerData {
    pub group_name: String,
}

/// One consumer group of a heartbeat, with its subscriptions.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerData {
    pub group_name: String,
    #[serde(default)]
    pub consume_type: String,
    #[serde(default)]
    pub message_model: String,
    #[serde(default)]
    pub consume_from_where: String,
    #[serde(default)]
    pub subscription_data_set: Vec<SubscriptionData>,
}

/// A consumer's subscription to one topic (a tag or SQL92 expression).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionData {
    pub topic: String,
    #[serde(default)]
    pub sub_string: String,
    #[serde(default)]
    pub expression_type: String,
}

/// CHECK_CLIENT_CONFIG's body: the subscription a push consumer will use.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckClientRequestBody {
    pub subscription_data: Option<SubscriptionData>,
}
