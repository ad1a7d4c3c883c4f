//! The app binary: uploaded and downloaded in chunks, so no process ever holds a whole file.

use sea_orm::DatabaseConnection;
use sha2::{Digest, Sha256};

use super::{CHUNK_SIZE, Core, FileView, ScopeInput};
use crate::{
    domain::{CoreError, parse_filename, secrets::hex},
    storage::{self, entities::app_file, queries},
};

/// An upload in progress. Bytes are stored as they arrive; the file becomes the one `download`
/// serves only when `finish` succeeds. Abandoned any other way (an error, `abort`, or the call
/// dropped because the client went away), what was stored is removed.
pub struct Upload {
    /// Set once the rows no longer need removing: finished, or already removed.
    settled: bool,
    db: DatabaseConnection,
    app_id: i64,
    file_id: i64,
    buffer: Vec<u8>,
    next_seq: i32,
    size: u64,
    max: u64,
    hash: Sha256,
}

impl Core {
    /// Checks the caller and the file name, and opens an upload.
    pub async fn begin_upload(&self, scope: ScopeInput, filename: &str) -> Result<Upload, CoreError> {
        let filename = parse_filename(filename)?;
        let app = self.authorize_input(scope).await?;
        let file = queries::create_file(self.db.writer(), app.id, filename).await?;
        Ok(Upload {
            settled: false,
            db: self.db.writer().clone(),
            app_id: app.id,
            file_id: file.id,
            buffer: Vec::with_capacity(CHUNK_SIZE),
            next_seq: 0,
            size: 0,
            max: self.settings.max_upload_bytes,
            hash: Sha256::new(),
        })
    }
}

impl Upload {
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), CoreError> {
        self.size += data.len() as u64;
        if self.size > self.max {
            return Err(CoreError::PayloadTooLarge(format!(
                "the file is larger than the maximum of {} bytes",
                self.max
            )));
        }
        self.hash.update(data);
        while !data.is_empty() {
            let take = (CHUNK_SIZE - self.buffer.len()).min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buffer.len() == CHUNK_SIZE {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), CoreError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_SIZE));
        queries::insert_chunk(&self.db, self.file_id, self.next_seq, chunk).await?;
        self.next_seq += 1;
        Ok(())
    }

    /// Stores the rest and makes this file the app's binary, replacing any earlier one.
    pub async fn finish(mut self) -> Result<FileView, CoreError> {
        self.flush().await?;
        let sha256 = hex(&self.hash.clone().finalize());
        let size = i64::try_from(self.size).map_err(CoreError::internal)?;
        let txn = storage::begin(&self.db).await?;
        let outcome = queries::finish_file(&txn, self.app_id, self.file_id, size, sha256).await;
        let done = storage::settle(txn, outcome).await?;
        self.settled = true;
        tracing::info!(app_id = self.app_id, size, "binary uploaded");
        Ok(FileView::from(&done))
    }

    /// Removes what was stored of an upload that will not finish.
    pub async fn abort(mut self) {
        self.settled = true;
        remove_partial(&self.db, self.file_id).await;
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        // Dropped mid-way (the client hung up and the call was cancelled): clean up in the
        // background, since Drop cannot wait.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (db, file_id) = (self.db.clone(), self.file_id);
            runtime.spawn(async move { remove_partial(&db, file_id).await });
        }
    }
}

async fn remove_partial(db: &DatabaseConnection, file_id: i64) {
    if let Err(e) = queries::remove_file(db, file_id).await {
        tracing::warn!(error = %e, file_id, "cannot remove an abandoned upload");
    }
}

/// An opened binary, read a chunk at a time.
pub struct Download {
    db: DatabaseConnection,
    file_id: i64,
    pub info: FileView,
    next_seq: i32,
    sent: u64,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download").field("info", &self.info).finish_non_exhaustive()
    }
}

impl Download {
    pub(super) fn new(db: DatabaseConnection, file: &app_file::Model) -> Self {
        Download { db, file_id: file.id, info: FileView::from(file), next_seq: 0, sent: 0 }
    }

    /// The next chunk, or `None` once every byte was read.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, CoreError> {
        if self.sent >= self.info.size {
            return Ok(None);
        }
        let chunk = queries::chunk(&self.db, self.file_id, self.next_seq)
            .await?
            // A newer upload replaced this file mid-download.
            .ok_or(CoreError::Unavailable("the file was replaced during the download".into()))?;
        self.next_seq += 1;
        self.sent += chunk.len() as u64;
        Ok(Some(chunk))
    }
}
