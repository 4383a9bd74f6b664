//! A NameServer's request-path instrument: the latency of the requests it
//! answered (`rocketmq_rpc_latency`, recorded by the connections through
//! [`NameServerMetrics::observe`]: a NameServer's requests are few, so one
//! shared atomic histogram is cheap enough). The scrape that also asks the
//! NameServer actor for the route table's size is
//! [`super::namesrv_source`].

use prometheus::proto::MetricFamily;

/// A NameServer's request-path instrument.
pub struct NameServerMetrics {
    rpc_latency: prometheus::HistogramVec,
}

impl NameServerMetrics {
    /// `rocketmq_rpc_latency` labelled `node_type="namesrv"`, `node_id`.
    pub fn new(node_id: &str) -> NameServerMetrics {
        let opts = prometheus::HistogramOpts::new(
            "rocketmq_rpc_latency",
            "Time from a request frame's dispatch to its answer, in milliseconds, \
             by request code (10 = SendMessage, 11 = SendBatch, 20 = PullMessage).",
        )
        .const_label("node_type", "namesrv")
        .const_label("node_id", node_id)
        .buckets(super::broker::LATENCY_BUCKETS_MS.to_vec());
        NameServerMetrics {
            rpc_latency: prometheus::HistogramVec::new(opts, &["request_code", "request"])
                .expect("valid histogram options"),
        }
    }

    /// One request of `cmd` took `elapsed`.
    pub fn observe(&self, cmd: skylark_codec::Command, elapsed: std::time::Duration) {
        let code = cmd.as_u16().to_string();
        let name = format!("{cmd:?}");
        self.rpc_latency
            .with_label_values(&[code.as_str(), name.as_str()])
            .observe(elapsed.as_secs_f64() * 1000.0);
    }

    /// The latency histogram's families, for a scrape.
    pub fn latency_families(&self) -> Vec<MetricFamily> {
        use prometheus::core::Collector;
        self.rpc_latency.collect()
    }
}
