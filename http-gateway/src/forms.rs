//! Legacy form bodies, and their translation into the core's gRPC requests (one place).
//!
//! String fields are handed to the core as they are (absent ones as empty strings): the core owns
//! the rules and names the offending field itself. Only fields the gateway must turn into another
//! type (integers, the 0/1 status, the expiry date) are judged here.

use std::collections::HashMap;

use bytes::Bytes;
use chrono::NaiveDateTime;
use futures_util::stream;
use licensing::{ErrorCode, v1};
use percent_encoding::percent_decode;

use crate::error::ApiError;

/// Largest form body accepted (everything but `upload_file`).
pub const FORM_LIMIT: u64 = 64 * 1024;

// Kept public here: callers found it in this module before it moved to the shared crate.
pub use licensing::DATE_FORMAT;

/// A parsed form: field name to raw value, the last occurrence winning (as in PHP).
#[derive(Debug, Default, Clone)]
pub struct Form {
    fields: HashMap<String, Bytes>,
}

impl Form {
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Bytes>) {
        self.fields.insert(name.into(), value.into());
    }

    /// Reads an `application/x-www-form-urlencoded` body or query string. Values stay bytes until
    /// a field is asked for, so junk in a field nobody reads is ignored like any unknown field.
    pub fn parse_urlencoded(input: &[u8]) -> Form {
        let mut form = Form::default();
        for pair in input.split(|&b| b == b'&').filter(|pair| !pair.is_empty()) {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &[][..]),
            };
            let name = String::from_utf8_lossy(&decode_component(name)).into_owned();
            form.insert(name, decode_component(value));
        }
        form
    }

    /// Reads a `multipart/form-data` body that is already in memory (at most [`FORM_LIMIT`]).
    pub async fn parse_multipart(body: Bytes, boundary: &str) -> Result<Form, ApiError> {
        let body = stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
        let mut multipart = multer::Multipart::new(body, boundary);
        let mut form = Form::default();
        while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
            let name = field.name().map(str::to_owned);
            let value = field.bytes().await.map_err(multipart_error)?;
            if let Some(name) = name {
                form.insert(name, value);
            }
        }
        Ok(form)
    }

    /// Reads a form body of either encoding; a missing or unknown content type is urlencoded.
    pub async fn parse(content_type: Option<&str>, body: Bytes) -> Result<Form, ApiError> {
        match content_type.and_then(multipart_boundary) {
            Some(boundary) => Form::parse_multipart(body, &boundary).await,
            None => Ok(Form::parse_urlencoded(&body)),
        }
    }

    pub fn raw(&self, name: &str) -> Option<&[u8]> {
        self.fields.get(name).map(|value| &value[..])
    }

    /// A string field, empty when absent; the core decides whether that is allowed.
    pub fn text(&self, name: &str) -> Result<String, ApiError> {
        match self.raw(name) {
            None => Ok(String::new()),
            Some(raw) => std::str::from_utf8(raw)
                .map(str::to_owned)
                .map_err(|_| ApiError::invalid_field(name, "not valid UTF-8")),
        }
    }

    /// A field the gateway must convert: absent or empty is `missing_field`.
    fn required(&self, name: &str) -> Result<String, ApiError> {
        let value = self.text(name)?;
        if value.is_empty() {
            return Err(ApiError::missing_field(name));
        }
        Ok(value)
    }

    /// The developer password, under the original's spelling or the corrected one.
    pub fn developer_password(&self) -> Result<String, ApiError> {
        let legacy = self.text("develoer_password")?;
        if !legacy.is_empty() {
            return Ok(legacy);
        }
        self.text("developer_password")
    }
}

/// The boundary of a `multipart/form-data` content type, or `None` for anything else.
pub fn multipart_boundary(content_type: &str) -> Option<String> {
    multer::parse_boundary(content_type).ok()
}

/// How a multipart parse failure is answered.
pub fn multipart_error(error: multer::Error) -> ApiError {
    match error {
        multer::Error::StreamSizeExceeded { limit } | multer::Error::FieldSizeExceeded { limit, .. } => {
            ApiError::payload_too_large(limit)
        }
        other => {
            tracing::debug!(error = %other, "malformed multipart body");
            ApiError::new(ErrorCode::InvalidField, "the multipart/form-data body is malformed")
        }
    }
}

fn decode_component(raw: &[u8]) -> Vec<u8> {
    let spaced: Vec<u8> = raw.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    percent_decode(&spaced).collect()
}

// ---------------------------------------------------------------------------------------------
// Typed fields
// ---------------------------------------------------------------------------------------------

/// `user_id`: the core's numeric user id.
pub fn user_id(form: &Form) -> Result<i64, ApiError> {
    let value = form.required("user_id")?;
    // `i64::from_str` also takes a leading `+`, which no id is ever written with.
    if value.starts_with('+') {
        return Err(ApiError::invalid_field("user_id", "expected an integer"));
    }
    value.parse().map_err(|_| ApiError::invalid_field("user_id", "expected an integer"))
}

/// `status`: exactly `0` (offline) or `1` (online).
pub fn online_status(form: &Form) -> Result<bool, ApiError> {
    match form.required("status")?.as_str() {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(ApiError::invalid_field("status", "expected 0 or 1")),
    }
}

/// A non-negative integer field (`amount`, `access`). Its range is the core's to check, so any
/// value the proto field can hold goes through.
pub fn unsigned(form: &Form, name: &str) -> Result<u32, ApiError> {
    let value = form.required(name)?;
    // `u32::from_str` accepts a leading `+`; a legacy form never needs it.
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid_field(name, "expected a whole number"));
    }
    value.parse().map_err(|_| ApiError::invalid_field(name, "expected a whole number"))
}

/// `expire_date`: `YYYY-MM-DD HH:MM:SS`, UTC. Whether it lies in the future is the core's call.
pub fn expire_date(form: &Form) -> Result<prost_types::Timestamp, ApiError> {
    let value = form.required("expire_date")?;
    let invalid = || ApiError::invalid_field("expire_date", "expected YYYY-MM-DD HH:MM:SS");
    // chrono is lenient where the contract is not: it takes one-digit fields, signed or longer
    // years and a leap second (`:60`). Only the exact shape goes on to it.
    let shaped = value.len() == 19
        && value.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        })
        && &value[17..] < "60";
    if !shaped {
        return Err(invalid());
    }
    let parsed = NaiveDateTime::parse_from_str(&value, DATE_FORMAT).map_err(|_| invalid())?;
    let utc = parsed.and_utc();
    Ok(prost_types::Timestamp { seconds: utc.timestamp(), nanos: 0 })
}

// ---------------------------------------------------------------------------------------------
// Legacy form -> gRPC request
// ---------------------------------------------------------------------------------------------

/// Who is calling, as the gateway saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The client's IP address without port, empty when unknown.
    pub address: String,
}

/// Builds a gRPC request from a legacy form, the way `TryFrom` would if it could take the caller.
pub trait FromForm: Sized {
    fn from_form(form: &Form, caller: &Caller) -> Result<Self, ApiError>;
}

fn origin(form: &Form, caller: &Caller) -> Result<v1::Origin, ApiError> {
    Ok(v1::Origin { client_address: caller.address.clone(), nonce: form.text("nonce")? })
}

fn user_auth(form: &Form) -> Result<v1::UserAuth, ApiError> {
    Ok(v1::UserAuth {
        app_secret: form.text("app_secret")?,
        username: form.text("username")?,
        password: form.text("password")?,
        hwid: form.text("hwid")?,
    })
}

/// The developer's credentials and the app they act on.
pub fn app_scope(form: &Form, caller: &Caller) -> Result<v1::AppScope, ApiError> {
    Ok(v1::AppScope {
        app_secret: form.text("app_secret")?,
        developer: Some(v1::DeveloperAuth {
            username: form.text("developer_username")?,
            password: form.developer_password()?,
        }),
        origin: Some(origin(form, caller)?),
        // The legacy API names apps by their secret only.
        app_id: 0,
    })
}

impl FromForm for v1::RegisterRequest {
    fn from_form(form: &Form, caller: &Caller) -> Result<Self, ApiError> {
        Ok(v1::RegisterRequest {
            app_secret: form.text("app_secret")?,
            username: form.text("username")?,
            password: form.text("password")?,
            email: form.text("email")?,
            hwid: form.text("hwid")?,
            licence_key: form.text("licence")?,
            origin: Some(origin(form, caller)?),
        })
    }
}

impl FromForm for v1::LoginRequest {
    fn from_form(form: &Form, caller: &Caller) -> Result<Self, ApiError> {
        Ok(v1::LoginRequest { auth: Some(user_auth(form)?), origin: Some(origin(form, caller)?) })
    }
}

impl FromForm for v1::HeartbeatRequest {
    fn from_form(form: &Form, caller: &Caller) -> Result<Self, ApiError> {
        Ok(v1::HeartbeatRequest { auth: Some(user_auth(form)?), origin: Some(origin(form, caller)?) })
    }
}

impl FromForm for v1::DownloadRequest {
    fn from_form(form: &Form, caller: &Caller) -> Result<Self, ApiError> {
        Ok(v1::DownloadRequest { auth: Some(user_auth(form)?), origin: Some(origin(form, caller)?) })
    }
}

impl FromForm for v1::RedeemRequest {
    fn from_form(form: &Form, caller: &Caller) -> Result<Self, ApiError> {
        Ok(v1::RedeemRequest {
            auth: Some(user_auth(form)?),
            licence_key: form.text("licence")?,
            origin: Some(origin(form, caller)?),
        })
    }
}

impl FromForm for v1::GetAppRequest {
    fn from_form(form: &Form, caller: &Caller) -> Result<Self, ApiError> {
        Ok(v1::GetAppRequest { scope: Some(app_scope(form, caller)?) })
    }
}

impl FromForm for v1::RenewSecretRequest {
    fn from_form(form: &Form, caller: &Caller) -> Result<Self, ApiError> {
        Ok(v1::RenewSecretRequest { scope: Some(app_scope(form, caller)?) })
    }
}

impl FromForm for v1::SetAppOnlineRequest {
    fn from_form(form: &Form, caller: &Caller) -> Result<Self, ApiError> {
        let online = online_status(form)?;
        Ok(v1::SetAppOnlineRequest { scope: Some(app_scope(form, caller)?), online })
    }
}

impl FromForm for v1::SetAppVersionRequest {
    fn from_form(form: &Form, caller: &Caller) -> Result<Self, ApiError> {
        Ok(v1::SetAppVersionRequest { scope: Some(app_scope(form, caller)?), version: form.text("version")? })
    }
}

/// Largest page the core serves; the gateway pages through everything for the legacy arrays.
pub const PAGE_SIZE: u32 = 1000;

impl FromForm for v1::ListLicencesRequest {
    fn from_form(form: &Form, caller: &Caller) -> Result<Self, ApiError> {
        Ok(v1::ListLicencesRequest {
            scope: Some(app_scope(form, caller)?),
            page_size: PAGE_SIZE,
            page_token: String::new(),
            // The legacy `get_licences` lists every licence.
            key_prefix: String::new(),
            filter: v1::LicenceFilter::Unspecified.into(),
        })
    }
}

impl FromForm for v1::ListUsersRequest {
    fn from_form(form: &Form, caller: &Caller) -> Result<Self, ApiError> {
        Ok(v1::ListUsersRequest {
            scope: Some(app_scope(form, caller)?),
            page_size: PAGE_SIZE,
            page_token: String::new(),
            // The legacy `get_users` lists every user.
            username_prefix: String::new(),
        })
    }
}

impl FromForm for v1::CreateLicencesRequest {
    fn from_form(form: &Form, caller: &Caller) -> Result<Self, ApiError> {
        let amount = unsigned(form, "amount")?;
        let access = unsigned(form, "access")?;
        let expire_time = expire_date(form)?;
        Ok(v1::CreateLicencesRequest {
            scope: Some(app_scope(form, caller)?),
            amount,
            access,
            expire_time: Some(expire_time),
        })
    }
}

impl FromForm for v1::DeleteLicenceRequest {
    fn from_form(form: &Form, caller: &Caller) -> Result<Self, ApiError> {
        Ok(v1::DeleteLicenceRequest {
            scope: Some(app_scope(form, caller)?),
            licence_key: form.text("licence_key")?,
        })
    }
}

impl FromForm for v1::BanLicenceRequest {
    fn from_form(form: &Form, caller: &Caller) -> Result<Self, ApiError> {
        Ok(v1::BanLicenceRequest {
            scope: Some(app_scope(form, caller)?),
            licence_key: form.text("licence_key")?,
        })
    }
}

impl FromForm for v1::UnbanLicenceRequest {
    fn from_form(form: &Form, caller: &Caller) -> Result<Self, ApiError> {
        Ok(v1::UnbanLicenceRequest {
            scope: Some(app_scope(form, caller)?),
            licence_key: form.text("licence_key")?,
        })
    }
}

impl FromForm for v1::DeleteUserRequest {
    fn from_form(form: &Form, caller: &Caller) -> Result<Self, ApiError> {
        let user_id = user_id(form)?;
        Ok(v1::DeleteUserRequest { scope: Some(app_scope(form, caller)?), user_id })
    }
}

impl FromForm for v1::ResetHwidRequest {
    fn from_form(form: &Form, caller: &Caller) -> Result<Self, ApiError> {
        let user_id = user_id(form)?;
        Ok(v1::ResetHwidRequest { scope: Some(app_scope(form, caller)?), user_id })
    }
}

impl FromForm for v1::UploadFileHeader {
    /// The filename comes from the `file` part, not the form; the caller fills it in.
    fn from_form(form: &Form, caller: &Caller) -> Result<Self, ApiError> {
        Ok(v1::UploadFileHeader { scope: Some(app_scope(form, caller)?), filename: String::new() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> Form {
        Form::parse_urlencoded(body.as_bytes())
    }

    fn caller() -> Caller {
        Caller { address: "203.0.113.7".into() }
    }

    #[test]
    fn urlencoded_decodes_plus_and_percent() {
        let f = form("username=bob+the%20builder&password=p%26ss%3Dw%2Bord&email=a%40b.c&empty=&flag");
        assert_eq!(f.text("username").unwrap(), "bob the builder");
        assert_eq!(f.text("password").unwrap(), "p&ss=w+ord");
        assert_eq!(f.text("email").unwrap(), "a@b.c");
        assert_eq!(f.text("empty").unwrap(), "");
        assert_eq!(f.raw("flag"), Some(&b""[..]));
        assert_eq!(f.text("absent").unwrap(), "");
        assert_eq!(f.raw("absent"), None);
    }

    #[test]
    fn urlencoded_keeps_utf8_and_odd_escapes() {
        let f = form("name=J%C3%BCrgen&pct=100%&bad=%zz&key%20x=1&&=v");
        assert_eq!(f.text("name").unwrap(), "Jürgen");
        assert_eq!(f.text("pct").unwrap(), "100%");
        assert_eq!(f.text("bad").unwrap(), "%zz");
        assert_eq!(f.text("key x").unwrap(), "1");
        assert_eq!(f.text("").unwrap(), "v");
    }

    #[test]
    fn repeated_fields_take_the_last_value() {
        let f = form("username=first&username=second&username=third");
        assert_eq!(f.text("username").unwrap(), "third");
    }

    #[test]
    fn invalid_utf8_is_invalid_field_only_when_read() {
        let f = form("username=%FF%FE&other=%C3");
        let error = f.text("username").unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidField);
        assert!(error.message.contains("username"));
        // A junk field nobody asks for is ignored like any unknown field.
        let request = v1::LoginRequest::from_form(&form("other=%C3&username=bob"), &caller());
        assert!(request.is_ok());
        let error = v1::LoginRequest::from_form(&f, &caller()).unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidField);
    }

    fn multipart_body(boundary: &str, parts: &[(&str, Option<&str>, &str)]) -> Bytes {
        let mut body = String::new();
        for (name, filename, value) in parts {
            body.push_str(&format!("--{boundary}\r\n"));
            match filename {
                Some(filename) => body.push_str(&format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )),
                None => body.push_str(&format!(
                    "Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                )),
            }
            body.push_str(value);
            body.push_str("\r\n");
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        Bytes::from(body)
    }

    #[tokio::test]
    async fn multipart_fields_last_wins() {
        let body = multipart_body(
            "XyZ",
            &[
                ("username", None, "alice"),
                ("password", None, "p a+s%20s"),
                ("username", None, "bob"),
                ("hwid", Some("h.txt"), "HW-1"),
            ],
        );
        let f = Form::parse(Some("multipart/form-data; boundary=XyZ"), body).await.unwrap();
        assert_eq!(f.text("username").unwrap(), "bob");
        // No urlencoding inside multipart parts.
        assert_eq!(f.text("password").unwrap(), "p a+s%20s");
        assert_eq!(f.text("hwid").unwrap(), "HW-1");
    }

    #[tokio::test]
    async fn malformed_multipart_is_a_client_error() {
        let error = Form::parse(
            Some("multipart/form-data; boundary=XyZ"),
            Bytes::from_static(b"--XyZ\r\nno headers end"),
        )
        .await
        .unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidField);
    }

    #[tokio::test]
    async fn missing_or_other_content_types_read_as_urlencoded() {
        for content_type in [
            None,
            Some("application/x-www-form-urlencoded"),
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            Some("text/plain"),
            Some("application/json"),
            Some("multipart/form-data"), // no boundary
            Some("garbage;;;"),
        ] {
            let f = Form::parse(content_type, Bytes::from_static(b"username=bob&x=1")).await.unwrap();
            assert_eq!(f.text("username").unwrap(), "bob", "{content_type:?}");
        }
    }

    #[test]
    fn developer_password_prefers_a_non_empty_spelling() {
        assert_eq!(form("develoer_password=a&developer_password=b").developer_password().unwrap(), "a");
        assert_eq!(form("develoer_password=&developer_password=b").developer_password().unwrap(), "b");
        assert_eq!(form("developer_password=b").developer_password().unwrap(), "b");
        assert_eq!(form("").developer_password().unwrap(), "");
    }

    #[test]
    fn typed_fields_missing_and_invalid() {
        type Check = fn(&Form) -> Result<(), ApiError>;
        let checks: &[(&str, Check)] = &[
            ("user_id", |f| user_id(f).map(drop)),
            ("status", |f| online_status(f).map(drop)),
            ("amount", |f| unsigned(f, "amount").map(drop)),
            ("access", |f| unsigned(f, "access").map(drop)),
            ("expire_date", |f| expire_date(f).map(drop)),
        ];
        let invalid: &[(&str, &[&str])] = &[
            ("user_id", &["abc", "1.5", "1e3", " 1", "99999999999999999999", "%FF"]),
            ("status", &["2", "true", "01", "-1", " 1", "on"]),
            ("amount", &["-1", "abc", "1.0", "+5", "4294967296", " 5"]),
            ("access", &["-1", "x", "9.5", "0x1"]),
            (
                "expire_date",
                &[
                    "2030-01-01",
                    "2030-13-01 00:00:00",
                    "2030-01-01T00:00:00",
                    "tomorrow",
                    "2030-02-30 00:00:00",
                ],
            ),
        ];
        for (field, check) in checks {
            for body in ["".to_string(), format!("{field}=")] {
                let error = check(&form(&body)).unwrap_err();
                assert_eq!(error.code, ErrorCode::MissingField, "{field} {body:?}");
                assert!(error.message.contains(field), "{}", error.message);
            }
            let (_, values) = invalid.iter().find(|(name, _)| name == field).unwrap();
            for value in *values {
                let f = if *value == "%FF" {
                    form(&format!("{field}=%FF"))
                } else {
                    let mut f = Form::default();
                    f.insert(*field, value.to_string());
                    f
                };
                let error = check(&f).unwrap_err();
                assert_eq!(error.code, ErrorCode::InvalidField, "{field}={value:?}");
                assert!(error.message.contains(field), "{}", error.message);
            }
        }
    }

    #[test]
    fn typed_fields_valid_values() {
        assert_eq!(user_id(&form("user_id=42")).unwrap(), 42);
        assert_eq!(user_id(&form("user_id=-3")).unwrap(), -3);
        assert!(!online_status(&form("status=0")).unwrap());
        assert!(online_status(&form("status=1")).unwrap());
        // Ranges are the core's to check.
        assert_eq!(unsigned(&form("amount=501"), "amount").unwrap(), 501);
        assert_eq!(unsigned(&form("access=10"), "access").unwrap(), 10);
        assert_eq!(unsigned(&form("amount=0"), "amount").unwrap(), 0);
        let ts = expire_date(&form("expire_date=2030-01-02+03%3A04%3A05")).unwrap();
        assert_eq!(ts.seconds, 1_893_553_445);
        assert_eq!(ts.nanos, 0);
        // The past is the core's to refuse.
        assert_eq!(expire_date(&form("expire_date=1970-01-01 00:00:00")).unwrap().seconds, 0);
    }

    #[test]
    fn client_requests_carry_fields_and_origin() {
        let f = form("username=bob&password=pw&app_secret=S&hwid=H&nonce=N1&licence=KEY-1&email=b%40x.y");
        let register = v1::RegisterRequest::from_form(&f, &caller()).unwrap();
        assert_eq!(register.username, "bob");
        assert_eq!(register.email, "b@x.y");
        assert_eq!(register.licence_key, "KEY-1");
        assert_eq!(register.hwid, "H");
        let origin = register.origin.unwrap();
        assert_eq!(origin.client_address, "203.0.113.7");
        assert_eq!(origin.nonce, "N1");

        let redeem = v1::RedeemRequest::from_form(&f, &caller()).unwrap();
        assert_eq!(redeem.licence_key, "KEY-1");
        let auth = redeem.auth.unwrap();
        assert_eq!(
            (auth.app_secret.as_str(), auth.username.as_str(), auth.password.as_str()),
            ("S", "bob", "pw")
        );

        // Absent strings go through empty: the core names what is missing.
        let login = v1::LoginRequest::from_form(&form(""), &Caller::default()).unwrap();
        assert_eq!(login.auth.unwrap(), v1::UserAuth::default());
        assert_eq!(login.origin.unwrap(), v1::Origin::default());
    }

    #[test]
    fn developer_requests_carry_scope_and_typed_fields() {
        let f = form(
            "developer_username=dev&develoer_password=pw&app_secret=S&amount=5&access=3&expire_date=2030-01-01+00:00:00&licence_key=AB-CD&user_id=7&status=0&version=1.2",
        );
        let create = v1::CreateLicencesRequest::from_form(&f, &caller()).unwrap();
        assert_eq!((create.amount, create.access), (5, 3));
        let scope = create.scope.unwrap();
        assert_eq!(scope.app_secret, "S");
        assert_eq!(
            scope.developer.unwrap(),
            v1::DeveloperAuth { username: "dev".into(), password: "pw".into() }
        );
        assert_eq!(scope.origin.unwrap().client_address, "203.0.113.7");
        assert_eq!(v1::DeleteLicenceRequest::from_form(&f, &caller()).unwrap().licence_key, "AB-CD");
        assert_eq!(v1::BanLicenceRequest::from_form(&f, &caller()).unwrap().licence_key, "AB-CD");
        assert_eq!(v1::DeleteUserRequest::from_form(&f, &caller()).unwrap().user_id, 7);
        assert_eq!(v1::ResetHwidRequest::from_form(&f, &caller()).unwrap().user_id, 7);
        assert!(!v1::SetAppOnlineRequest::from_form(&f, &caller()).unwrap().online);
        assert_eq!(v1::SetAppVersionRequest::from_form(&f, &caller()).unwrap().version, "1.2");
        let list = v1::ListLicencesRequest::from_form(&f, &caller()).unwrap();
        assert_eq!(list.page_size, PAGE_SIZE);

        // Gateway-side field errors come before anything the core would check.
        let error = v1::CreateLicencesRequest::from_form(&form("amount=abc"), &caller()).unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidField);
        let error = v1::DeleteUserRequest::from_form(&form(""), &caller()).unwrap_err();
        assert_eq!(error.code, ErrorCode::MissingField);
    }
}
