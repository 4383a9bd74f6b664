//! A NameServer's scrape: the route table's size, asked of the NameServer
//! actor (`GetClusterInfo`, `GetTopicList`) when scraped, and the request
//! latency its connections recorded in [`NameServerMetrics`].

use std::sync::Arc;

use actix::Addr;
use futures::future::LocalBoxFuture;
use prometheus::proto::MetricFamily;

use super::families::Families;
use super::namesrv::NameServerMetrics;
use crate::namesrv::{GetClusterInfo, GetTopicList, NameServer};

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
    /// A NameServer has no CommitLog; its listener answers `Busy`.
    fn feeds(&self) -> super::Feeds {
        super::Feeds {
            commit_log: false,
            busy: true,
        }
    }

    fn collect(&self) -> LocalBoxFuture<'static, Vec<MetricFamily>> {
        let addr = self.addr.clone();
        let node_id = self.node_id.clone();
        let latency = self.metrics.latency_families();
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
