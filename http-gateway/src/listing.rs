//! `get_licences` and `get_users`: the core streams pages, and the gateway writes each page into
//! the JSON array as it arrives, so neither program ever holds a whole listing.

use std::{io, time::Duration};

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use serde::Serialize;
use tonic::{Status, Streaming};
use warp::{
    http::{HeaderValue, header},
    reply::{Reply, Response},
};

use crate::{
    error::{ApiError, JSON_CONTENT_TYPE},
    metrics,
};

/// Answers a JSON array of the rows of every page. The first page is awaited before the answer
/// starts, so a failure there still gets its proper status and body. A failure after the answer
/// started can no longer change its status: the connection is cut instead, so the client sees an
/// incomplete body rather than a listing that looks whole.
pub async fn json_array<M, R>(
    mut pages: Streaming<M>,
    idle: Duration,
    rows: fn(M) -> Vec<R>,
    error: fn(&Status) -> ApiError,
) -> Result<Response, ApiError>
where
    M: Send + 'static,
    R: Serialize + 'static,
{
    let first = match tokio::time::timeout(idle, pages.message()).await {
        Err(_) => return Err(ApiError::unavailable()),
        Ok(Err(status)) => return Err(error(&status)),
        Ok(Ok(first)) => first,
    };
    let mut opening = b"[".to_vec();
    let mut empty = true;
    if let Some(page) = first {
        write_rows(&mut opening, &mut empty, rows(page))?;
    }
    metrics::streamed(metrics::Stream::Listing, opening.len());
    let state = Some(Pages { pages, idle, rows, empty });
    let rest = stream::unfold(state, |state| async move {
        let mut state = state?;
        match tokio::time::timeout(state.idle, state.pages.message()).await {
            Ok(Ok(Some(page))) => {
                let mut out = Vec::new();
                match write_rows(&mut out, &mut state.empty, (state.rows)(page)) {
                    Ok(()) => {
                        metrics::streamed(metrics::Stream::Listing, out.len());
                        Some((Ok(Bytes::from(out)), Some(state)))
                    }
                    Err(_) => Some((Err(io::Error::other("cannot serialise a row")), None)),
                }
            }
            Ok(Ok(None)) => {
                metrics::streamed(metrics::Stream::Listing, 1);
                Some((Ok(Bytes::from_static(b"]")), None))
            }
            Ok(Err(status)) => {
                tracing::warn!(code = ?status.code(), "a listing failed midway");
                Some((Err(io::Error::other("the core failed midway")), None))
            }
            Err(_) => {
                tracing::warn!("a listing stalled midway");
                Some((Err(io::Error::other("the core stalled")), None))
            }
        }
    });
    let body = stream::iter([Ok::<_, io::Error>(Bytes::from(opening))]).chain(rest);
    let mut response = warp::reply::stream(body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
    Ok(response)
}

struct Pages<M, R> {
    pages: Streaming<M>,
    idle: Duration,
    rows: fn(M) -> Vec<R>,
    /// No row written yet: the next one needs no comma before it.
    empty: bool,
}

fn write_rows<R: Serialize>(out: &mut Vec<u8>, empty: &mut bool, rows: Vec<R>) -> Result<(), ApiError> {
    for row in rows {
        if !*empty {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, &row).map_err(|error| {
            tracing::warn!(%error, "could not serialise a row");
            ApiError::internal()
        })?;
        *empty = false;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_joined_by_commas_across_pages() {
        let mut out = b"[".to_vec();
        let mut empty = true;
        write_rows(&mut out, &mut empty, Vec::<u8>::new()).unwrap();
        write_rows(&mut out, &mut empty, vec![1, 2]).unwrap();
        write_rows(&mut out, &mut empty, vec![3]).unwrap();
        out.push(b']');
        assert_eq!(out, b"[1,2,3]");
    }
}
