//! The bare-warp floor: a warp server that reads each POST body and answers the gateway's
//! successful `connect` body, with the gateway's Content-Type and token header, `TCP_NODELAY` on.
//! No request can cost the gateway less than this.

use std::net::SocketAddr;

use clap::Parser;
use licensing_bench::{JSON_CONTENT_TYPE, RESPONSE_TOKEN, connect_body};
use tokio::net::TcpSocket;
use warp::{Filter, http::Response};

#[derive(Parser)]
#[command(about = "Answers any POST with a constant connect answer")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let body = connect_body();
    let answer = warp::post().and(warp::body::content_length_limit(64 * 1024)).and(warp::body::bytes()).map(
        move |_form| {
            Response::builder()
                .header("content-type", JSON_CONTENT_TYPE)
                .header("x-response-token", RESPONSE_TOKEN)
                .body(body.clone())
                .expect("constant headers are valid")
        },
    );
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux, as in the gateway.
    let socket = if args.listen.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(args.listen)?;
    let listener = socket.listen(1024)?;
    eprintln!("bare-warp: listening on {}", listener.local_addr()?);
    warp::serve(answer).incoming(listener).run().await;
    Ok(())
}
