//! Skylark embedded in an actix-web application.
//!
//! One actix System runs a NameServer, a Broker and an HTTP server; a POST
//! to `/send/{topic}` produces its body as a message and answers with the
//! message id. Run it and try:
//!
//! ```sh
//! cargo run --example embedded
//! curl -X POST --data 'hello' http://127.0.0.1:8080/send/Orders
//! ```
//!
//! `SKYLARK_HTTP_PORT` (default 8080) and `SKYLARK_DATA_DIR` (default a
//! temporary directory, removed on exit) change where it listens and
//! stores. The store has `skylark standalone`'s laptop-sized defaults
//! (64 MiB CommitLog segments).

use actix_web::{web, App, HttpResponse, HttpServer};
use skylark::client::{ClientConfig, Producer};
use skylark::codec::MessageData;

async fn send(
    producer: web::Data<Producer>,
    topic: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let mut msg = MessageData::new(body);
    msg.born_timestamp = skylark::client::now_ms();
    match producer.send(&topic, msg).await {
        Ok(r) => HttpResponse::Ok().json(serde_json::json!({
            "msg_id": r.msg_id, "queue_id": r.queue_id, "queue_offset": r.queue_offset,
        })),
        Err(e) => HttpResponse::BadGateway().body(format!("{e}\n")),
    }
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let log = skylark::logging::logger("info", false);
    // The temporary directory (when SKYLARK_DATA_DIR names none) is
    // removed when `temp` drops, on exit; a directory of the user's is kept.
    let (dir, _temp) = match std::env::var("SKYLARK_DATA_DIR") {
        Ok(d) => (std::path::PathBuf::from(d), None),
        Err(_) => {
            let t = tempfile::Builder::new()
                .prefix("skylark-embedded-")
                .tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    // Port 0: let the OS pick free ports for the NameServer and the Broker.
    let node = skylark::embedded::start_standalone(&dir, 0, 0, log).await?;
    let namesrv = node.namesrv_addr().to_string();
    println!(
        "nameserver {namesrv}, broker {}, data in {}",
        node.broker_addr(),
        dir.display()
    );

    let producer = Producer::start(ClientConfig::new(&namesrv), "embedded-http")?;
    let port: u16 = std::env::var("SKYLARK_HTTP_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    println!("POST http://127.0.0.1:{port}/send/{{topic}}");
    HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(producer.clone()))
            .route("/send/{topic}", web::post().to(send))
    })
    .workers(1)
    .bind(("127.0.0.1", port))?
    .run()
    .await?;
    node.shutdown().await;
    Ok(())
}
