//! Test support: a log drain that keeps what it is given, for tests that
//! check what an operator would read.

/// Collects log lines (level, message and its `key=value` pairs) for
/// assertions.
#[derive(Clone, Default)]
pub(crate) struct Captured(pub(crate) std::sync::Arc<std::sync::Mutex<Vec<(slog::Level, String)>>>);

/// Renders a record's pairs as ` key=value`.
struct Pairs(String);

impl slog::Serializer for Pairs {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments<'_>) -> slog::Result {
        self.0.push_str(&format!(" {key}={val}"));
        Ok(())
    }
}

impl slog::Drain for Captured {
    type Ok = ();
    type Err = slog::Never;
    fn log(&self, r: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        let mut pairs = Pairs(r.msg().to_string());
        let _ = slog::KV::serialize(&r.kv(), r, &mut pairs);
        if let Ok(mut v) = self.0.lock() {
            v.push((r.level(), pairs.0));
        }
        Ok(())
    }
}

impl Captured {
    pub(crate) fn has(&self, level: slog::Level, text: &str) -> bool {
        let v = self.0.lock().unwrap();
        v.iter().any(|(l, m)| *l == level && m.contains(text))
    }
    pub(crate) fn count(&self, text: &str) -> usize {
        let v = self.0.lock().unwrap();
        v.iter().filter(|(_, m)| m.contains(text)).count()
    }
}
