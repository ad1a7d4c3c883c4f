//! The licence export: `StreamLicences` pages written out as CSV rows as they arrive, so the
//! gateway never holds the whole listing. Every field is quoted when it must be, and a field a
//! spreadsheet would read as a formula is defused.

use std::{io, time::Duration};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use licensing::v1::{Licence, ListLicencesResponse};
use tonic::Streaming;

use super::pages::{licence_status, timestamp_text};
use crate::metrics;

pub const HEADER: &str = "key,status,access,expires,user,created\r\n";

/// Writes one field: quoted when it holds a separator, quote or line break; prefixed with `'`
/// when it starts with a character that makes spreadsheets evaluate it (`=`, `+`, `-`, `@`, and
/// the tab and carriage return that some of them skip first).
pub fn push_field(out: &mut String, value: &str) {
    let defuse = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = defuse || value.contains([',', '"', '\r', '\n']);
    if quote {
        out.push('"');
    }
    if defuse {
        out.push('\'');
    }
    for c in value.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quote {
        out.push('"');
    }
}

/// One licence as a CSV line (CRLF-terminated, as RFC 4180 has it).
pub fn push_row(out: &mut String, licence: &Licence, now: i64) {
    let fields = [
        licence.key.clone(),
        licence_status(licence, now).to_owned(),
        licence.access.to_string(),
        timestamp_text(licence.expire_time.as_ref()),
        licence.used_by.clone().unwrap_or_default(),
        timestamp_text(licence.created.as_ref()),
    ];
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        push_field(out, field);
    }
    out.push_str("\r\n");
}

fn push_page(out: &mut String, page: &ListLicencesResponse, now: i64) {
    out.reserve(page.licences.len() * 96);
    for licence in &page.licences {
        push_row(out, licence, now);
    }
}

fn counted(text: String) -> Bytes {
    metrics::streamed(metrics::Stream::Listing, text.len());
    Bytes::from(text)
}

/// The CSV body: the header and the first page (already received, so a failure before it got
/// an ordinary error page), then each later page as the core sends it. A failure midway ends the
/// body with an error, which cuts the connection: a partial export never looks complete.
pub fn body(
    first: Option<ListLicencesResponse>,
    pages: Streaming<ListLicencesResponse>,
    idle: Duration,
) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    let now = chrono::Utc::now().timestamp();
    let mut opening = String::from(HEADER);
    if let Some(page) = &first {
        push_page(&mut opening, page, now);
    }
    let more = first.is_some();
    let rest = stream::unfold(more.then_some(pages), move |pages| async move {
        let mut pages = pages?;
        match tokio::time::timeout(idle, pages.message()).await {
            Ok(Ok(Some(page))) => {
                let mut text = String::new();
                push_page(&mut text, &page, now);
                Some((Ok(counted(text)), Some(pages)))
            }
            Ok(Ok(None)) => None,
            Ok(Err(status)) => {
                tracing::warn!(code = ?status.code(), "a licence export failed midway");
                Some((Err(io::Error::other("the core failed midway")), None))
            }
            Err(_) => {
                tracing::warn!("a licence export stalled midway");
                Some((Err(io::Error::other("the core stalled")), None))
            }
        }
    });
    stream::iter([Ok(counted(opening))]).chain(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(value: &str) -> String {
        let mut out = String::new();
        push_field(&mut out, value);
        out
    }

    #[test]
    fn fields_are_quoted_and_defused() {
        assert_eq!(field("ABCDE-FGHIJ"), "ABCDE-FGHIJ");
        assert_eq!(field(""), "");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("+1"), "\"'+1\"");
        assert_eq!(field("-2"), "\"'-2\"");
        assert_eq!(field("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(field("\tx"), "\"'\tx\"");
        assert_eq!(field("a=b"), "a=b", "only a leading sign matters");
    }

    #[test]
    fn rows_follow_the_header() {
        let licence = Licence {
            key: "AAAAA-BBBBB".into(),
            used_by: Some("=evil".into()),
            in_use: true,
            access: 3,
            expire_time: Some(prost_types::Timestamp { seconds: 4_102_444_799, nanos: 0 }),
            created: Some(prost_types::Timestamp { seconds: 0, nanos: 0 }),
            redeemed: true,
            ..Default::default()
        };
        let mut out = String::new();
        push_row(&mut out, &licence, 0);
        assert_eq!(out, "AAAAA-BBBBB,active,3,2099-12-31 23:59:59,\"'=evil\",1970-01-01 00:00:00\r\n");
    }
}
