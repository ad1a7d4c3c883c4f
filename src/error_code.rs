use std::{fmt, str::FromStr};

/// `ErrorInfo.domain` of every error the core returns.
pub const ERROR_DOMAIN: &str = "licensing.v1";
/// gRPC metadata key carrying the signed response token of a failed end-user call.
pub const RESPONSE_TOKEN_METADATA: &str = "x-response-token";
/// gRPC metadata key a gateway sends its gateway credential in, so the core believes the client
/// addresses it reports.
pub const GATEWAY_CREDENTIAL_METADATA: &str = "x-gateway-credential";
/// gRPC metadata key carrying the whole seconds to wait after `rate_limited`.
pub const RETRY_AFTER_METADATA: &str = "retry-after";

macro_rules! error_codes {
    ($($variant:ident => $text:literal, $grpc:ident, $http:literal;)*) => {
        /// The stable, machine-readable error codes of the legacy API contract.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code, in the contract's order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as the contract spells it (`ErrorInfo.reason`, JSON `status`).
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $text,)* }
            }

            /// The gRPC status code the core answers with.
            pub fn grpc_code(self) -> tonic::Code {
                match self { $(ErrorCode::$variant => tonic::Code::$grpc,)* }
            }

            /// The HTTP status the legacy gateway answers with.
            pub fn http_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $http,)* }
            }
        }

        impl FromStr for ErrorCode {
            type Err = UnknownErrorCode;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($text => Ok(ErrorCode::$variant),)* _ => Err(UnknownErrorCode) }
            }
        }
    };
}

error_codes! {
    MissingField => "missing_field", InvalidArgument, 400;
    InvalidField => "invalid_field", InvalidArgument, 400;
    UnknownAction => "unknown_action", InvalidArgument, 400;
    NotFound => "not_found", NotFound, 404;
    MethodNotAllowed => "method_not_allowed", InvalidArgument, 405;
    PayloadTooLarge => "payload_too_large", ResourceExhausted, 413;
    InvalidAppSecret => "invalid_app_secret", Unauthenticated, 401;
    InvalidCredentials => "invalid_credentials", Unauthenticated, 401;
    InvalidDeveloper => "invalid_developer", Unauthenticated, 401;
    Forbidden => "forbidden", PermissionDenied, 403;
    HwidMismatch => "hwid_mismatch", PermissionDenied, 403;
    LicenceBanned => "licence_banned", PermissionDenied, 403;
    NoActiveLicence => "no_active_licence", PermissionDenied, 403;
    UsernameTaken => "username_taken", AlreadyExists, 409;
    InvalidLicence => "invalid_licence", NotFound, 400;
    LicenceUsed => "licence_used", AlreadyExists, 409;
    LicenceExpired => "licence_expired", FailedPrecondition, 410;
    NoFile => "no_file", NotFound, 404;
    AppOffline => "app_offline", FailedPrecondition, 503;
    RateLimited => "rate_limited", ResourceExhausted, 429;
    Unavailable => "unavailable", Unavailable, 503;
    Internal => "internal", Internal, 500;
}

/// A reason string that is not one of the contract's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownErrorCode;

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_text() {
        for code in ErrorCode::ALL {
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(*code));
        }
        assert_eq!("no_such_code".parse::<ErrorCode>(), Err(UnknownErrorCode));
    }

    #[test]
    fn statuses_follow_the_contract_table() {
        let table = [
            ("missing_field", 400),
            ("invalid_field", 400),
            ("unknown_action", 400),
            ("not_found", 404),
            ("method_not_allowed", 405),
            ("payload_too_large", 413),
            ("invalid_app_secret", 401),
            ("invalid_credentials", 401),
            ("invalid_developer", 401),
            ("forbidden", 403),
            ("hwid_mismatch", 403),
            ("licence_banned", 403),
            ("no_active_licence", 403),
            ("username_taken", 409),
            ("invalid_licence", 400),
            ("licence_used", 409),
            ("licence_expired", 410),
            ("no_file", 404),
            ("app_offline", 503),
            ("rate_limited", 429),
            ("unavailable", 503),
            ("internal", 500),
        ];
        assert_eq!(table.len(), ErrorCode::ALL.len());
        for (text, http) in table {
            let code: ErrorCode = text.parse().expect("listed code");
            assert_eq!(code.http_status(), http, "{text}");
        }
    }
}
