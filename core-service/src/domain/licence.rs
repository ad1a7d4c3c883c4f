use chrono::{DateTime, Utc};

/// The licence status of an end user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LicenceStatus {
    None,
    Active,
    Expired,
    Banned,
}

impl LicenceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LicenceStatus::None => "none",
            LicenceStatus::Active => "active",
            LicenceStatus::Expired => "expired",
            LicenceStatus::Banned => "banned",
        }
    }
}

/// What the status derivation needs to know of one licence a user holds.
#[derive(Debug, Clone, Copy)]
pub struct HeldLicence {
    pub expire_time: DateTime<Utc>,
    pub banned: bool,
    pub access: u8,
}

impl HeldLicence {
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expire_time <= now
    }
}

/// A user's standing: the status, and for an active user the best access level and the latest
/// expiry among the active licences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub status: LicenceStatus,
    pub level: Option<u8>,
    pub latest_expiry: Option<DateTime<Utc>>,
}

impl Standing {
    /// A ban stands even on an expired key; otherwise any unexpired key makes the user active.
    pub fn derive(held: &[HeldLicence], now: DateTime<Utc>) -> Standing {
        let none = Standing { status: LicenceStatus::None, level: None, latest_expiry: None };
        if held.is_empty() {
            return none;
        }
        if held.iter().any(|l| l.banned) {
            return Standing { status: LicenceStatus::Banned, ..none };
        }
        let active = held.iter().filter(|l| !l.is_expired(now));
        let level = active.clone().map(|l| l.access).max();
        let latest_expiry = active.map(|l| l.expire_time).max();
        match level {
            Some(_) => Standing { status: LicenceStatus::Active, level, latest_expiry },
            None => Standing { status: LicenceStatus::Expired, ..none },
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn lic(days: i64, banned: bool, access: u8) -> HeldLicence {
        HeldLicence { expire_time: Utc::now() + Duration::days(days), banned, access }
    }

    #[test]
    fn status_follows_the_contract_order() {
        let now = Utc::now();
        assert_eq!(Standing::derive(&[], now).status, LicenceStatus::None);
        assert_eq!(Standing::derive(&[lic(-1, false, 1)], now).status, LicenceStatus::Expired);
        assert_eq!(
            Standing::derive(&[lic(-1, false, 1), lic(3, false, 2)], now).status,
            LicenceStatus::Active
        );
        // A ban on an expired key still bans.
        assert_eq!(
            Standing::derive(&[lic(-1, true, 1), lic(3, false, 2)], now).status,
            LicenceStatus::Banned
        );
    }

    #[test]
    fn active_standing_reports_best_level_and_latest_expiry() {
        let now = Utc::now();
        let a = lic(3, false, 2);
        let b = lic(10, false, 7);
        let c = lic(20, false, 4);
        let s = Standing::derive(&[a, b, c, lic(-5, false, 9)], now);
        assert_eq!(s.level, Some(7));
        assert_eq!(s.latest_expiry, Some(c.expire_time));
    }

    #[test]
    fn a_key_expiring_now_is_expired() {
        let now = Utc::now();
        let l = HeldLicence { expire_time: now, banned: false, access: 0 };
        assert_eq!(Standing::derive(&[l], now).status, LicenceStatus::Expired);
    }
}
