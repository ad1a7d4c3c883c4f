//! The contract's success bodies, built from the core's replies. Field order follows the
//! contract; every timestamp is UTC `YYYY-MM-DD HH:MM:SS`.

use chrono::DateTime;
use licensing::{DATE_FORMAT, v1};
use serde::Serialize;
use warp::{http::StatusCode, reply::Response};

use crate::error::{ApiError, json_response, set_token_header};

const SUCCESS: &str = "success";

/// A timestamp as the legacy API writes it; `None` (JSON null) when absent or out of range.
pub fn timestamp(ts: Option<&prost_types::Timestamp>) -> Option<String> {
    let ts = ts?;
    let nanos = u32::try_from(ts.nanos).ok()?;
    DateTime::from_timestamp(ts.seconds, nanos).map(|at| at.format(DATE_FORMAT).to_string())
}

pub fn licence_status(raw: i32) -> &'static str {
    match v1::LicenceStatus::try_from(raw) {
        Ok(v1::LicenceStatus::Active) => "active",
        Ok(v1::LicenceStatus::Expired) => "expired",
        Ok(v1::LicenceStatus::Banned) => "banned",
        Ok(v1::LicenceStatus::None) => "none",
        Ok(v1::LicenceStatus::Unspecified) | Err(_) => {
            tracing::warn!(raw, "core sent an unspecified licence status");
            "none"
        }
    }
}

/// A message field the core must always set.
pub fn required<T>(value: Option<T>, what: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| {
        tracing::warn!(what, "core reply lacks a required field");
        ApiError::internal()
    })
}

/// `{"status": "success"}`.
#[derive(Serialize)]
pub struct Success {
    status: &'static str,
}

pub fn success() -> Success {
    Success { status: SUCCESS }
}

#[derive(Serialize)]
pub struct Login {
    status: &'static str,
    name: String,
    hwid: Option<String>,
    joined: Option<String>,
    has_licence: bool,
    licence_status: &'static str,
    total_pings: i64,
    app_version: Option<String>,
}

pub fn login(reply: v1::LoginResponse) -> Result<(Login, String), ApiError> {
    let user = required(reply.user, "LoginResponse.user")?;
    Ok((
        Login {
            status: SUCCESS,
            joined: timestamp(user.joined.as_ref()),
            licence_status: licence_status(user.licence_status),
            name: user.username,
            hwid: user.hwid.filter(|hwid| !hwid.is_empty()),
            has_licence: user.has_licence,
            total_pings: user.total_pings,
            app_version: reply.app_version,
        },
        reply.response_token,
    ))
}

#[derive(Serialize)]
pub struct Connect {
    status: &'static str,
    total_pings: i64,
}

pub fn connect(reply: v1::HeartbeatResponse) -> (Connect, String) {
    (Connect { status: SUCCESS, total_pings: reply.total_pings }, reply.response_token)
}

#[derive(Serialize)]
pub struct Redeem {
    status: &'static str,
    licence_status: &'static str,
    expire_time: Option<String>,
    access: u32,
}

pub fn redeem(reply: v1::RedeemResponse) -> (Redeem, String) {
    (
        Redeem {
            status: SUCCESS,
            licence_status: licence_status(reply.licence_status),
            expire_time: timestamp(reply.expire_time.as_ref()),
            access: reply.access,
        },
        reply.response_token,
    )
}

#[derive(Serialize)]
pub struct AppData {
    status: &'static str,
    appname: String,
    secret: String,
    public: String,
    online: u8,
    version: Option<String>,
    /// Every published signing key (extension): what clients pin through a key rotation.
    keys: Vec<PublishedKey>,
}

#[derive(Serialize)]
pub struct PublishedKey {
    kid: String,
    public: String,
    state: &'static str,
}

pub fn app_data(app: v1::App) -> AppData {
    let keys = app
        .signing_keys
        .into_iter()
        .map(|k| PublishedKey {
            state: match k.state() {
                v1::SigningKeyState::Signing => "signing",
                v1::SigningKeyState::Next => "next",
                v1::SigningKeyState::Previous => "previous",
                v1::SigningKeyState::Unspecified => "unspecified",
            },
            kid: k.kid,
            public: k.public_key,
        })
        .collect();
    AppData {
        status: SUCCESS,
        appname: app.name,
        secret: app.secret,
        public: app.public_key,
        online: u8::from(app.online),
        version: app.version,
        keys,
    }
}

#[derive(Serialize)]
pub struct Secret {
    status: &'static str,
    secret: String,
}

pub fn secret(app: v1::App) -> Secret {
    Secret { status: SUCCESS, secret: app.secret }
}

#[derive(Serialize)]
pub struct LicenceRow {
    id: i64,
    licence: String,
    usedby: Option<String>,
    isused: u8,
    expire_time: Option<String>,
    created: Option<String>,
    access: u32,
    redeemed: u8,
    redeemed_at: Option<String>,
    banned: u8,
}

pub fn licence_row(licence: v1::Licence) -> LicenceRow {
    LicenceRow {
        id: licence.id,
        expire_time: timestamp(licence.expire_time.as_ref()),
        created: timestamp(licence.created.as_ref()),
        redeemed_at: timestamp(licence.redeemed_at.as_ref()),
        licence: licence.key,
        usedby: licence.used_by,
        isused: u8::from(licence.in_use),
        access: licence.access,
        redeemed: u8::from(licence.redeemed),
        banned: u8::from(licence.banned),
    }
}

#[derive(Serialize)]
pub struct UserRow {
    id: i64,
    username: String,
    email: String,
    hwid: Option<String>,
    joined: Option<String>,
    total_pings: i64,
    last_seen: Option<String>,
    licence_status: &'static str,
}

pub fn user_row(user: v1::User) -> UserRow {
    UserRow {
        id: user.id,
        joined: timestamp(user.joined.as_ref()),
        last_seen: timestamp(user.last_seen.as_ref()),
        licence_status: licence_status(user.licence_status),
        username: user.username,
        email: user.email,
        hwid: user.hwid.filter(|hwid| !hwid.is_empty()),
        total_pings: user.total_pings,
    }
}

/// A developer answer: plain JSON, 200.
pub fn ok<T: Serialize>(body: &T) -> Response {
    json_response(StatusCode::OK, body)
}

/// An end-user answer: the core's token, when it sent one, rides along as field and header.
pub fn ok_with_token<T: Serialize>(body: T, token: &str) -> Response {
    #[derive(Serialize)]
    struct WithToken<'a, T> {
        #[serde(flatten)]
        body: T,
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<&'a str>,
    }
    let token = (!token.is_empty()).then_some(token);
    let mut response = json_response(StatusCode::OK, &WithToken { body, token });
    if let Some(token) = token {
        set_token_header(&mut response, token);
    }
    response
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos: 0 })
    }

    #[test]
    fn timestamps_are_utc_and_legacy_formatted() {
        assert_eq!(timestamp(ts(0).as_ref()).unwrap(), "1970-01-01 00:00:00");
        assert_eq!(timestamp(ts(1_893_553_445).as_ref()).unwrap(), "2030-01-02 03:04:05");
        assert_eq!(timestamp(None), None);
        let bad = prost_types::Timestamp { seconds: 0, nanos: -1 };
        assert_eq!(timestamp(Some(&bad)), None);
    }

    #[test]
    fn login_shape() {
        let reply = v1::LoginResponse {
            user: Some(v1::User {
                id: 1,
                username: "bob".into(),
                email: "b@x.y".into(),
                hwid: None,
                joined: ts(0),
                total_pings: 3,
                last_seen: None,
                licence_status: v1::LicenceStatus::Active as i32,
                has_licence: true,
            }),
            app_version: None,
            response_token: "t".into(),
        };
        let (body, token) = login(reply).unwrap();
        assert_eq!(token, "t");
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"status": "success", "name": "bob", "hwid": null, "joined": "1970-01-01 00:00:00",
                   "has_licence": true, "licence_status": "active", "total_pings": 3, "app_version": null})
        );
        assert!(login(v1::LoginResponse::default()).is_err());
    }

    #[test]
    fn licence_row_shape() {
        let row = licence_row(v1::Licence {
            id: 9,
            key: "AAAA-BBBB".into(),
            used_by: Some("bob".into()),
            in_use: true,
            expire_time: ts(60),
            created: ts(0),
            access: 4,
            redeemed: true,
            redeemed_at: None,
            banned: false,
        });
        assert_eq!(
            serde_json::to_value(&row).unwrap(),
            json!({"id": 9, "licence": "AAAA-BBBB", "usedby": "bob", "isused": 1,
                   "expire_time": "1970-01-01 00:01:00", "created": "1970-01-01 00:00:00",
                   "access": 4, "redeemed": 1, "redeemed_at": null, "banned": 0})
        );
    }

    #[test]
    fn statuses_spell_like_the_contract() {
        assert_eq!(licence_status(v1::LicenceStatus::Active as i32), "active");
        assert_eq!(licence_status(v1::LicenceStatus::Expired as i32), "expired");
        assert_eq!(licence_status(v1::LicenceStatus::Banned as i32), "banned");
        assert_eq!(licence_status(v1::LicenceStatus::None as i32), "none");
    }

    #[test]
    fn app_data_online_is_an_integer() {
        let body = app_data(v1::App {
            name: "App".into(),
            secret: "S".into(),
            public_key: "PK".into(),
            online: true,
            version: Some("1.0".into()),
            signing_keys: vec![
                v1::SigningKey {
                    kid: "K1".into(),
                    public_key: "PK".into(),
                    state: v1::SigningKeyState::Signing.into(),
                    created: None,
                },
                v1::SigningKey {
                    kid: "K2".into(),
                    public_key: "PK2".into(),
                    state: v1::SigningKeyState::Next.into(),
                    created: None,
                },
            ],
            ..Default::default()
        });
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"status": "success", "appname": "App", "secret": "S", "public": "PK", "online": 1, "version": "1.0",
                   "keys": [{"kid": "K1", "public": "PK", "state": "signing"},
                            {"kid": "K2", "public": "PK2", "state": "next"}]})
        );
    }
}
