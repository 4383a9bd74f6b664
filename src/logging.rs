//! slog setup: human-readable to stderr by default, JSON on request.

use slog::{o, Drain, Level, Logger};

/// Builds the root logger. `level` is one of error|warn|info|debug|trace;
/// `json` switches to one JSON object per line.
pub fn logger(level: &str, json: bool) -> Logger {
    let level = match level.to_ascii_lowercase().as_str() {
        "error" => Level::Error,
        "warn" | "warning" => Level::Warning,
        "debug" => Level::Debug,
        "trace" => Level::Trace,
        "off" | "none" => return Logger::root(slog::Discard, o!()),
        _ => Level::Info,
    };
    if json {
        let drain = slog_json::Json::default(std::io::stderr()).fuse();
        let drain = slog_async::Async::new(drain).chan_size(4096).build().fuse();
        Logger::root(drain.filter_level(level).fuse(), o!())
    } else {
        let decorator = slog_term::TermDecorator::new().stderr().build();
        let drain = slog_term::CompactFormat::new(decorator).build().fuse();
        let drain = slog_async::Async::new(drain).chan_size(4096).build().fuse();
        Logger::root(drain.filter_level(level).fuse(), o!())
    }
}
