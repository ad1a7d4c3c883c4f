//! What can go wrong: refusals of the service, verification failures, transport and IO errors.

use std::{fmt, time::Duration};

use crate::token::Claims;

/// The error codes of the legacy HTTP API (`docs/http-api.md`, section 3), plus [`Other`] for a
/// code this client does not know (a newer service may add codes).
///
/// [`Other`]: ErrorCode::Other
///
/// ```
/// use licensing_client::ErrorCode;
///
/// let code = ErrorCode::parse("hwid_mismatch");
/// assert_eq!(code, ErrorCode::HwidMismatch);
/// assert_eq!(code.as_str(), "hwid_mismatch");
/// assert_eq!(code.http_status(), Some(403));
/// assert_eq!(ErrorCode::parse("brand_new"), ErrorCode::Other("brand_new".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `missing_field` (400): a required field is absent or empty.
    MissingField,
    /// `invalid_field` (400): a field is present but malformed or out of range.
    InvalidField,
    /// `unknown_action` (400).
    UnknownAction,
    /// `not_found` (404).
    NotFound,
    /// `method_not_allowed` (405).
    MethodNotAllowed,
    /// `payload_too_large` (413).
    PayloadTooLarge,
    /// `invalid_app_secret` (401): no app has that secret (for example after `renew_secret`).
    InvalidAppSecret,
    /// `invalid_credentials` (401): wrong username or password.
    InvalidCredentials,
    /// `invalid_developer` (401).
    InvalidDeveloper,
    /// `forbidden` (403).
    Forbidden,
    /// `hwid_mismatch` (403): the account is bound to another HWID.
    HwidMismatch,
    /// `licence_banned` (403).
    LicenceBanned,
    /// `no_active_licence` (403): `download` without an active licence.
    NoActiveLicence,
    /// `username_taken` (409).
    UsernameTaken,
    /// `invalid_licence` (400): the app has no such key.
    InvalidLicence,
    /// `licence_used` (409).
    LicenceUsed,
    /// `licence_expired` (410).
    LicenceExpired,
    /// `no_file` (404): the app has no binary to download.
    NoFile,
    /// `app_offline` (503): the developer took the app offline.
    AppOffline,
    /// `rate_limited` (429): too many failed attempts; see [`Refusal::retry_after`].
    RateLimited,
    /// `unavailable` (503): retry later.
    Unavailable,
    /// `internal` (500).
    Internal,
    /// A code this client does not know, as the service spelled it.
    Other(String),
}

/// `(code, its text, its HTTP status)`, in the contract's order.
const CODES: &[(ErrorCode, &str, u16)] = &[
    (ErrorCode::MissingField, "missing_field", 400),
    (ErrorCode::InvalidField, "invalid_field", 400),
    (ErrorCode::UnknownAction, "unknown_action", 400),
    (ErrorCode::NotFound, "not_found", 404),
    (ErrorCode::MethodNotAllowed, "method_not_allowed", 405),
    (ErrorCode::PayloadTooLarge, "payload_too_large", 413),
    (ErrorCode::InvalidAppSecret, "invalid_app_secret", 401),
    (ErrorCode::InvalidCredentials, "invalid_credentials", 401),
    (ErrorCode::InvalidDeveloper, "invalid_developer", 401),
    (ErrorCode::Forbidden, "forbidden", 403),
    (ErrorCode::HwidMismatch, "hwid_mismatch", 403),
    (ErrorCode::LicenceBanned, "licence_banned", 403),
    (ErrorCode::NoActiveLicence, "no_active_licence", 403),
    (ErrorCode::UsernameTaken, "username_taken", 409),
    (ErrorCode::InvalidLicence, "invalid_licence", 400),
    (ErrorCode::LicenceUsed, "licence_used", 409),
    (ErrorCode::LicenceExpired, "licence_expired", 410),
    (ErrorCode::NoFile, "no_file", 404),
    (ErrorCode::AppOffline, "app_offline", 503),
    (ErrorCode::RateLimited, "rate_limited", 429),
    (ErrorCode::Unavailable, "unavailable", 503),
    (ErrorCode::Internal, "internal", 500),
];

impl ErrorCode {
    /// Every code of the contract (without [`ErrorCode::Other`]), in the contract's order.
    ///
    /// ```
    /// use licensing_client::ErrorCode;
    ///
    /// assert_eq!(ErrorCode::all().count(), 22);
    /// assert!(ErrorCode::all().all(|code| ErrorCode::parse(code.as_str()) == code));
    /// ```
    pub fn all() -> impl Iterator<Item = ErrorCode> {
        CODES.iter().map(|(code, _, _)| code.clone())
    }

    /// The code of a `status` text; unknown texts become [`ErrorCode::Other`].
    ///
    /// ```
    /// use licensing_client::ErrorCode;
    ///
    /// assert_eq!(ErrorCode::parse("licence_banned"), ErrorCode::LicenceBanned);
    /// ```
    pub fn parse(text: &str) -> ErrorCode {
        CODES
            .iter()
            .find(|(_, t, _)| *t == text)
            .map(|(code, _, _)| code.clone())
            .unwrap_or_else(|| ErrorCode::Other(text.to_owned()))
    }

    /// The code as the contract spells it.
    ///
    /// ```
    /// use licensing_client::ErrorCode;
    ///
    /// assert_eq!(ErrorCode::NoActiveLicence.as_str(), "no_active_licence");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::Other(text) => text,
            known => CODES.iter().find(|(code, _, _)| code == known).map(|(_, text, _)| *text).unwrap_or(""),
        }
    }

    /// The HTTP status the contract gives this code; `None` for [`ErrorCode::Other`].
    ///
    /// ```
    /// use licensing_client::ErrorCode;
    ///
    /// assert_eq!(ErrorCode::RateLimited.http_status(), Some(429));
    /// assert_eq!(ErrorCode::Other("x".into()).http_status(), None);
    /// ```
    pub fn http_status(&self) -> Option<u16> {
        CODES.iter().find(|(code, _, _)| code == self).map(|(_, _, status)| *status)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verified refusal: the service (proven by the response token) answered this request with an
/// error code.
///
/// ```
/// use licensing_client::{Error, ErrorCode, Refusal};
///
/// fn explain(error: &Error) -> String {
///     match error {
///         Error::Refused(Refusal { code: ErrorCode::HwidMismatch, .. }) => {
///             "this account is bound to another machine".into()
///         }
///         Error::Refused(refusal) => format!("refused: {} ({})", refusal.code, refusal.message),
///         other => format!("failed: {other}"),
///     }
/// }
/// # let _ = explain;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Refusal {
    /// The error code (the token's `st`, equal to the answer's `status`).
    pub code: ErrorCode,
    /// The HTTP status of the answer.
    pub http_status: u16,
    /// The answer's `message`, for people. It is not signed: do not take decisions from it.
    pub message: String,
    /// `Retry-After` of a `rate_limited` answer.
    pub retry_after: Option<Duration>,
    /// The verified claims of the answer's token.
    pub claims: Box<Claims>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused with {} (HTTP {}): {}", self.code, self.http_status, self.message)
    }
}

/// Why an answer was not accepted as coming from the service for this request.
///
/// Every variant means: do not trust this answer. None of them carries a secret.
///
/// ```
/// use licensing_client::{Error, VerifyError};
///
/// fn is_tampering(error: &Error) -> bool {
///     matches!(
///         error,
///         Error::Verify(VerifyError::BadSignature | VerifyError::UnknownKid { .. } | VerifyError::NonceMismatch { .. })
///     )
/// }
/// # let _ = is_tampering;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The answer carries no response token (neither `X-Response-Token` nor a `token` field).
    /// `status` is the answer's unverified `status`, if it had one, for diagnostics only.
    #[error("the answer carries no response token (HTTP {http_status}, unverified status {status:?})")]
    MissingToken {
        /// The HTTP status of the answer.
        http_status: u16,
        /// The unverified `status` field of a JSON answer.
        status: Option<String>,
    },
    /// The `X-Response-Token` header and the JSON `token` field differ.
    #[error("the X-Response-Token header and the token field differ")]
    TokenConflict,
    /// The token is not a well-formed EdDSA compact JWS with the claims the contract requires.
    #[error("malformed response token: {0}")]
    MalformedToken(String),
    /// The token names a key (`kid`) that is not pinned, or names none.
    #[error("the response token is signed with a key that is not pinned (kid {kid:?})")]
    UnknownKid {
        /// The token's `kid`, `None` when its header has none.
        kid: Option<String>,
    },
    /// The signature does not verify with the pinned key the token names.
    #[error("the response token's signature does not verify")]
    BadSignature,
    /// The token answers another action.
    #[error("the response token answers `{got}`, not `{expected}`")]
    ActionMismatch {
        /// The action sent.
        expected: String,
        /// The token's `act`.
        got: String,
    },
    /// The token's `nonce` is not the one this request sent: a replayed answer.
    #[error("the response token's nonce is not the one sent (a replayed answer)")]
    NonceMismatch {
        /// The nonce sent.
        sent: String,
        /// The token's `nonce`.
        got: String,
    },
    /// The token's `st`, the answer's `status` and its HTTP status disagree.
    #[error(
        "the answer's status disagrees with its token (HTTP {http_status}, status {status:?}, st {st:?})"
    )]
    StatusMismatch {
        /// The HTTP status of the answer.
        http_status: u16,
        /// The answer's `status` (`None` for a downloaded file).
        status: Option<String>,
        /// The token's `st`.
        st: String,
    },
    /// The token names another user.
    #[error("the response token names user {got:?}, not {expected:?}")]
    SubjectMismatch {
        /// The username sent.
        expected: String,
        /// The token's `sub`.
        got: Option<String>,
    },
    /// The token's `hwid` is not consistent with the HWID sent.
    #[error("the response token's hwid {got:?} does not match the HWID sent {sent:?}")]
    HwidMismatch {
        /// The HWID sent.
        sent: Option<String>,
        /// The token's `hwid`.
        got: Option<String>,
    },
    /// The token has expired (`exp`), beyond the allowed clock skew.
    #[error("the response token expired at {exp} (now {now})")]
    Expired {
        /// The token's `exp`, Unix seconds.
        exp: i64,
        /// The client's time, Unix seconds.
        now: i64,
    },
    /// The token was issued (`iat`) in the future, beyond the allowed clock skew.
    #[error("the response token is issued in the future at {iat} (now {now})")]
    NotYetValid {
        /// The token's `iat`, Unix seconds.
        iat: i64,
        /// The client's time, Unix seconds.
        now: i64,
    },
    /// The downloaded bytes are not the ones the token's `sha256` names.
    #[error("the downloaded bytes do not match the token's sha256 (expected {expected}, got {actual})")]
    DigestMismatch {
        /// The token's `sha256`.
        expected: String,
        /// The SHA-256 of the bytes received.
        actual: String,
    },
    /// An unsigned field of the answer contradicts the signed claims (the body was altered).
    #[error("the answer's `{field}` contradicts its signed claims")]
    BodyMismatch {
        /// The field of the answer.
        field: &'static str,
    },
    /// The answer is not what the contract describes (not JSON, a field of the wrong type, …).
    #[error("malformed answer: {0}")]
    MalformedAnswer(String),
}

/// Everything a call can fail with.
///
/// - [`Error::Refused`]: the service refused, and the token proves it.
/// - [`Error::Verify`]: the answer could not be verified; treat it as an attack or a broken
///   middlebox, never as an answer.
/// - [`Error::Transport`]: the service could not be reached (or the connection broke);
///   [`Client::connect_or_lease`](crate::Client::connect_or_lease) falls back to the lease on these
///   only.
/// - [`Error::Io`]: writing a download failed.
/// - [`Error::Config`]: the client was set up wrongly (a bad pinned key, a bad URL, …).
///
/// ```
/// use licensing_client::Error;
///
/// fn may_retry(error: &Error) -> bool {
///     error.is_transport()
/// }
/// # let _ = may_retry;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A verified refusal.
    #[error("{0}")]
    Refused(Refusal),
    /// The answer failed verification.
    #[error("the answer failed verification: {0}")]
    Verify(#[from] VerifyError),
    /// The service could not be reached, or the transfer broke.
    #[error("transport error: {0}")]
    Transport(#[source] reqwest::Error),
    /// A local IO error (writing a download).
    #[error("IO error: {0}")]
    Io(#[from] std::io::Error),
    /// The client's configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The operating system's random source failed.
    #[error("the OS random source failed: {0}")]
    Random(String),
}

impl Error {
    /// The refusal, when the service refused.
    ///
    /// ```
    /// # fn check(error: licensing_client::Error) {
    /// if let Some(refusal) = error.refusal() {
    ///     eprintln!("refused: {}", refusal.code);
    /// }
    /// # }
    /// ```
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Error::Refused(refusal) => Some(refusal),
            _ => None,
        }
    }

    /// The error code, when the service refused.
    ///
    /// ```
    /// # fn check(error: licensing_client::Error) {
    /// use licensing_client::ErrorCode;
    /// if error.code() == Some(&ErrorCode::InvalidCredentials) {
    ///     eprintln!("wrong username or password");
    /// }
    /// # }
    /// ```
    pub fn code(&self) -> Option<&ErrorCode> {
        self.refusal().map(|r| &r.code)
    }

    /// The verification failure, when the answer was not accepted.
    ///
    /// ```
    /// # fn check(error: licensing_client::Error) {
    /// if let Some(failure) = error.verify_error() {
    ///     eprintln!("untrusted answer: {failure}");
    /// }
    /// # }
    /// ```
    pub fn verify_error(&self) -> Option<&VerifyError> {
        match self {
            Error::Verify(failure) => Some(failure),
            _ => None,
        }
    }

    /// Whether the service could not be reached (the only case where running on the lease is
    /// allowed).
    ///
    /// ```
    /// # fn check(error: licensing_client::Error) {
    /// if error.is_transport() {
    ///     eprintln!("offline");
    /// }
    /// # }
    /// ```
    pub fn is_transport(&self) -> bool {
        matches!(self, Error::Transport(_))
    }
}
