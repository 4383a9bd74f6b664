//! The `skylark` binary: a thin `main` around the library (docs/architecture.md).

use clap::{CommandFactory, FromArgMatches};
use skylark::cli::{self, Cli, Cmd};

/// mimalloc: the broker allocates and frees many small, short-lived
/// buffers per request on several threads (frames, futures, answers);
/// glibc's malloc spent ~10 % of a one-message-send run in `_int_malloc`,
/// `_int_free` and `malloc_consolidate` (docs/benchmarks.md). Library users
/// embedding the actors keep their own allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The last line of a failed command. Not `eprintln!`, which panics when
/// stderr is a closed pipe (`... 2>&1 | head -1`) and would turn the exit
/// code into 101.
fn say_error(e: &dyn std::fmt::Display) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "error: {e}");
}

/// Whether argument `id` was typed on the command line (not taken from
/// the environment), before or after the subcommand.
fn typed(m: &clap::ArgMatches, id: &str) -> bool {
    m.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
        || m.subcommand().is_some_and(|(_, sub)| typed(sub, id))
}

fn main() {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let server = cli::ServerFlags {
        credentials: cli.access_key.clone().zip(cli.secret_key.clone()),
        tls: [
            ("tls_ca", &cli.tls_ca),
            ("tls_cert", &cli.tls_cert),
            ("tls_key", &cli.tls_key),
        ]
        .map(|(id, v)| v.clone().filter(|_| typed(&matches, id))),
    };
    if let Err(e) = skylark::logging::parse_level(&cli.log_level) {
        say_error(&e);
        std::process::exit(2);
    }
    let security =
        cli::set_credentials(cli.access_key.take(), cli.secret_key.take()).and_then(|_| {
            cli::set_tls_ca(
                cli.tls_ca.as_deref(),
                cli.tls_cert.as_deref(),
                cli.tls_key.as_deref(),
            )
        });
    if let Err(e) = security {
        say_error(&e);
        std::process::exit(2);
    }
    let prints_results = matches!(
        cli.cmd,
        Cmd::Produce(_) | Cmd::Consume(_) | Cmd::Admin(_) | Cmd::Bench(_)
    );
    if prints_results {
        if let Err(e) = cli::require_stdout() {
            say_error(&format_args!("{e:#}"));
            std::process::exit(1);
        }
    }
    let log = skylark::logging::logger(&cli.log_level, cli.log_json);
    let result = match cli.cmd {
        Cmd::Standalone(a) => cli::server::standalone(a, &server, log.clone()),
        Cmd::Namesrv(a) => cli::server::namesrv(a, &server, log.clone()),
        Cmd::Broker(a) => cli::server::broker(a, &server, log.clone()),
        Cmd::Controller(a) => cli::controller::run(a, &server, log.clone()),
        Cmd::Produce(a) if a.transaction.is_some() => cli::produce_tx::run(a),
        Cmd::Produce(a) => cli::produce::run(a),
        Cmd::Consume(a) => cli::consume::run(a),
        Cmd::Admin(a) => cli::admin::run(a),
        Cmd::Bench(a) => cli::bench::run(a),
    };
    // Let the async log drain flush before exiting.
    drop(log);
    if let Err(e) = result {
        say_error(&format_args!("{e:#}"));
        std::process::exit(cli::exit_code(&e));
    }
}
