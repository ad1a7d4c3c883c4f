//! What the use cases answer: plain data, converted to protobuf by the gRPC layer.

use base64::Engine;
use chrono::{DateTime, Utc};

use super::keys::SigningKeyView;
use crate::{
    domain::{LicenceStatus, Standing},
    storage::entities::{app, app_file, licence, user},
};

/// An app as its developer sees it (the secret included, the private key never).
#[derive(Clone)]
pub struct AppView {
    pub id: i64,
    pub name: String,
    pub secret: String,
    pub public_key: String,
    pub online: bool,
    pub version: Option<String>,
    pub offline_grace_secs: i64,
    pub created: DateTime<Utc>,
    /// Every published key (`public_key` is the signing one's).
    pub keys: Vec<SigningKeyView>,
}

impl AppView {
    pub fn new(a: app::Model, keys: Vec<SigningKeyView>) -> Self {
        AppView {
            id: a.id,
            keys,
            public_key: base64::engine::general_purpose::STANDARD.encode(&a.public_key),
            name: a.name,
            secret: a.secret,
            online: a.online,
            version: a.version,
            offline_grace_secs: a.offline_grace_secs,
            created: a.created_at,
        }
    }
}

impl std::fmt::Debug for AppView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppView")
            .field("name", &self.name)
            .field("online", &self.online)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct UserView {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub hwid: Option<String>,
    pub joined: DateTime<Utc>,
    pub total_pings: i64,
    pub last_seen: Option<DateTime<Utc>>,
    pub status: LicenceStatus,
    pub has_licence: bool,
}

impl UserView {
    pub fn new(u: user::Model, standing: Standing) -> Self {
        UserView {
            id: u.id,
            username: u.username,
            email: u.email,
            hwid: u.hwid,
            joined: u.joined,
            total_pings: u.total_pings,
            last_seen: u.last_seen,
            status: standing.status,
            has_licence: u.has_licence,
        }
    }
}

#[derive(Clone)]
pub struct LicenceView {
    pub id: i64,
    pub key: String,
    pub used_by: Option<String>,
    pub expire_time: DateTime<Utc>,
    pub created: DateTime<Utc>,
    pub access: u8,
    pub redeemed: bool,
    pub redeemed_at: Option<DateTime<Utc>>,
    pub banned: bool,
}

impl LicenceView {
    pub fn new(l: licence::Model, used_by: Option<String>) -> Self {
        LicenceView {
            id: l.id,
            key: l.licence_key,
            used_by,
            expire_time: l.expire_time,
            created: l.created_at,
            access: u8::try_from(l.access).unwrap_or(0),
            redeemed: l.redeemed,
            redeemed_at: l.redeemed_at,
            banned: l.banned,
        }
    }
}

impl std::fmt::Debug for LicenceView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LicenceView")
            .field("id", &self.id)
            .field("key", &crate::domain::mask_key(&self.key))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct FileView {
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    pub uploaded: DateTime<Utc>,
}

impl From<&app_file::Model> for FileView {
    fn from(f: &app_file::Model) -> Self {
        FileView {
            filename: f.filename.clone(),
            size: u64::try_from(f.size).unwrap_or(0),
            sha256: f.sha256.clone(),
            uploaded: f.created_at,
        }
    }
}
