//! The web dashboard the NameServer serves on `dashboard_port` (off unless
//! set; `skylark standalone` serves it on 8088): cluster overview, topics
//! with TPS charts, consumer groups with lag charts, message search,
//! delayed and transactional counts, and alerts. See docs/dashboard.md.
//!
//! * [`sampler::Sampler`] (an actor on the NameServer's System) asks the
//!   brokers every `dashboard_sample_secs` over the admin RPCs and keeps the
//!   latest snapshot and ten minutes of history.
//! * An actix-web server with one worker thread answers the page, its
//!   assets and the JSON under `/api/`, asking the sampler by message.
//! * With ACL on, `/api/messages` (message bodies) needs a signed
//!   `Authorization` header from an admin account
//!   ([`crate::acl::Acl::check_http_admin`]); the overview endpoints stay
//!   open (docs/security.md says why).
//! * The assets (`assets/`: the page, its script and style, and Chart.js
//!   4, MIT licence in `assets/chart.js.LICENSE.md`) are compiled into the
//!   binary with `include_str!`: nothing is installed or built at run time.

pub mod brokers;
pub mod model;
pub mod sampler;
pub mod search;

use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{web, App, HttpResponse, HttpServer};
use slog::{info, Logger};

use self::model::AlertRules;
use self::sampler::{GetHistory, GetSnapshot, Sampler, Search};
use self::search::{SearchError, SearchQuery};
use super::NameServer;
use crate::metrics::{CountedConnection, Listener};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const CHART_JS: &str = include_str!("assets/chart.umd.min.js");

/// The port `skylark standalone` serves the dashboard on.
pub const STANDALONE_PORT: u16 = 8088;

/// What the dashboard needs from the NameServer's configuration.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    pub listen_host: String,
    pub port: u16,
    pub sample_interval: Duration,
    pub rules: AlertRules,
    /// The NameServer's ACL (ACL on): message search needs an admin.
    pub acl: Option<crate::acl::Acl>,
    /// What the sampler signs its broker RPCs with (brokers with ACL on).
    pub creds: Option<std::sync::Arc<skylark_codec::Credentials>>,
    /// TLS to the brokers (the NameServer's `tls_ca_file`, loaded at start).
    pub tls: Option<crate::tls::ClientTls>,
}

impl DashboardConfig {
    /// The dashboard of `c`, if `dashboard_port` is set.
    pub fn of(c: &crate::config::NameServerConfig) -> Option<DashboardConfig> {
        Some(DashboardConfig {
            listen_host: c.listen_host.clone(),
            port: c.dashboard_port?,
            sample_interval: Duration::from_secs(c.dashboard_sample_secs.max(1)),
            rules: AlertRules {
                group_lag: c.dashboard_lag_alert,
            },
            acl: None,
            creds: match (&c.access_key, &c.secret_key) {
                (Some(k), Some(s)) => Some(std::sync::Arc::new(skylark_codec::Credentials::new(
                    k.clone(),
                    s.0.clone(),
                ))),
                _ => None,
            },
            tls: None,
        })
    }
}

/// A running dashboard; dropping it stops the HTTP server and the sampler.
pub struct DashboardHandle {
    pub local_addr: SocketAddr,
    server: actix_web::dev::ServerHandle,
    sampler: Addr<Sampler>,
}

impl Drop for DashboardHandle {
    fn drop(&mut self) {
        // The stop command is sent now; its completion is not awaited.
        drop(self.server.stop(false));
        self.sampler.do_send(StopSampler);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct StopSampler;

impl Handler<StopSampler> for Sampler {
    type Result = ();
    fn handle(&mut self, _: StopSampler, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Starts the sampler and the HTTP server inside the current actix System.
pub fn start(
    config: DashboardConfig,
    ns: Addr<NameServer>,
    log: Logger,
) -> std::io::Result<DashboardHandle> {
    let listener = std::net::TcpListener::bind((config.listen_host.as_str(), config.port))
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "dashboard cannot listen on {}:{}: {e}",
                    config.listen_host, config.port
                ),
            )
        })?;
    let local_addr = listener.local_addr()?;
    let log = log.new(slog::o!("actor" => "dashboard"));
    let sampler = Sampler::new(
        ns,
        config.sample_interval,
        config.rules,
        brokers::BrokerPool::new(Duration::from_secs(3))
            .with_credentials(config.creds)
            .with_tls(config.tls),
        log.clone(),
    )
    .start();
    let s = sampler.clone();
    let acl = web::Data::new(MessageAcl(config.acl));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(s.clone()))
            .app_data(acl.clone())
            .route(
                "/",
                web::get().to(|| asset(INDEX_HTML, "text/html; charset=utf-8")),
            )
            .route(
                "/assets/app.js",
                web::get().to(|| asset(APP_JS, "text/javascript; charset=utf-8")),
            )
            .route(
                "/assets/app.css",
                web::get().to(|| asset(APP_CSS, "text/css; charset=utf-8")),
            )
            .route(
                "/assets/chart.umd.min.js",
                web::get().to(|| asset(CHART_JS, "text/javascript; charset=utf-8")),
            )
            .route("/api/overview", web::get().to(overview))
            .route("/api/cluster", web::get().to(cluster))
            .route("/api/topics", web::get().to(topics))
            .route("/api/groups", web::get().to(groups))
            .route("/api/pending", web::get().to(pending))
            .route("/api/alerts", web::get().to(alerts))
            .route("/api/history", web::get().to(history))
            .route("/api/messages", web::get().to(messages))
            .default_service(web::to(|| async {
                HttpResponse::NotFound().json(serde_json::json!({"error": "no such page"}))
            }))
    })
    // Counted while open: the connection's extensions drop with it.
    .on_connect(|_, ext| {
        ext.insert(CountedConnection::new(Listener::Dashboard));
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    Listener::Dashboard.listening();
    let handle = server.handle();
    actix::spawn(async move {
        let _ = server.await;
    });
    info!(log, "dashboard listening"; "addr" => %local_addr);
    Ok(DashboardHandle {
        local_addr,
        server: handle,
        sampler,
    })
}

async fn asset(body: &'static str, content_type: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, content_type))
        .insert_header((CACHE_CONTROL, "no-cache"))
        .body(body)
}

type SamplerData = web::Data<Addr<Sampler>>;

fn unavailable(e: MailboxError) -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .json(serde_json::json!({"error": format!("dashboard sampler unavailable: {e}")}))
}

/// The latest snapshot mapped through `f`.
async fn with_snapshot<T: serde::Serialize>(
    s: SamplerData,
    f: impl FnOnce(model::Snapshot) -> T,
) -> HttpResponse {
    match s.send(GetSnapshot).await {
        Ok(snap) => HttpResponse::Ok().json(f(snap)),
        Err(e) => unavailable(e),
    }
}

async fn overview(s: SamplerData) -> HttpResponse {
    with_snapshot(s, |x| x).await
}

async fn cluster(s: SamplerData) -> HttpResponse {
    with_snapshot(
        s,
        |x| serde_json::json!({"sampled_at_ms": x.sampled_at_ms, "brokers": x.brokers}),
    )
    .await
}

async fn topics(s: SamplerData) -> HttpResponse {
    with_snapshot(s, |x| {
        serde_json::json!({"sampled_at_ms": x.sampled_at_ms, "topics": x.topics,
            "topics_not_sampled": x.topics_not_sampled})
    })
    .await
}

async fn groups(s: SamplerData) -> HttpResponse {
    with_snapshot(
        s,
        |x| serde_json::json!({"sampled_at_ms": x.sampled_at_ms, "groups": x.groups}),
    )
    .await
}

async fn pending(s: SamplerData) -> HttpResponse {
    with_snapshot(
        s,
        |x| serde_json::json!({"sampled_at_ms": x.sampled_at_ms, "pending": x.pending}),
    )
    .await
}

async fn alerts(s: SamplerData) -> HttpResponse {
    with_snapshot(
        s,
        |x| serde_json::json!({"sampled_at_ms": x.sampled_at_ms, "alerts": x.alerts}),
    )
    .await
}

async fn history(s: SamplerData) -> HttpResponse {
    match s.send(GetHistory).await {
        Ok(h) => HttpResponse::Ok().json(h),
        Err(e) => unavailable(e),
    }
}

/// The ACL guarding `/api/messages`, if on.
struct MessageAcl(Option<crate::acl::Acl>);

/// `None` if `req` may read message bodies, else the refusal: 401 for
/// `AuthFailed` (with `WWW-Authenticate`), 403 for `NoPermission`.
fn refuse_unless_admin(acl: &MessageAcl, req: &actix_web::HttpRequest) -> Option<HttpResponse> {
    let acl = acl.0.as_ref()?;
    let authorization = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let pq = req
        .uri()
        .path_and_query()
        .map_or(req.path(), |p| p.as_str());
    let peer = req.peer_addr().map(|a| a.ip());
    let e = acl
        .check_http_admin(
            authorization,
            req.method().as_str(),
            pq,
            peer,
            "search messages on the dashboard",
        )
        .err()?;
    let mut r = if e.code == skylark_codec::ErrorCode::AuthFailed {
        let mut r = HttpResponse::Unauthorized();
        r.insert_header((
            actix_web::http::header::WWW_AUTHENTICATE,
            skylark_codec::auth::HTTP_AUTH_SCHEME,
        ));
        r
    } else {
        HttpResponse::Forbidden()
    };
    Some(r.json(serde_json::json!({ "error": e.message, "code": e.code as u16 })))
}

async fn messages(
    s: SamplerData,
    acl: web::Data<MessageAcl>,
    req: actix_web::HttpRequest,
    q: Result<web::Query<SearchQuery>, actix_web::Error>,
) -> HttpResponse {
    if let Some(refused) = refuse_unless_admin(&acl, &req) {
        return refused;
    }
    let q = match q {
        Ok(q) => q.into_inner(),
        Err(e) => {
            return HttpResponse::BadRequest()
                .json(serde_json::json!({"error": format!("bad query: {e}")}))
        }
    };
    match s.send(Search(q)).await {
        Ok(Ok(found)) => HttpResponse::Ok().json(serde_json::json!({"messages": found})),
        Ok(Err(e)) => {
            let (mut r, m) = match e {
                SearchError::BadRequest(m) => (HttpResponse::BadRequest(), m),
                SearchError::NotFound(m) => (HttpResponse::NotFound(), m),
                SearchError::Unavailable(m) => (HttpResponse::BadGateway(), m),
            };
            r.json(serde_json::json!({ "error": m }))
        }
        Err(e) => unavailable(e),
    }
}
