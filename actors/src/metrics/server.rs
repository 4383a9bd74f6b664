//! `GET /metrics` over HTTP (actix-web): the process's metrics in the
//! Prometheus text format (`text/plain; version=0.0.4`). One worker
//! thread; a scrape asks the owning actors by message and never blocks
//! them. Other paths answer 404.

use std::net::SocketAddr;

use actix_web::{web, App, HttpResponse, HttpServer};
use slog::{info, Logger};

/// A running metrics endpoint; stops when dropped.
pub struct MetricsServer {
    pub local_addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
}

impl MetricsServer {
    /// Stops listening and waits for the worker to end.
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        // The command is sent at once; awaiting the returned future is
        // only needed to wait for the worker to finish.
        drop(self.handle.stop(false));
    }
}

async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(prometheus::TEXT_FORMAT)
        .body(super::scrape().await)
}

/// Serves `/metrics` on `host:port` (0 = any free port) inside the current
/// actix System, and turns request-path recording on for the process.
pub async fn serve(host: &str, port: u16, log: &Logger) -> std::io::Result<MetricsServer> {
    let listener = std::net::TcpListener::bind((host, port)).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot serve metrics on {host}:{port}: {e}"),
        )
    })?;
    let local_addr = listener.local_addr()?;
    super::Listener::Metrics.listening();
    let server = HttpServer::new(|| App::new().route("/metrics", web::get().to(metrics)))
        // Counted while open: the connection's extensions drop with it.
        .on_connect(|_, ext| {
            ext.insert(super::CountedConnection::new(super::Listener::Metrics));
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    super::set_recording();
    info!(log, "serving metrics"; "addr" => %local_addr, "path" => "/metrics");
    Ok(MetricsServer { local_addr, handle })
}
