use std::{pin::Pin, sync::Arc};

use futures_util::{Stream, StreamExt};
use licensing::v1::{self as pb, developer_service_server::DeveloperService};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{Caller, caller, client_address, convert, to_status, within};
use crate::{
    domain::CoreError,
    service::{Core, DeveloperInput, LicenceFilter, ListFilter, ScopeInput},
};

pub struct DeveloperApi {
    core: Arc<Core>,
}

impl DeveloperApi {
    pub fn new(core: Arc<Core>) -> Self {
        DeveloperApi { core }
    }
}

fn fail(e: CoreError) -> Status {
    to_status(&e, None)
}

/// The `authorization: Bearer ...` token, if the call carries one.
fn bearer<T>(req: &Request<T>) -> Option<String> {
    let value = req.metadata().get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

/// Reads who calls for which app from the request's scope and metadata.
fn scope_of<T>(core: &Core, req: &Request<T>, scope: Option<&pb::AppScope>) -> Result<ScopeInput, Status> {
    scope_from(caller(core, req), bearer(req), scope)
}

fn scope_from(
    caller: Caller,
    bearer: Option<String>,
    scope: Option<&pb::AppScope>,
) -> Result<ScopeInput, Status> {
    let address = client_address(caller, scope.and_then(|s| s.origin.as_ref())).map_err(fail)?;
    Ok(ScopeInput {
        app_secret: scope.map(|s| s.app_secret.clone()).unwrap_or_default(),
        app_id: scope.map(|s| s.app_id).unwrap_or_default(),
        developer: scope.and_then(|s| s.developer.as_ref()).map(|d| (d.username.clone(), d.password.clone())),
        bearer,
        address,
    })
}

/// Who calls a developer-level method, from its fields and metadata.
fn developer_of<T>(
    core: &Core,
    req: &Request<T>,
    developer: Option<&pb::DeveloperAuth>,
    origin: Option<&pb::Origin>,
) -> Result<DeveloperInput, Status> {
    Ok(DeveloperInput {
        developer: developer.map(|d| (d.username.clone(), d.password.clone())),
        bearer: bearer(req),
        address: client_address(caller(core, req), origin).map_err(fail)?,
    })
}

type PageMessages<M> = Pin<Box<dyn Stream<Item = Result<M, Status>> + Send>>;

/// A streamed listing as gRPC messages, a page each.
fn page_messages<T: Send + 'static, M>(
    pages: crate::service::PageStream<T>,
    message: impl Fn(Vec<T>) -> M + Send + 'static,
) -> PageMessages<M> {
    Box::pin(ReceiverStream::new(pages).map(move |page| page.map(&message).map_err(fail)))
}

#[tonic::async_trait]
impl DeveloperService for DeveloperApi {
    type StreamLicencesStream = PageMessages<pb::ListLicencesResponse>;
    type StreamUsersStream = PageMessages<pb::ListUsersResponse>;

    async fn stream_licences(
        &self,
        req: Request<pb::StreamLicencesRequest>,
    ) -> Result<Response<Self::StreamLicencesStream>, Status> {
        within(self.core.settings().request_timeout, async move {
            let scope = scope_of(&self.core, &req, req.get_ref().scope.as_ref())?;
            let pages = self.core.stream_licences(scope, req.get_ref().page_size).await.map_err(fail)?;
            Ok(Response::new(page_messages(pages, |items| pb::ListLicencesResponse {
                licences: items.into_iter().map(convert::licence).collect(),
                next_page_token: String::new(),
            })))
        })
        .await
    }

    async fn stream_users(
        &self,
        req: Request<pb::StreamUsersRequest>,
    ) -> Result<Response<Self::StreamUsersStream>, Status> {
        within(self.core.settings().request_timeout, async move {
            let scope = scope_of(&self.core, &req, req.get_ref().scope.as_ref())?;
            let pages = self.core.stream_users(scope, req.get_ref().page_size).await.map_err(fail)?;
            Ok(Response::new(page_messages(pages, |items| pb::ListUsersResponse {
                users: items.into_iter().map(convert::user).collect(),
                next_page_token: String::new(),
            })))
        })
        .await
    }

    async fn get_app(&self, req: Request<pb::GetAppRequest>) -> Result<Response<pb::App>, Status> {
        within(self.core.settings().request_timeout, async move {
            let scope = scope_of(&self.core, &req, req.get_ref().scope.as_ref())?;
            let app = self.core.get_app(scope).await.map_err(fail)?;
            Ok(Response::new(convert::app(app)))
        })
        .await
    }

    async fn set_app_online(
        &self,
        req: Request<pb::SetAppOnlineRequest>,
    ) -> Result<Response<pb::App>, Status> {
        within(self.core.settings().request_timeout, async move {
            let scope = scope_of(&self.core, &req, req.get_ref().scope.as_ref())?;
            let app = self.core.set_app_online(scope, req.get_ref().online).await.map_err(fail)?;
            Ok(Response::new(convert::app(app)))
        })
        .await
    }

    async fn set_app_version(
        &self,
        req: Request<pb::SetAppVersionRequest>,
    ) -> Result<Response<pb::App>, Status> {
        within(self.core.settings().request_timeout, async move {
            let scope = scope_of(&self.core, &req, req.get_ref().scope.as_ref())?;
            let version = req.into_inner().version;
            let app = self.core.set_app_version(scope, version).await.map_err(fail)?;
            Ok(Response::new(convert::app(app)))
        })
        .await
    }

    async fn renew_secret(&self, req: Request<pb::RenewSecretRequest>) -> Result<Response<pb::App>, Status> {
        within(self.core.settings().request_timeout, async move {
            let scope = scope_of(&self.core, &req, req.get_ref().scope.as_ref())?;
            let app = self.core.renew_secret(scope).await.map_err(fail)?;
            Ok(Response::new(convert::app(app)))
        })
        .await
    }

    async fn add_signing_key(
        &self,
        req: Request<pb::AddSigningKeyRequest>,
    ) -> Result<Response<pb::App>, Status> {
        within(self.core.settings().request_timeout, async move {
            let scope = scope_of(&self.core, &req, req.get_ref().scope.as_ref())?;
            let app = self.core.add_signing_key_for(scope).await.map_err(fail)?;
            Ok(Response::new(convert::app(app)))
        })
        .await
    }

    async fn promote_signing_key(
        &self,
        req: Request<pb::PromoteSigningKeyRequest>,
    ) -> Result<Response<pb::App>, Status> {
        within(self.core.settings().request_timeout, async move {
            let scope = scope_of(&self.core, &req, req.get_ref().scope.as_ref())?;
            let app = self.core.promote_signing_key_for(scope, &req.get_ref().kid).await.map_err(fail)?;
            Ok(Response::new(convert::app(app)))
        })
        .await
    }

    async fn retire_signing_key(
        &self,
        req: Request<pb::RetireSigningKeyRequest>,
    ) -> Result<Response<pb::App>, Status> {
        within(self.core.settings().request_timeout, async move {
            let scope = scope_of(&self.core, &req, req.get_ref().scope.as_ref())?;
            let app = self.core.retire_signing_key_for(scope, &req.get_ref().kid).await.map_err(fail)?;
            Ok(Response::new(convert::app(app)))
        })
        .await
    }

    async fn get_file_info(
        &self,
        req: Request<pb::GetFileInfoRequest>,
    ) -> Result<Response<pb::FileInfo>, Status> {
        within(self.core.settings().request_timeout, async move {
            let scope = scope_of(&self.core, &req, req.get_ref().scope.as_ref())?;
            let file = self.core.file_info(scope).await.map_err(fail)?;
            Ok(Response::new(convert::file(file)))
        })
        .await
    }

    async fn get_activity(
        &self,
        req: Request<pb::GetActivityRequest>,
    ) -> Result<Response<pb::GetActivityResponse>, Status> {
        within(self.core.settings().request_timeout, async move {
            let scope = scope_of(&self.core, &req, req.get_ref().scope.as_ref())?;
            let days = self.core.activity(scope, req.get_ref().days).await.map_err(fail)?;
            Ok(Response::new(pb::GetActivityResponse {
                days: days
                    .into_iter()
                    .map(|d| pb::ActivityDay {
                        day: d.day.format("%Y-%m-%d").to_string(),
                        heartbeats: d.heartbeats,
                        active_users: d.active_users,
                    })
                    .collect(),
            }))
        })
        .await
    }

    async fn sign_in(&self, req: Request<pb::SignInRequest>) -> Result<Response<pb::SignInResponse>, Status> {
        within(self.core.settings().request_timeout, async move {
            let address =
                client_address(caller(&self.core, &req), req.get_ref().origin.as_ref()).map_err(fail)?;
            let developer = req.get_ref().developer.clone().unwrap_or_default();
            let opened =
                self.core.sign_in(&developer.username, &developer.password, &address).await.map_err(fail)?;
            Ok(Response::new(pb::SignInResponse {
                session_token: opened.token,
                expires: Some(convert::timestamp(opened.expires)),
                idle_timeout: Some(prost_types::Duration {
                    seconds: i64::try_from(opened.idle_timeout.as_secs()).unwrap_or(i64::MAX),
                    nanos: 0,
                }),
                username: opened.username,
            }))
        })
        .await
    }

    async fn sign_out(
        &self,
        req: Request<pb::SignOutRequest>,
    ) -> Result<Response<pb::SignOutResponse>, Status> {
        within(self.core.settings().request_timeout, async move {
            let address = client_address(caller(&self.core, &req), None).map_err(fail)?;
            self.core.sign_out(bearer(&req).as_deref(), &address).await.map_err(fail)?;
            Ok(Response::new(pb::SignOutResponse {}))
        })
        .await
    }

    async fn list_apps(
        &self,
        req: Request<pb::ListAppsRequest>,
    ) -> Result<Response<pb::ListAppsResponse>, Status> {
        within(self.core.settings().request_timeout, async move {
            let input = developer_of(
                &self.core,
                &req,
                req.get_ref().developer.as_ref(),
                req.get_ref().origin.as_ref(),
            )?;
            let apps = self.core.list_apps_of(input).await.map_err(fail)?;
            Ok(Response::new(pb::ListAppsResponse {
                apps: apps
                    .into_iter()
                    .map(|a| pb::AppSummary {
                        id: a.id,
                        name: a.name,
                        online: a.online,
                        version: a.version,
                        created: Some(convert::timestamp(a.created)),
                    })
                    .collect(),
            }))
        })
        .await
    }

    async fn create_app(&self, req: Request<pb::CreateAppRequest>) -> Result<Response<pb::App>, Status> {
        within(self.core.settings().request_timeout, async move {
            let r = req.get_ref();
            let input = developer_of(&self.core, &req, r.developer.as_ref(), r.origin.as_ref())?;
            let app =
                self.core.create_app_for(input, &r.name, Some(r.version.as_str())).await.map_err(fail)?;
            Ok(Response::new(convert::app(app)))
        })
        .await
    }

    async fn list_licences(
        &self,
        req: Request<pb::ListLicencesRequest>,
    ) -> Result<Response<pb::ListLicencesResponse>, Status> {
        within(self.core.settings().request_timeout, async move {
            let scope = scope_of(&self.core, &req, req.get_ref().scope.as_ref())?;
            let r = req.into_inner();
            let filter = ListFilter {
                prefix: r.key_prefix.clone(),
                licences: match r.filter() {
                    pb::LicenceFilter::Unspecified => LicenceFilter::All,
                    pb::LicenceFilter::Unused => LicenceFilter::Unused,
                    pb::LicenceFilter::Active => LicenceFilter::Active,
                    pb::LicenceFilter::Expired => LicenceFilter::Expired,
                    pb::LicenceFilter::Banned => LicenceFilter::Banned,
                },
            };
            let page =
                self.core.list_licences(scope, r.page_size, &r.page_token, filter).await.map_err(fail)?;
            Ok(Response::new(pb::ListLicencesResponse {
                licences: page.items.into_iter().map(convert::licence).collect(),
                next_page_token: page.next_page_token,
            }))
        })
        .await
    }

    async fn create_licences(
        &self,
        req: Request<pb::CreateLicencesRequest>,
    ) -> Result<Response<pb::CreateLicencesResponse>, Status> {
        within(self.core.settings().request_timeout, async move {
            let scope = scope_of(&self.core, &req, req.get_ref().scope.as_ref())?;
            let r = req.into_inner();
            let expire = r
                .expire_time
                .as_ref()
                .map(|t| convert::from_timestamp("expire_date", t))
                .transpose()
                .map_err(fail)?;
            let created = self.core.create_licences(scope, r.amount, r.access, expire).await.map_err(fail)?;
            Ok(Response::new(pb::CreateLicencesResponse {
                licences: created.into_iter().map(convert::licence).collect(),
            }))
        })
        .await
    }

    async fn delete_licence(
        &self,
        req: Request<pb::DeleteLicenceRequest>,
    ) -> Result<Response<pb::DeleteLicenceResponse>, Status> {
        within(self.core.settings().request_timeout, async move {
            let scope = scope_of(&self.core, &req, req.get_ref().scope.as_ref())?;
            self.core.delete_licence(scope, &req.get_ref().licence_key).await.map_err(fail)?;
            Ok(Response::new(pb::DeleteLicenceResponse {}))
        })
        .await
    }

    async fn ban_licence(
        &self,
        req: Request<pb::BanLicenceRequest>,
    ) -> Result<Response<pb::Licence>, Status> {
        within(self.core.settings().request_timeout, async move {
            let scope = scope_of(&self.core, &req, req.get_ref().scope.as_ref())?;
            let lic =
                self.core.set_licence_banned(scope, &req.get_ref().licence_key, true).await.map_err(fail)?;
            Ok(Response::new(convert::licence(lic)))
        })
        .await
    }

    async fn unban_licence(
        &self,
        req: Request<pb::UnbanLicenceRequest>,
    ) -> Result<Response<pb::Licence>, Status> {
        within(self.core.settings().request_timeout, async move {
            let scope = scope_of(&self.core, &req, req.get_ref().scope.as_ref())?;
            let lic =
                self.core.set_licence_banned(scope, &req.get_ref().licence_key, false).await.map_err(fail)?;
            Ok(Response::new(convert::licence(lic)))
        })
        .await
    }

    async fn list_users(
        &self,
        req: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        within(self.core.settings().request_timeout, async move {
            let scope = scope_of(&self.core, &req, req.get_ref().scope.as_ref())?;
            let r = req.into_inner();
            let filter = ListFilter { prefix: r.username_prefix.clone(), ..ListFilter::default() };
            let page = self.core.list_users(scope, r.page_size, &r.page_token, filter).await.map_err(fail)?;
            Ok(Response::new(pb::ListUsersResponse {
                users: page.items.into_iter().map(convert::user).collect(),
                next_page_token: page.next_page_token,
            }))
        })
        .await
    }

    async fn delete_user(
        &self,
        req: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        within(self.core.settings().request_timeout, async move {
            let scope = scope_of(&self.core, &req, req.get_ref().scope.as_ref())?;
            self.core.delete_user(scope, req.get_ref().user_id).await.map_err(fail)?;
            Ok(Response::new(pb::DeleteUserResponse {}))
        })
        .await
    }

    async fn reset_hwid(&self, req: Request<pb::ResetHwidRequest>) -> Result<Response<pb::User>, Status> {
        within(self.core.settings().request_timeout, async move {
            let scope = scope_of(&self.core, &req, req.get_ref().scope.as_ref())?;
            let user = self.core.reset_hwid(scope, req.get_ref().user_id).await.map_err(fail)?;
            Ok(Response::new(convert::user(user)))
        })
        .await
    }

    async fn upload_file(
        &self,
        req: Request<Streaming<pb::UploadFileRequest>>,
    ) -> Result<Response<pb::FileInfo>, Status> {
        let bearer = bearer(&req);
        let caller = caller(&self.core, &req);
        let mut stream = req.into_inner();
        // A stalled uploader must not hold a partial file and a connection for ever.
        let idle = self.core.settings().request_timeout;
        let stalled =
            || fail(CoreError::Unavailable("the upload stalled: no data within the request timeout".into()));
        let first = tokio::time::timeout(idle, stream.message()).await.map_err(|_| stalled())?;
        let header = match first? {
            Some(pb::UploadFileRequest { payload: Some(pb::upload_file_request::Payload::Header(h)) }) => h,
            _ => return Err(fail(CoreError::MissingField { field: "header" })),
        };
        let scope = scope_from(caller, bearer, header.scope.as_ref())?;
        let mut upload =
            within(idle, async { self.core.begin_upload(scope, &header.filename).await.map_err(fail) })
                .await?;
        loop {
            let next = match tokio::time::timeout(idle, stream.message()).await {
                Ok(Ok(next)) => next,
                Ok(Err(status)) => {
                    upload.abort().await;
                    return Err(status);
                }
                Err(_) => {
                    upload.abort().await;
                    return Err(stalled());
                }
            };
            let result = match next {
                None => break,
                Some(pb::UploadFileRequest {
                    payload: Some(pb::upload_file_request::Payload::Chunk(bytes)),
                }) => upload.write(&bytes).await,
                Some(_) => Err(CoreError::invalid("chunk", "only chunks may follow the header")),
            };
            if let Err(e) = result {
                upload.abort().await;
                return Err(fail(e));
            }
        }
        let info = upload.finish().await.map_err(fail)?;
        Ok(Response::new(convert::file(info)))
    }
}
