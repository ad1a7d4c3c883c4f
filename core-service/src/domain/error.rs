use std::borrow::Cow;

use licensing::ErrorCode;

/// Every failure the core can answer, each carrying one stable code of the contract.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("missing field `{field}`")]
    MissingField { field: &'static str },
    #[error("{message}")]
    InvalidField { field: &'static str, message: Cow<'static, str> },
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("no app has that secret")]
    InvalidAppSecret,
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("wrong developer username or password")]
    InvalidDeveloper,
    /// Same contract code as `InvalidDeveloper`, with a message that names what was wrong.
    #[error("the API token is unknown or revoked")]
    InvalidToken,
    /// Same contract code as `InvalidDeveloper`: the dashboard session ended.
    #[error("the session has expired or was signed out")]
    InvalidSession,
    #[error("the developer does not own this app")]
    Forbidden,
    #[error("the account is bound to another HWID")]
    HwidMismatch,
    #[error("the licence is banned")]
    LicenceBanned,
    #[error("no active licence")]
    NoActiveLicence,
    #[error("the username is already taken")]
    UsernameTaken,
    #[error("no such licence key")]
    InvalidLicence,
    #[error("the licence key has already been redeemed")]
    LicenceUsed,
    #[error("the licence key has expired")]
    LicenceExpired,
    #[error("the app has no file to download")]
    NoFile,
    #[error("the app is offline")]
    AppOffline,
    #[error("too many failed attempts; retry in {retry_after_secs} seconds")]
    RateLimited { retry_after_secs: u64 },
    #[error("the service is temporarily unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl CoreError {
    pub fn code(&self) -> ErrorCode {
        match self {
            CoreError::MissingField { .. } => ErrorCode::MissingField,
            CoreError::InvalidField { .. } => ErrorCode::InvalidField,
            CoreError::NotFound(_) => ErrorCode::NotFound,
            CoreError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            CoreError::InvalidAppSecret => ErrorCode::InvalidAppSecret,
            CoreError::InvalidCredentials => ErrorCode::InvalidCredentials,
            CoreError::InvalidDeveloper | CoreError::InvalidToken | CoreError::InvalidSession => {
                ErrorCode::InvalidDeveloper
            }
            CoreError::Forbidden => ErrorCode::Forbidden,
            CoreError::HwidMismatch => ErrorCode::HwidMismatch,
            CoreError::LicenceBanned => ErrorCode::LicenceBanned,
            CoreError::NoActiveLicence => ErrorCode::NoActiveLicence,
            CoreError::UsernameTaken => ErrorCode::UsernameTaken,
            CoreError::InvalidLicence => ErrorCode::InvalidLicence,
            CoreError::LicenceUsed => ErrorCode::LicenceUsed,
            CoreError::LicenceExpired => ErrorCode::LicenceExpired,
            CoreError::NoFile => ErrorCode::NoFile,
            CoreError::AppOffline => ErrorCode::AppOffline,
            CoreError::RateLimited { .. } => ErrorCode::RateLimited,
            CoreError::Unavailable(_) => ErrorCode::Unavailable,
            CoreError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The offending field, for `BadRequest` details.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            CoreError::MissingField { field } | CoreError::InvalidField { field, .. } => Some(field),
            _ => None,
        }
    }

    pub fn invalid(field: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        CoreError::InvalidField { field, message: message.into() }
    }

    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        CoreError::Internal(cause.into())
    }

    /// Whether the throttle counts this failure against the caller.
    pub fn is_counted_failure(&self) -> bool {
        matches!(
            self,
            CoreError::InvalidCredentials
                | CoreError::InvalidDeveloper
                | CoreError::InvalidToken
                | CoreError::InvalidSession
                | CoreError::HwidMismatch
                | CoreError::InvalidAppSecret
        )
    }
}
