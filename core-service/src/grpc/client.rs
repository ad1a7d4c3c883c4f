use std::{pin::Pin, sync::Arc};

use futures_util::{Stream, stream};
use licensing::v1::{self as pb, client_service_server::ClientService};
use tonic::{Request, Response, Status};

use super::{caller, client_address, convert, nonce, to_status, within};
use crate::service::{Core, Download, Reply, UserAuthInput};

pub struct ClientApi {
    core: Arc<Core>,
}

impl ClientApi {
    pub fn new(core: Arc<Core>) -> Self {
        ClientApi { core }
    }
}

fn auth_input(auth: Option<pb::UserAuth>) -> UserAuthInput {
    let auth = auth.unwrap_or_default();
    UserAuthInput {
        app_secret: auth.app_secret,
        username: auth.username,
        password: auth.password,
        hwid: auth.hwid,
    }
}

/// Splits a reply into the success value and its token, or a status carrying the token.
fn settle<T>(reply: Reply<T>) -> Result<(T, String), Status> {
    match reply.result {
        Ok(value) => Ok((value, reply.token.unwrap_or_default())),
        Err(e) => Err(to_status(&e, reply.token.as_deref())),
    }
}

type DownloadStream = Pin<Box<dyn Stream<Item = Result<pb::DownloadResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ClientService for ClientApi {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        within(self.core.settings().request_timeout, async move {
            let address = client_address(caller(&self.core, &req), req.get_ref().origin.as_ref())
                .map_err(|e| to_status(&e, None))?;
            let r = req.into_inner();
            let nonce = nonce(r.origin.as_ref());
            let input = UserAuthInput {
                app_secret: r.app_secret,
                username: r.username,
                password: r.password,
                hwid: r.hwid,
            };
            let (user, token) =
                settle(self.core.register(input, r.email, r.licence_key, address, nonce).await)?;
            Ok(Response::new(pb::RegisterResponse { user: Some(convert::user(user)), response_token: token }))
        })
        .await
    }

    async fn login(&self, req: Request<pb::LoginRequest>) -> Result<Response<pb::LoginResponse>, Status> {
        within(self.core.settings().request_timeout, async move {
            let address = client_address(caller(&self.core, &req), req.get_ref().origin.as_ref())
                .map_err(|e| to_status(&e, None))?;
            let r = req.into_inner();
            let nonce = nonce(r.origin.as_ref());
            let (out, token) = settle(self.core.login(auth_input(r.auth), address, nonce).await)?;
            Ok(Response::new(pb::LoginResponse {
                user: Some(convert::user(out.user)),
                app_version: out.app_version,
                response_token: token,
            }))
        })
        .await
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        within(self.core.settings().request_timeout, async move {
            let address = client_address(caller(&self.core, &req), req.get_ref().origin.as_ref())
                .map_err(|e| to_status(&e, None))?;
            let r = req.into_inner();
            let nonce = nonce(r.origin.as_ref());
            let ((pings, status), token) =
                settle(self.core.heartbeat(auth_input(r.auth), address, nonce).await)?;
            Ok(Response::new(pb::HeartbeatResponse {
                total_pings: pings,
                licence_status: convert::status(status).into(),
                response_token: token,
            }))
        })
        .await
    }

    async fn redeem(&self, req: Request<pb::RedeemRequest>) -> Result<Response<pb::RedeemResponse>, Status> {
        within(self.core.settings().request_timeout, async move {
            let address = client_address(caller(&self.core, &req), req.get_ref().origin.as_ref())
                .map_err(|e| to_status(&e, None))?;
            let r = req.into_inner();
            let nonce = nonce(r.origin.as_ref());
            let (out, token) =
                settle(self.core.redeem(auth_input(r.auth), r.licence_key, address, nonce).await)?;
            Ok(Response::new(pb::RedeemResponse {
                licence_status: convert::status(out.status).into(),
                expire_time: Some(convert::timestamp(out.expire_time)),
                access: u32::from(out.access),
                response_token: token,
            }))
        })
        .await
    }

    type DownloadStream = DownloadStream;

    async fn download(
        &self,
        req: Request<pb::DownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        within(self.core.settings().request_timeout, async move {
            let address = client_address(caller(&self.core, &req), req.get_ref().origin.as_ref())
                .map_err(|e| to_status(&e, None))?;
            let r = req.into_inner();
            let nonce = nonce(r.origin.as_ref());
            let (download, token) = settle(self.core.download(auth_input(r.auth), address, nonce).await)?;
            let first = pb::DownloadResponse {
                payload: Some(pb::download_response::Payload::Info(convert::file(download.info.clone()))),
                response_token: token,
            };
            // Chunks are read from the database only as the client consumes them.
            let chunks = stream::unfold(Some(download), |state: Option<Download>| async move {
                let mut download = state?;
                match download.next_chunk().await {
                    Ok(Some(bytes)) => Some((
                        Ok(pb::DownloadResponse {
                            payload: Some(pb::download_response::Payload::Chunk(bytes)),
                            response_token: String::new(),
                        }),
                        Some(download),
                    )),
                    Ok(None) => None,
                    Err(e) => Some((Err(to_status(&e, None)), None)),
                }
            });
            let stream = futures_util::StreamExt::chain(stream::once(async { Ok(first) }), chunks);
            Ok(Response::new(Box::pin(stream) as DownloadStream))
        })
        .await
    }
}
