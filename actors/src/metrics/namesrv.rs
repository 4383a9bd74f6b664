//! A NameServer's scrape: the route table's size, asked of the NameServer
//! actor (`GetClusterInfo`, `GetTopicList`) when scraped, and the latency
//! of the requests it answered (`rocketmq_rpc_latency`, recorded by the
//! connections through [`NameServerMetrics::observe`]: a NameServer's
//! requests are few, so one shared atomic histogram is cheap enough).

use std::sync::Arc;

use actix::Addr;
use futures::future::LocalBoxFuture;
use prometheus::proto::MetricFamily;

use super::families::Families;
use crate::namesrv::{GetClusterInfo, GetTopicList, NameServer};

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
}

/// A NameServer as a [`super::Source`]; `node_id` is its listen address.
pub struct NameServerSource {
    addr: Addr<NameServer>,
    node_id: Arc<str>,
    metrics: Arc<NameServerMetrics>,
}

impl NameServerSource {
    pub fn new(
        addr: Addr<NameServer>,
        node_id: &str,
        metrics: Arc<NameServerMetrics>,
    ) -> NameServerSource {
        NameServerSource {
            addr,
            node_id: node_id.into(),
            metrics,
        }
    }
}

impl super::Source for NameServerSource {
    fn collect(&self) -> LocalBoxFuture<'static, Vec<MetricFamily>> {
        let addr = self.addr.clone();
        let node_id = self.node_id.clone();
        let latency = {
            use prometheus::core::Collector;
            self.metrics.rpc_latency.collect()
        };
        Box::pin(async move {
            let (clusters, topics) =
                futures::join!(addr.send(GetClusterInfo), addr.send(GetTopicList));
            let mut f = Families::new(&[("node_type", "namesrv"), ("node_id", &node_id)]);
            if let Ok(c) = clusters {
                let mut per_cluster: std::collections::BTreeMap<&str, u64> = Default::default();
                for b in c.brokers.values() {
                    *per_cluster.entry(b.cluster.as_str()).or_default() += b.addrs.len() as u64;
                }
                f.gauge(
                    "skylark_namesrv_brokers",
                    "Broker processes (masters and slaves) registered and alive, per cluster.",
                    &["cluster"],
                    per_cluster.iter().map(|(k, n)| ([*k], *n as f64)),
                );
            }
            if let Ok(t) = topics {
                f.gauge(
                    "skylark_namesrv_topics",
                    "Topics in the route table.",
                    &[],
                    [([] as [&str; 0], t.topics.len() as f64)],
                );
            }
            f.extend(latency);
            f.finish()
        })
    }
}
