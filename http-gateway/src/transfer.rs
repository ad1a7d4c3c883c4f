//! Moving bodies: the size-limited form body, and the two binaries that stream through the
//! gateway without ever being held whole (`download` out of the core, `upload_file` into it).

use std::{io, time::Duration};

use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, stream::BoxStream};
use licensing::v1::{self, DownloadResponse, UploadFileRequest, download_response, upload_file_request};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Streaming, metadata::AsciiMetadataValue};
use warp::{
    http::{HeaderMap, HeaderValue, header},
    reply::{Reply, Response},
};

use crate::{
    core_client::CoreClient,
    error::{ApiError, set_token_header},
    forms::{Caller, FORM_LIMIT, Form, FromForm, multipart_boundary, multipart_error},
    metrics, replies,
};

/// A request body as warp hands it over.
pub type BodyStream = BoxStream<'static, Result<Bytes, warp::Error>>;

/// After refusing a body, how much of it is still read (and dropped) so the client gets to see
/// the answer: closing a socket with unread input resets the connection, answer included.
/// Clients such as Python `requests` send a whole oversized body before reading anything, so the
/// budget is generous; the time bound keeps a slow sender from holding the connection.
const DRAIN_BYTES: u64 = 128 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Largest piece of a binary per gRPC message, well under the default 4 MiB message limit.
const CHUNK_BYTES: usize = 64 * 1024;
/// Messages queued between the HTTP side and the gRPC side: the backpressure window.
const QUEUE_DEPTH: usize = 8;

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name)?.to_str().ok()
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_text(headers, header::CONTENT_LENGTH)?.trim().parse().ok()
}

fn expects_continue(headers: &HeaderMap) -> bool {
    header_text(headers, header::EXPECT).is_some_and(|value| value.eq_ignore_ascii_case("100-continue"))
}

/// Reads and drops up to `budget` more bytes of a refused body, briefly.
async fn drain(mut body: BodyStream, budget: u64) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut seen = 0u64;
        while let Some(Ok(chunk)) = body.next().await {
            seen += chunk.len() as u64;
            if seen > budget {
                break;
            }
        }
    })
    .await;
}

/// Reads a body of at most `limit` bytes, declared or chunked.
pub async fn read_limited(headers: &HeaderMap, mut body: BodyStream, limit: u64) -> Result<Bytes, ApiError> {
    if let Some(declared) = content_length(headers)
        && declared > limit
    {
        // A client waiting for `100 Continue` has sent nothing yet; refuse without inviting it.
        if declared <= DRAIN_BYTES && !expects_continue(headers) {
            drain(body, DRAIN_BYTES).await;
        }
        return Err(ApiError::payload_too_large(limit));
    }
    let mut buffer = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|error| {
            tracing::debug!(%error, "could not read the request body");
            ApiError::new(licensing::ErrorCode::InvalidField, "the request body could not be read")
        })?;
        if (buffer.len() + chunk.len()) as u64 > limit {
            drain(body, DRAIN_BYTES).await;
            return Err(ApiError::payload_too_large(limit));
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

/// Reads a form body (at most 64 KiB) in whichever encoding it came.
pub async fn read_form(headers: &HeaderMap, body: BodyStream) -> Result<Form, ApiError> {
    let bytes = read_limited(headers, body, FORM_LIMIT).await?;
    Form::parse(header_text(headers, header::CONTENT_TYPE), bytes).await
}

// ---------------------------------------------------------------------------------------------
// download
// ---------------------------------------------------------------------------------------------

/// RFC 5987 `attr-char`s stay as they are in `filename*`.
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `attachment; filename="..."`, quoted safely. A non-ASCII name also gets an RFC 6266
/// `filename*` so clients that know it see the real name, and the others an ASCII stand-in.
pub fn content_disposition(filename: &str) -> HeaderValue {
    let clean: String = filename.chars().filter(|c| !c.is_control()).collect();
    let mut quoted = String::with_capacity(clean.len());
    for c in clean.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            c if c.is_ascii() => quoted.push(c),
            _ => quoted.push('_'),
        }
    }
    let mut value = format!("attachment; filename=\"{quoted}\"");
    if !clean.is_ascii() {
        value.push_str("; filename*=UTF-8''");
        value.extend(utf8_percent_encode(&clean, ATTR_CHAR));
    }
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// Streams the app's binary: the core's `info` decides the headers, its chunks the body.
pub async fn download(core: &CoreClient, request: v1::DownloadRequest) -> Result<Response, ApiError> {
    let mut client = core.client.clone();
    // No gRPC deadline: a large binary to a slow client may take longer than any unary call.
    let call = client.download(core.streaming_request(request));
    let mut stream =
        core.within_timeout(call).await.map_err(|status| ApiError::from_client_status(&status))?;
    let first = match tokio::time::timeout(core.timeout, stream.message()).await {
        Err(_) => return Err(ApiError::unavailable()),
        Ok(Err(status)) => return Err(ApiError::from_client_status(&status)),
        Ok(Ok(first)) => replies::required(first, "DownloadResponse.info")?,
    };
    let Some(download_response::Payload::Info(info)) = first.payload else {
        tracing::warn!("download stream did not start with its info");
        return Err(ApiError::internal());
    };

    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    tokio::spawn(forward_download(stream, info.size, core.timeout, tx));

    let mut response = warp::reply::stream(ReceiverStream::new(rx)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(info.size));
    headers.insert(header::CONTENT_DISPOSITION, content_disposition(&info.filename));
    if !first.response_token.is_empty() {
        set_token_header(&mut response, &first.response_token);
    }
    Ok(response)
}

/// Moves chunks from the core to the HTTP body. The bounded queue is the backpressure: the core
/// is read only as fast as the client takes the bytes. An error item makes hyper cut the
/// connection, so a broken transfer never looks complete.
async fn forward_download(
    mut stream: Streaming<DownloadResponse>,
    size: u64,
    idle: Duration,
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
) {
    let mut sent = 0u64;
    let failure = loop {
        let next = tokio::select! {
            // The client went away: dropping the stream cancels the call.
            () = tx.closed() => return,
            next = tokio::time::timeout(idle, stream.message()) => next,
        };
        match next {
            Err(_) => break "the core stalled",
            Ok(Err(status)) => {
                tracing::warn!(code = ?status.code(), "download failed midway");
                break "the core failed midway";
            }
            Ok(Ok(None)) if sent == size => return,
            Ok(Ok(None)) => break "the core ended the file early",
            Ok(Ok(Some(DownloadResponse {
                payload: Some(download_response::Payload::Chunk(chunk)),
                ..
            }))) => {
                sent += chunk.len() as u64;
                if sent > size {
                    break "the core sent more bytes than announced";
                }
                metrics::streamed(metrics::Stream::Download, chunk.len());
                if !chunk.is_empty() && tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                    return;
                }
            }
            Ok(Ok(Some(_))) => break "the core sent an unexpected message",
        }
    };
    tracing::warn!(failure, sent, size, "download aborted");
    let _ = tx.send(Err(io::Error::other(failure))).await;
}

// ---------------------------------------------------------------------------------------------
// upload_file
// ---------------------------------------------------------------------------------------------

fn missing_file() -> ApiError {
    ApiError::new(
        licensing::ErrorCode::MissingField,
        "missing field `file`: upload_file takes a multipart/form-data body with a part named `file`",
    )
}

/// Streams a multipart upload of at most `limit` bytes into the core's client-streaming
/// `UploadFile`, for the legacy API: the developer's credentials are fields of the form.
pub async fn upload(
    core: &CoreClient,
    limit: u64,
    headers: &HeaderMap,
    body: BodyStream,
    caller: &Caller,
) -> Result<Response, ApiError> {
    upload_file(core, limit, headers, body, |form: &Form| {
        Ok::<_, ApiError>(UploadStart {
            header: v1::UploadFileHeader::from_form(form, caller)?,
            authorization: None,
        })
    })
    .await?;
    Ok(replies::ok(&replies::success()))
}

/// How an upload opens, decided from the form fields that precede the file: the header message
/// (the file name is filled in from the file part), and the `authorization` metadata of a
/// caller who presents a bearer credential rather than fields.
pub struct UploadStart {
    pub header: v1::UploadFileHeader,
    pub authorization: Option<AsciiMetadataValue>,
}

/// Streams a multipart upload of at most `limit` bytes into the core's client-streaming
/// `UploadFile`, whichever face of the gateway received it. The fields before the part named
/// `file` (at most the form limit together) are handed to `start`, which may refuse the upload
/// before a byte of the file goes to the core.
pub async fn upload_file<E: From<ApiError>>(
    core: &CoreClient,
    limit: u64,
    headers: &HeaderMap,
    body: BodyStream,
    start: impl FnOnce(&Form) -> Result<UploadStart, E>,
) -> Result<v1::FileInfo, E> {
    if let Some(declared) = content_length(headers)
        && declared > limit
    {
        if declared - limit <= DRAIN_BYTES && !expects_continue(headers) {
            drain(body, declared).await;
        }
        return Err(ApiError::payload_too_large(limit).into());
    }
    let Some(boundary) = header_text(headers, header::CONTENT_TYPE).and_then(multipart_boundary) else {
        drain(body, DRAIN_BYTES).await;
        return Err(missing_file().into());
    };
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new().whole_stream(limit).per_field(FORM_LIMIT).for_field("file", limit),
    );
    let mut multipart = multer::Multipart::with_constraints(body, boundary, constraints);

    // The credentials come before the file; together they stay within the form limit.
    let mut form = Form::default();
    let mut form_bytes = 0u64;
    let file = loop {
        let Some(field) = multipart.next_field().await.map_err(multipart_error)? else {
            return Err(missing_file().into());
        };
        if field.name() == Some("file") {
            break field;
        }
        let name = field.name().map(str::to_owned);
        let value = field.bytes().await.map_err(multipart_error)?;
        form_bytes += value.len() as u64;
        if form_bytes > FORM_LIMIT {
            return Err(ApiError::payload_too_large(FORM_LIMIT).into());
        }
        if let Some(name) = name {
            form.insert(name, value);
        }
    };
    let UploadStart { mut header, authorization } = match start(&form) {
        Ok(opened) => opened,
        Err(refused) => {
            // Refused before a byte went to the core: read on briefly so the client, still
            // sending, is listening when the answer goes out.
            let _ = tokio::time::timeout(DRAIN_TIME, drain_field(file)).await;
            return Err(refused);
        }
    };
    header.filename = file.file_name().unwrap_or_default().to_owned();

    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let opening = UploadFileRequest { payload: Some(upload_file_request::Payload::Header(header)) };
    if tx.send(opening).await.is_err() {
        return Err(ApiError::internal().into());
    }
    let mut client = core.developer.clone();
    let mut request = core.streaming_request(ReceiverStream::new(rx));
    if let Some(authorization) = authorization {
        request.metadata_mut().insert("authorization", authorization);
    }
    let call = client.upload_file(request);
    let _in_flight = metrics::CoreCall::start();
    let pump = pump_upload(file, tx);
    tokio::pin!(call, pump);

    let answer = tokio::select! {
        pumped = &mut pump => {
            // On failure, returning drops the call mid-stream: the core sees a cancelled upload,
            // never a short file that looks complete.
            pumped?;
            core.answer_within_timeout(call).await
        }
        answer = &mut call => {
            // The core answered before the end of the file (bad credentials, too large):
            // read on briefly so the client is listening when the answer goes out.
            let _ = tokio::time::timeout(DRAIN_TIME, &mut pump).await;
            answer.map(tonic::Response::into_inner).inspect_err(|status| metrics::core_failed(status.code()))
        }
    };
    Ok(answer.map_err(|status| ApiError::from_status(&status))?)
}

/// Reads and drops up to [`DRAIN_BYTES`] of a part nobody will use.
async fn drain_field(mut field: multer::Field<'static>) {
    let mut seen = 0u64;
    while let Ok(Some(chunk)) = field.chunk().await {
        seen += chunk.len() as u64;
        if seen > DRAIN_BYTES {
            break;
        }
    }
}

/// Copies the `file` part into the gRPC stream. Once the core stops listening, the rest of the
/// part is read and dropped.
async fn pump_upload(
    mut file: multer::Field<'static>,
    tx: mpsc::Sender<UploadFileRequest>,
) -> Result<u64, ApiError> {
    let mut total = 0u64;
    let mut open = true;
    while let Some(mut chunk) = file.chunk().await.map_err(multipart_error)? {
        total += chunk.len() as u64;
        metrics::streamed(metrics::Stream::Upload, chunk.len());
        while open && !chunk.is_empty() {
            let piece = chunk.split_to(chunk.len().min(CHUNK_BYTES));
            let message =
                UploadFileRequest { payload: Some(upload_file_request::Payload::Chunk(piece.to_vec())) };
            open = tx.send(message).await.is_ok();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use futures_util::stream;

    use super::*;

    #[test]
    fn filenames_are_quoted_safely() {
        let cases = [
            ("app.exe", r#"attachment; filename="app.exe""#),
            (r#"my "app".exe"#, r#"attachment; filename="my \"app\".exe""#),
            (r"back\slash.bin", r#"attachment; filename="back\\slash.bin""#),
            ("evil\r\nSet-Cookie: x=1.bin", r#"attachment; filename="evilSet-Cookie: x=1.bin""#),
            ("tab\tdel\u{7f}.bin", r#"attachment; filename="tabdel.bin""#),
            ("", r#"attachment; filename="""#),
            ("café.exe", r#"attachment; filename="caf_.exe"; filename*=UTF-8''caf%C3%A9.exe"#),
        ];
        for (name, expected) in cases {
            assert_eq!(content_disposition(name), expected, "{name:?}");
        }
    }

    fn body(chunks: &[&'static [u8]]) -> BodyStream {
        let chunks: Vec<_> = chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        stream::iter(chunks).boxed()
    }

    #[tokio::test]
    async fn limited_body_by_length_and_by_chunks() {
        let mut headers = HeaderMap::new();
        assert_eq!(read_limited(&headers, body(&[b"ab", b"cd"]), 4).await.unwrap(), "abcd");
        let error = read_limited(&headers, body(&[b"ab", b"cd", b"e"]), 4).await.unwrap_err();
        assert_eq!(error.code, licensing::ErrorCode::PayloadTooLarge);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(5));
        let error = read_limited(&headers, body(&[b"a"]), 4).await.unwrap_err();
        assert_eq!(error.code, licensing::ErrorCode::PayloadTooLarge);
    }
}
