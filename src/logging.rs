//! slog setup: human-readable to stderr by default, JSON on request.
//!
//! The human format is one self-contained line per record: time, level,
//! message, then the record's key-values and every key-value of its logger
//! (`broker: broker-a, actor: storage`, ...). slog-term's compact format
//! printed those context values only on a header line when they changed,
//! so with several brokers logging to one terminal a WARN line did not say
//! whose it was; [`human_format`] puts them on every line.

use slog::{o, Drain, Level, Logger};

/// Parses a `--log-level` value: `Ok(None)` means off.
pub fn parse_level(level: &str) -> Result<Option<Level>, String> {
    match level.to_ascii_lowercase().as_str() {
        "error" => Ok(Some(Level::Error)),
        "warn" | "warning" => Ok(Some(Level::Warning)),
        "info" => Ok(Some(Level::Info)),
        "debug" => Ok(Some(Level::Debug)),
        "trace" => Ok(Some(Level::Trace)),
        "off" | "none" => Ok(None),
        _ => Err(format!(
            "--log-level {level:?}: expected error, warn, info, debug, trace or off"
        )),
    }
}

/// The human line format on any slog-term decorator: every line carries
/// its logger's context (which broker, which actor).
pub fn human_format<D: slog_term::Decorator>(decorator: D) -> slog_term::FullFormat<D> {
    slog_term::FullFormat::new(decorator).build()
}

/// Builds the root logger. `level` is one of error|warn|info|debug|trace|off
/// (anything else is read as info; [`parse_level`] reports it);
/// `json` switches to one JSON object per line.
pub fn logger(level: &str, json: bool) -> Logger {
    let level = match parse_level(level) {
        Ok(Some(l)) => l,
        Ok(None) => return Logger::root(slog::Discard, o!()),
        Err(_) => Level::Info,
    };
    if json {
        let drain = slog_json::Json::default(std::io::stderr()).fuse();
        let drain = slog_async::Async::new(drain).chan_size(4096).build().fuse();
        Logger::root(drain.filter_level(level).fuse(), o!())
    } else {
        let decorator = slog_term::TermDecorator::new().stderr().build();
        let drain = human_format(decorator).fuse();
        let drain = slog_async::Async::new(drain).chan_size(4096).build().fuse();
        Logger::root(drain.filter_level(level).fuse(), o!())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// A `Write` into a shared buffer.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn human_warn_and_error_lines_each_name_their_broker_and_actor() {
        let buf = Buf::default();
        let drain = human_format(slog_term::PlainSyncDecorator::new(buf.clone())).fuse();
        let root = Logger::root(drain, o!());
        for broker in ["broker-a", "broker-b"] {
            let log = root
                .new(o!("broker" => broker))
                .new(o!("actor" => "storage"));
            slog::warn!(log, "disk almost full"; "ratio" => 0.8);
            slog::error!(log, "flush failed");
            slog::warn!(log, "disk almost full"; "ratio" => 0.9);
        }
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "one line per record: {text}");
        for (i, l) in lines.iter().enumerate() {
            let broker = if i < 3 { "broker-a" } else { "broker-b" };
            assert!(
                l.contains(&format!("broker: {broker}")) && l.contains("actor: storage"),
                "line without its origin: {l:?}"
            );
            assert!(l.contains("WARN") || l.contains("ERRO"), "{l:?}");
        }
    }

    #[test]
    fn log_levels_parse_and_nonsense_is_an_error() {
        assert_eq!(parse_level("WARN"), Ok(Some(Level::Warning)));
        assert_eq!(parse_level("off"), Ok(None));
        assert!(parse_level("loud").unwrap_err().contains("--log-level"));
    }
}
