//! Building metric families at scrape time from values an owner reported.
//!
//! Each family is made by a fresh prometheus vector (`IntCounterVec`,
//! `GaugeVec`) filled with the scraped values and collected at once, so the
//! crate checks names and labels and its encoder writes the text; nothing
//! here formats exposition text. [`merge`] joins same-named families of
//! several sources (two brokers embedded in one process).

use std::collections::{BTreeMap, HashMap};

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntCounterVec, Opts};

/// Families under construction, every one carrying the same constant
/// labels (`cluster`, `node_id`, ...).
pub struct Families {
    const_labels: HashMap<String, String>,
    out: Vec<MetricFamily>,
}

impl Families {
    pub fn new(const_labels: &[(&str, &str)]) -> Families {
        Families {
            const_labels: const_labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            out: Vec::new(),
        }
    }

    fn opts(&self, name: &str, help: &str) -> Opts {
        Opts::new(name, help).const_labels(self.const_labels.clone())
    }

    /// A counter family: one sample per `(label values, value)` row.
    pub fn counter<L, S>(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        rows: impl IntoIterator<Item = (L, u64)>,
    ) where
        L: AsRef<[S]>,
        S: AsRef<str>,
    {
        let v = IntCounterVec::new(self.opts(name, help), labels);
        self.fill(v, rows, |c, n| c.inc_by(n));
    }

    /// A gauge family: one sample per `(label values, value)` row.
    pub fn gauge<L, S>(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        rows: impl IntoIterator<Item = (L, f64)>,
    ) where
        L: AsRef<[S]>,
        S: AsRef<str>,
    {
        let v = GaugeVec::new(self.opts(name, help), labels);
        self.fill(v, rows, |g, x| g.set(x));
    }

    /// Sets each row's sample of the fresh vector `v` with `set`, then
    /// collects it (a vector the crate refused adds nothing).
    fn fill<B, L, S, X>(
        &mut self,
        v: prometheus::Result<MetricVec<B>>,
        rows: impl IntoIterator<Item = (L, X)>,
        set: impl Fn(&B::M, X),
    ) where
        B: MetricVecBuilder,
        L: AsRef<[S]>,
        S: AsRef<str>,
    {
        let Ok(v) = v else {
            return;
        };
        for (l, x) in rows {
            let vals: Vec<&str> = l.as_ref().iter().map(AsRef::as_ref).collect();
            if let Ok(m) = v.get_metric_with_label_values(&vals) {
                set(&m, x);
            }
        }
        self.out.extend(v.collect());
    }

    /// Adds families collected elsewhere (a histogram vector).
    pub fn extend(&mut self, fams: Vec<MetricFamily>) {
        self.out.extend(fams);
    }

    /// The families with at least one sample.
    pub fn finish(self) -> Vec<MetricFamily> {
        self.out
            .into_iter()
            .filter(|f| !f.get_metric().is_empty())
            .collect()
    }
}

/// Joins families of the same name (their samples differ by constant
/// labels), drops empty ones, and orders them by name.
pub fn merge(fams: Vec<MetricFamily>) -> Vec<MetricFamily> {
    let mut by_name: BTreeMap<String, MetricFamily> = BTreeMap::new();
    for mut f in fams {
        if f.get_metric().is_empty() {
            continue;
        }
        match by_name.get_mut(f.name()) {
            Some(into) if into.get_field_type() == f.get_field_type() => {
                let mut ms = into.take_metric();
                ms.extend(f.take_metric());
                into.set_metric(ms);
            }
            // Same name, other type: keep the first, as a registry would.
            Some(_) => {}
            None => {
                by_name.insert(f.name().to_string(), f);
            }
        }
    }
    by_name.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: Vec<MetricFamily>) -> String {
        super::super::encode(merge(f))
    }

    #[test]
    fn rows_become_samples_with_const_labels() {
        let mut f = Families::new(&[("cluster", "c1"), ("node_id", "b")]);
        f.counter(
            "rocketmq_messages_in_total",
            "in",
            &["topic"],
            [(["T"], 1000u64), (["U"], 3)],
        );
        f.gauge("g", "g", &[], [(Vec::<String>::new(), 0.5)]);
        let t = text(f.finish());
        assert!(
            t.contains("# TYPE rocketmq_messages_in_total counter"),
            "{t}"
        );
        assert!(
            t.contains(r#"rocketmq_messages_in_total{cluster="c1",node_id="b",topic="T"} 1000"#),
            "{t}"
        );
        assert!(t.contains(r#"g{cluster="c1",node_id="b"} 0.5"#), "{t}");
    }

    #[test]
    fn empty_families_are_left_out_and_same_names_merge() {
        let mut a = Families::new(&[("node_id", "a")]);
        a.gauge("x", "x", &["q"], [(["0"], 1.0)]);
        a.gauge("empty", "e", &["q"], Vec::<([&str; 1], f64)>::new());
        let mut b = Families::new(&[("node_id", "b")]);
        b.gauge("x", "x", &["q"], [(["0"], 2.0)]);
        let mut all = a.finish();
        all.extend(b.finish());
        let merged = merge(all);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].get_metric().len(), 2);
        let t = super::super::encode(merged);
        assert!(!t.contains("empty"), "{t}");
    }

    #[test]
    fn a_bad_label_count_is_skipped_not_a_panic() {
        let mut f = Families::new(&[]);
        f.gauge("x", "x", &["a", "b"], [(["only-one"], 1.0)]);
        f.counter("bad name", "x", &[], [(Vec::<String>::new(), 1)]);
        assert!(f.finish().is_empty());
    }
}
