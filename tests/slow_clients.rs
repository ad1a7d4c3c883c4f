//! Slow and idle clients cannot hold the gateway: request headers have a deadline (which also
//! closes kept-alive connections left idle), and open connections are bounded, so a storm of
//! clients trickling a byte a second leaves a normal client able to log in.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, gateway::*};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const SLOW_CLIENTS: usize = 250;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_client_storm_leaves_logins_working() {
    let stack = TestStack::start_with(
        Backend::Sqlite,
        |_| {},
        |gateway| {
            gateway.max_connections = 100;
            gateway.header_read_timeout = Duration::from_secs(1);
        },
    )
    .await;
    let fx = stack.fixture("dev-slow").await;
    stack.register_ok(&fx, "patient", "").await;

    // Each slow client sends the start of a request one byte a second, for up to a minute, and
    // reports how many bytes went out before the gateway closed the connection.
    let addr = stack.addr;
    let (started_tx, mut started_rx) = tokio::sync::mpsc::channel::<()>(SLOW_CLIENTS);
    let storm: Vec<_> = (0..SLOW_CLIENTS)
        .map(|_| {
            let started = started_tx.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = TcpStream::connect(addr).await else {
                    let _ = started.send(()).await;
                    return 0;
                };
                let head = b"POST /api/action.php?action=login HTTP/1.1\r\nHost: gateway\r\nX-Slow: ";
                let mut sent = 0;
                for byte in head.iter().chain(std::iter::repeat(&b'a')).take(60) {
                    let written = stream.write_all(&[*byte]).await.is_ok();
                    if sent == 0 {
                        let _ = started.send(()).await;
                    }
                    if !written {
                        break;
                    }
                    sent += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                sent
            })
        })
        .collect();
    drop(started_tx);
    // The storm is on once every slow client has connected and sent its first byte.
    for _ in 0..SLOW_CLIENTS {
        started_rx.recv().await.expect("every slow client reports its start");
    }

    // A normal client gets through while the storm lasts (without the deadline it would wait the
    // whole minute for a free connection).
    let started = Instant::now();
    let login = stack.http.post(stack.url("/api/action.php?action=login")).form(&[
        ("username", "patient"),
        ("password", "patient-pw"),
        ("app_secret", fx.secret.as_str()),
    ]);
    let answer = tokio::time::timeout(Duration::from_secs(30), login.send())
        .await
        .expect("the login is answered while slow clients hold connections")
        .expect("the login is answered");
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    eprintln!("login answered after {:?} of the storm", started.elapsed());

    // The slow clients were cut off after about the header deadline, not served for a minute.
    let mut cut_off = 0;
    for client in storm {
        if tokio::time::timeout(Duration::from_secs(20), client)
            .await
            .is_ok_and(|sent| sent.is_ok_and(|n| n < 30))
        {
            cut_off += 1;
        }
    }
    assert_eq!(cut_off, SLOW_CLIENTS, "every slow client was closed well before its minute");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed() {
    let stack = TestStack::start_with(
        Backend::Sqlite,
        |_| {},
        |gateway| gateway.header_read_timeout = Duration::from_secs(1),
    )
    .await;
    let mut stream = TcpStream::connect(stack.addr).await.expect("connect");
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n").await.expect("request");
    let mut buffer = vec![0u8; 4096];
    let n = stream.read(&mut buffer).await.expect("answer");
    assert!(buffer[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buffer[..n]));
    // Kept alive, then idle: the gateway closes it once the deadline for the next request passes.
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the idle connection stayed open: {closed:?}");
    stack.stop().await;
}
