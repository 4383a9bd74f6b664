//! An `RpcClient` closes its socket when its last handle is dropped, and
//! not before: a clone keeps it open.
#![cfg(feature = "rpc")]

use std::time::Duration;

use skylark_codec::rpc::RpcClient;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// Reads from the server side of the connection until the client closes
/// it (EOF) or `within` passes; returns what arrived and whether it closed.
async fn read_until_closed(s: &mut tokio::net::TcpStream, within: Duration) -> (usize, bool) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got += n,
            Err(_) => return (got, false),
        }
    }
}

#[actix_rt::test]
async fn the_last_dropped_handle_closes_the_socket() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let client = RpcClient::connect(&addr, Duration::from_secs(5))
        .await
        .unwrap();
    let (mut server, _) = listener.accept().await.unwrap();
    let clone = client.clone();
    drop(client);
    // The clone still sends: a call goes out on the open socket (and times
    // out, the server never answering).
    let call = clone.call_timeout(
        &skylark_codec::GetTopicListRequest {},
        Duration::from_millis(200),
    );
    let (answer, (got, closed)) = tokio::join!(call, async {
        read_until_closed(&mut server, Duration::from_millis(500)).await
    });
    assert!(answer.is_err(), "nobody answers");
    assert!(
        got > 0 && !closed,
        "open while a clone lives: {got} bytes, closed {closed}"
    );
    drop(clone);
    let (_, closed) = read_until_closed(&mut server, Duration::from_secs(10)).await;
    assert!(
        closed,
        "the socket stayed open after the last handle was dropped"
    );
}
