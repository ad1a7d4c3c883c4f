//! The hop floor's core: a `ClientService` whose heartbeat answers a constant success at once (no
//! database, no password check, no signature) and whose other calls are unimplemented. The real
//! gateway in front of it measures HTTP parsing, the gRPC hop and the reply, nothing else.

use std::net::SocketAddr;

use clap::Parser;
use licensing::v1::{
    self,
    client_service_server::{ClientService, ClientServiceServer},
};
use licensing_bench::RESPONSE_TOKEN;
use tonic::{Request, Response, Status, transport::Server};

#[derive(Parser)]
#[command(about = "A gRPC ClientService whose heartbeat answers a constant success")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:50090")]
    listen: SocketAddr,
}

struct ConstantHeartbeat;

#[tonic::async_trait]
impl ClientService for ConstantHeartbeat {
    type DownloadStream = tokio_stream::Empty<Result<v1::DownloadResponse, Status>>;

    async fn heartbeat(
        &self,
        _request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        Ok(Response::new(v1::HeartbeatResponse {
            total_pings: 1,
            licence_status: v1::LicenceStatus::Active as i32,
            response_token: RESPONSE_TOKEN.to_owned(),
        }))
    }

    async fn register(
        &self,
        _request: Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterResponse>, Status> {
        Err(Status::unimplemented("hop floor: heartbeat only"))
    }

    async fn login(
        &self,
        _request: Request<v1::LoginRequest>,
    ) -> Result<Response<v1::LoginResponse>, Status> {
        Err(Status::unimplemented("hop floor: heartbeat only"))
    }

    async fn redeem(
        &self,
        _request: Request<v1::RedeemRequest>,
    ) -> Result<Response<v1::RedeemResponse>, Status> {
        Err(Status::unimplemented("hop floor: heartbeat only"))
    }

    async fn download(
        &self,
        _request: Request<v1::DownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        Err(Status::unimplemented("hop floor: heartbeat only"))
    }
}

#[tokio::main]
async fn main() -> Result<(), tonic::transport::Error> {
    let args = Args::parse();
    eprintln!("hop-floor: listening on {}", args.listen);
    Server::builder()
        .tcp_nodelay(true)
        .add_service(ClientServiceServer::new(ConstantHeartbeat))
        .serve(args.listen)
        .await
}
