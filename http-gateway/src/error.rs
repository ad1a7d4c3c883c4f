//! The one place where failures become the contract's JSON: `{"status": CODE, "message": TEXT}`
//! with the HTTP status of [`ErrorCode::http_status`]. Core statuses, gateway-side field errors
//! and warp rejections all end up here.

use std::{convert::Infallible, error::Error as _};

use licensing::{ErrorCode, RESPONSE_TOKEN_METADATA, RETRY_AFTER_METADATA};
use serde::Serialize;
use tonic::{Code, Status};
use tonic_types::StatusExt;
use warp::{
    http::{HeaderValue, StatusCode, header},
    reject::Rejection,
    reply::{Reply, Response},
};

/// Header carrying the core's signed response token.
pub const RESPONSE_TOKEN_HEADER: &str = "x-response-token";
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// A failure answer of the legacy API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds for the `Retry-After` header (`rate_limited` only).
    pub retry_after: Option<u64>,
    /// The core's signed response token, for `/api/action.php` answers.
    pub token: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), retry_after: None, token: None }
    }

    pub fn missing_field(field: &str) -> Self {
        Self::new(ErrorCode::MissingField, format!("missing field `{field}`"))
    }

    pub fn invalid_field(field: &str, expected: &str) -> Self {
        Self::new(ErrorCode::InvalidField, format!("invalid field `{field}`: {expected}"))
    }

    pub fn unknown_action(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnknownAction, message)
    }

    pub fn payload_too_large(limit: u64) -> Self {
        Self::new(ErrorCode::PayloadTooLarge, format!("the request body is larger than {limit} bytes"))
    }

    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound, default_message(ErrorCode::NotFound))
    }

    pub fn method_not_allowed() -> Self {
        Self::new(ErrorCode::MethodNotAllowed, default_message(ErrorCode::MethodNotAllowed))
    }

    pub fn unavailable() -> Self {
        Self::new(ErrorCode::Unavailable, default_message(ErrorCode::Unavailable))
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, default_message(ErrorCode::Internal))
    }

    /// The table from a core status to the contract's answer.
    ///
    /// The stable code travels as `ErrorInfo.reason`; without it only the gRPC code is left, and
    /// that only tells "could not reach the core" apart from "something broke".
    pub fn from_status(status: &Status) -> Self {
        let details = status.get_error_details();
        if let Some(code) = details.error_info().and_then(|info| info.reason.parse::<ErrorCode>().ok()) {
            let message = match code {
                // Whatever broke inside the core is not the caller's business.
                ErrorCode::Internal | ErrorCode::Unavailable => {
                    tracing::warn!(code = %code, detail = status.message(), "core reported a failure");
                    default_message(code).to_owned()
                }
                _ if status.message().is_empty() => default_message(code).to_owned(),
                _ => status.message().to_owned(),
            };
            let retry_after = (code == ErrorCode::RateLimited)
                .then(|| {
                    retry_after_metadata(status).or_else(|| {
                        details
                            .retry_info()
                            .and_then(|info| info.retry_delay)
                            .map(|delay| delay.as_secs() + u64::from(delay.subsec_nanos() > 0))
                    })
                })
                .flatten();
            return ApiError { code, message, retry_after, token: None };
        }
        if is_unreachable(status) {
            tracing::debug!(code = ?status.code(), detail = status.message(), "core unreachable");
            return Self::unavailable();
        }
        tracing::warn!(
            code = ?status.code(),
            detail = status.message(),
            "core answered a status without a contract error code"
        );
        Self::internal()
    }

    /// Like [`ApiError::from_status`], keeping the response token a failed end-user call carries.
    pub fn from_client_status(status: &Status) -> Self {
        let token = status
            .metadata()
            .get(RESPONSE_TOKEN_METADATA)
            .and_then(|value| value.to_str().ok())
            .filter(|token| !token.is_empty())
            .map(str::to_owned);
        ApiError { token, ..Self::from_status(status) }
    }

    pub fn http_status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            status: &'a str,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            token: Option<&'a str>,
        }
        let body = Body { status: self.code.as_str(), message: &self.message, token: self.token.as_deref() };
        let mut response = json_response(self.http_status(), &body);
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(token) = &self.token {
            set_token_header(&mut response, token);
        }
        response
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        ApiError::into_response(self)
    }
}

/// Failures the gateway cannot blame on the request: the core is down, slow, or the link broke.
fn is_unreachable(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => true,
        // A status built locally from a transport error keeps that error as its source; one that
        // came over the wire never has a source. tonic reports a dead balancer as "not ready".
        Code::Unknown => status.source().is_some() || status.message().starts_with("Service was not ready"),
        _ => false,
    }
}

fn retry_after_metadata(status: &Status) -> Option<u64> {
    status.metadata().get(RETRY_AFTER_METADATA)?.to_str().ok()?.trim().parse().ok()
}

fn default_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::MissingField => "a required field is missing",
        ErrorCode::InvalidField => "a field is malformed or out of range",
        ErrorCode::UnknownAction => "unknown action",
        ErrorCode::NotFound => "not found",
        ErrorCode::MethodNotAllowed => "only POST is allowed",
        ErrorCode::PayloadTooLarge => "the request body is too large",
        ErrorCode::InvalidAppSecret => "invalid app secret",
        ErrorCode::InvalidCredentials => "invalid username or password",
        ErrorCode::InvalidDeveloper => "invalid developer username or password",
        ErrorCode::Forbidden => "the developer does not own this app",
        ErrorCode::HwidMismatch => "the HWID does not match",
        ErrorCode::LicenceBanned => "the licence is banned",
        ErrorCode::NoActiveLicence => "no active licence",
        ErrorCode::UsernameTaken => "the username is taken",
        ErrorCode::InvalidLicence => "invalid licence key",
        ErrorCode::LicenceUsed => "the licence key was already redeemed",
        ErrorCode::LicenceExpired => "the licence key has expired",
        ErrorCode::NoFile => "the app has no file",
        ErrorCode::AppOffline => "the app is offline",
        ErrorCode::RateLimited => "too many failed attempts; retry later",
        ErrorCode::Unavailable => "the licensing service is unavailable; retry later",
        ErrorCode::Internal => "internal error",
    }
}

/// A JSON answer with the contract's content type.
pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let (status, bytes) = match serde_json::to_vec(body) {
        Ok(bytes) => (status, bytes),
        Err(error) => {
            tracing::warn!(%error, "could not serialise an answer");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                br#"{"status":"internal","message":"internal error"}"#.to_vec(),
            )
        }
    };
    let mut response = Response::new(bytes.into());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
    response
}

pub fn set_token_header(response: &mut Response, token: &str) {
    match HeaderValue::from_str(token) {
        Ok(value) => {
            response.headers_mut().insert(RESPONSE_TOKEN_HEADER, value);
        }
        Err(_) => tracing::warn!("the core sent a response token that is not a valid header value"),
    }
}

/// The one `recover`: every warp rejection becomes a contract error.
pub async fn handle_rejection(rejection: Rejection) -> Result<Response, Infallible> {
    let error = if let Some(error) = rejection.find::<ApiError>() {
        error.clone()
    } else if rejection.is_not_found() {
        ApiError::not_found()
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::method_not_allowed()
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(ErrorCode::PayloadTooLarge, default_message(ErrorCode::PayloadTooLarge))
    } else {
        tracing::warn!(?rejection, "unhandled rejection");
        ApiError::internal()
    };
    Ok(error.into_response())
}

impl warp::reject::Reject for ApiError {}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, time::Duration};

    use licensing::ERROR_DOMAIN;
    use tonic::metadata::MetadataValue;
    use tonic_types::ErrorDetails;

    use super::*;

    fn status_with_code(code: ErrorCode, message: &str) -> Status {
        Status::with_error_details(
            code.grpc_code(),
            message,
            ErrorDetails::with_error_info(code.as_str(), ERROR_DOMAIN, HashMap::new()),
        )
    }

    async fn body_json(response: Response) -> serde_json::Value {
        use warp::hyper::body::Body as _;
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
        {
            if let Ok(data) = frame.expect("frame").into_data() {
                bytes.extend_from_slice(&data);
            }
        }
        serde_json::from_slice(&bytes).expect("json body")
    }

    #[tokio::test]
    async fn every_code_maps_to_its_http_status_and_json() {
        for &code in ErrorCode::ALL {
            let response = ApiError::from_status(&status_with_code(code, "field `x` is bad")).into_response();
            assert_eq!(response.status().as_u16(), code.http_status(), "{code}");
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json; charset=utf-8");
            let json = body_json(response).await;
            assert_eq!(json["status"], code.as_str());
            let message = json["message"].as_str().expect("message");
            match code {
                ErrorCode::Internal | ErrorCode::Unavailable => {
                    assert!(!message.contains("field `x`"), "{code} leaks the core's text")
                }
                _ => assert_eq!(message, "field `x` is bad", "{code}"),
            }
            assert!(json.get("token").is_none());
        }
    }

    #[test]
    fn empty_core_message_gets_a_default() {
        let error = ApiError::from_status(&status_with_code(ErrorCode::HwidMismatch, ""));
        assert_eq!(error.code, ErrorCode::HwidMismatch);
        assert!(!error.message.is_empty());
    }

    #[test]
    fn statuses_without_error_info() {
        for code in [Code::Unavailable, Code::DeadlineExceeded, Code::Cancelled] {
            assert_eq!(
                ApiError::from_status(&Status::new(code, "connection refused")).code,
                ErrorCode::Unavailable,
                "{code:?}"
            );
        }
        for code in [
            Code::Internal,
            Code::Unknown,
            Code::InvalidArgument,
            Code::NotFound,
            Code::PermissionDenied,
            Code::Unimplemented,
        ] {
            let error = ApiError::from_status(&Status::new(code, "SELECT * FROM secrets"));
            assert_eq!(error.code, ErrorCode::Internal, "{code:?}");
            assert_eq!(error.http_status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert!(!error.message.contains("SELECT"));
        }
        assert_eq!(
            ApiError::from_status(&Status::unknown("Service was not ready: closed")).code,
            ErrorCode::Unavailable
        );
    }

    #[test]
    fn unknown_reason_falls_back_to_the_grpc_code() {
        let status = Status::with_error_details(
            Code::NotFound,
            "nope",
            ErrorDetails::with_error_info("no_such_reason", ERROR_DOMAIN, HashMap::new()),
        );
        assert_eq!(ApiError::from_status(&status).code, ErrorCode::Internal);
    }

    #[tokio::test]
    async fn rate_limited_carries_retry_after_and_token() {
        let mut status = status_with_code(ErrorCode::RateLimited, "slow down");
        status.metadata_mut().insert(RETRY_AFTER_METADATA, MetadataValue::from_static("42"));
        status.metadata_mut().insert(RESPONSE_TOKEN_METADATA, MetadataValue::from_static("a.b.c"));
        let response = ApiError::from_client_status(&status).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "42");
        assert_eq!(response.headers()[RESPONSE_TOKEN_HEADER], "a.b.c");
        let json = body_json(response).await;
        assert_eq!(json["token"], "a.b.c");
        assert_eq!(json["status"], "rate_limited");

        // Developer calls never forward a token.
        let plain = ApiError::from_status(&status);
        assert_eq!(plain.token, None);
        assert_eq!(plain.retry_after, Some(42));
    }

    #[test]
    fn retry_after_falls_back_to_retry_info() {
        let mut details = ErrorDetails::with_error_info("rate_limited", ERROR_DOMAIN, HashMap::new());
        details.set_retry_info(Some(Duration::from_millis(1500)));
        let status = Status::with_error_details(Code::ResourceExhausted, "wait", details);
        assert_eq!(ApiError::from_status(&status).retry_after, Some(2));
    }
}
