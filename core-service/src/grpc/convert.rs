//! protobuf <-> domain conversions.

use chrono::{DateTime, Utc};
use licensing::v1 as pb;

use crate::{
    domain::{CoreError, LicenceStatus},
    service::{AppView, FileView, LicenceView, SigningKeyState, SigningKeyView, UserView},
};

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

pub fn from_timestamp(field: &'static str, t: &prost_types::Timestamp) -> Result<DateTime<Utc>, CoreError> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
        .ok_or_else(|| CoreError::invalid(field, format!("{field} is not a valid time")))
}

pub fn status(s: LicenceStatus) -> pb::LicenceStatus {
    match s {
        LicenceStatus::None => pb::LicenceStatus::None,
        LicenceStatus::Active => pb::LicenceStatus::Active,
        LicenceStatus::Expired => pb::LicenceStatus::Expired,
        LicenceStatus::Banned => pb::LicenceStatus::Banned,
    }
}

pub fn user(u: UserView) -> pb::User {
    pb::User {
        id: u.id,
        username: u.username,
        email: u.email,
        hwid: u.hwid,
        joined: Some(timestamp(u.joined)),
        total_pings: u.total_pings,
        last_seen: u.last_seen.map(timestamp),
        licence_status: status(u.status).into(),
        has_licence: u.has_licence,
    }
}

pub fn app(a: AppView) -> pb::App {
    pb::App {
        name: a.name,
        secret: a.secret,
        public_key: a.public_key,
        online: a.online,
        version: a.version,
        offline_grace: Some(prost_types::Duration { seconds: a.offline_grace_secs, nanos: 0 }),
        created: Some(timestamp(a.created)),
        signing_keys: a.keys.into_iter().map(signing_key).collect(),
        id: a.id,
    }
}

fn signing_key(k: SigningKeyView) -> pb::SigningKey {
    let state = match k.state {
        SigningKeyState::Signing => pb::SigningKeyState::Signing,
        SigningKeyState::Next => pb::SigningKeyState::Next,
        SigningKeyState::Previous => pb::SigningKeyState::Previous,
    };
    pb::SigningKey {
        kid: k.kid,
        public_key: k.public_key,
        state: state.into(),
        created: Some(timestamp(k.created)),
    }
}

pub fn licence(l: LicenceView) -> pb::Licence {
    pb::Licence {
        id: l.id,
        key: l.key,
        in_use: l.used_by.is_some(),
        used_by: l.used_by,
        expire_time: Some(timestamp(l.expire_time)),
        created: Some(timestamp(l.created)),
        access: u32::from(l.access),
        redeemed: l.redeemed,
        redeemed_at: l.redeemed_at.map(timestamp),
        banned: l.banned,
    }
}

pub fn file(f: FileView) -> pb::FileInfo {
    pb::FileInfo {
        filename: f.filename,
        size: f.size,
        sha256: f.sha256,
        uploaded: Some(timestamp(f.uploaded)),
    }
}
