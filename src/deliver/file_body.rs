//! A recording file as a streamed request body: one blocking task opens it, checks it and reads
//! it a few chunks ahead of the request, so an upload costs one hop to the blocking pool rather
//! than one per file operation and chunk (most recordings fit the read-ahead whole).

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::{mpsc, oneshot};

/// Size of the chunks a recording is read and sent in.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks read ahead of the request at most (memory per upload in flight: 256 KB).
const READ_AHEAD_CHUNKS: usize = 4;

/// Why a recording cannot be sent at all (as opposed to a failed try).
#[derive(Debug, thiserror::Error)]
pub(crate) enum UploadError {
    #[error("recording file {path} is missing ({source}); it cannot be uploaded")]
    Missing { path: String, source: std::io::Error },
    #[error("recording file {path} is empty; it cannot be uploaded")]
    Empty { path: String },
    #[error("recording {path} is not a regular file; it cannot be uploaded")]
    NotAFile { path: String },
}

/// An opened, checked file and its bytes as they are read.
pub(crate) struct FileBody {
    /// The file's length when it was opened: exactly this many bytes are streamed.
    pub length: u64,
    pub chunks: mpsc::Receiver<std::io::Result<Bytes>>,
}

impl FileBody {
    /// Opens `path` and starts reading it ahead. The reader stops when the body is dropped (a
    /// request abandoned), and holds a blocking-pool thread while the request is slower than
    /// the disk.
    pub(crate) async fn open(path: &Path) -> Result<FileBody, UploadError> {
        let (opened_tx, opened_rx) = oneshot::channel();
        let (chunks_tx, chunks) = mpsc::channel(READ_AHEAD_CHUNKS);
        let owned: PathBuf = path.to_path_buf();
        tokio::task::spawn_blocking(move || read_ahead(&owned, opened_tx, &chunks_tx));
        let length = opened_rx.await.map_err(|_| UploadError::Missing {
            path: path.display().to_string(),
            source: std::io::Error::other("the file's reader stopped before opening it"),
        })??;
        Ok(FileBody { length, chunks })
    }

    /// The chunks as a stream for a request body.
    pub(crate) fn into_stream(self) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        futures_util::stream::unfold(self.chunks, |mut chunks| async move {
            chunks.recv().await.map(|chunk| (chunk, chunks))
        })
    }
}

fn read_ahead(
    path: &Path,
    opened: oneshot::Sender<Result<u64, UploadError>>,
    chunks: &mpsc::Sender<std::io::Result<Bytes>>,
) {
    let checked = std::fs::File::open(path).and_then(|file| Ok((file.metadata()?, file)));
    let (metadata, mut file) = match checked {
        Ok(opened) => opened,
        Err(error) => {
            let _ = opened.send(Err(UploadError::Missing { path: path.display().to_string(), source: error }));
            return;
        }
    };
    let refusal = if !metadata.is_file() {
        Some(UploadError::NotAFile { path: path.display().to_string() })
    } else if metadata.len() == 0 {
        Some(UploadError::Empty { path: path.display().to_string() })
    } else {
        None
    };
    if let Some(refusal) = refusal {
        let _ = opened.send(Err(refusal));
        return;
    }
    let length = metadata.len();
    if opened.send(Ok(length)).is_err() {
        return;
    }
    let mut left = length;
    while left > 0 {
        let mut chunk = vec![0u8; usize::try_from(left).unwrap_or(CHUNK_BYTES).min(CHUNK_BYTES)];
        let read = match file.read(&mut chunk) {
            Ok(0) => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the file shrank while it was sent ({left} of {length} bytes left)"),
            )),
            Ok(read) => Ok(read),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => Err(error),
        };
        let chunk = read.map(|read| {
            chunk.truncate(read);
            left -= read as u64;
            Bytes::from(chunk)
        });
        let failed = chunk.is_err();
        if chunks.blocking_send(chunk).is_err() || failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    async fn read_all(body: FileBody) -> std::io::Result<Vec<u8>> {
        let mut stream = std::pin::pin!(body.into_stream());
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk?);
        }
        Ok(bytes)
    }

    #[tokio::test]
    async fn a_file_larger_than_the_read_ahead_streams_byte_exact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("long.wav");
        let content: Vec<u8> = (0..(CHUNK_BYTES * READ_AHEAD_CHUNKS * 3 + 123)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).expect("write");
        let body = FileBody::open(&path).await.expect("opened");
        assert_eq!(body.length, content.len() as u64);
        assert_eq!(read_all(body).await.expect("read"), content);
    }

    #[tokio::test]
    async fn missing_empty_and_directory_paths_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(FileBody::open(&dir.path().join("gone.wav")).await, Err(UploadError::Missing { .. })));
        let empty = dir.path().join("empty.wav");
        std::fs::write(&empty, b"").expect("write");
        assert!(matches!(FileBody::open(&empty).await, Err(UploadError::Empty { .. })));
        assert!(matches!(FileBody::open(dir.path()).await, Err(UploadError::NotAFile { .. })));
    }

    #[tokio::test]
    async fn a_file_that_shrinks_while_sent_ends_the_body_with_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cut.wav");
        std::fs::write(&path, vec![7u8; CHUNK_BYTES * (READ_AHEAD_CHUNKS + 4)]).expect("write");
        let body = FileBody::open(&path).await.expect("opened");
        // The reader is held by the full read-ahead until the body is read; cut the file now.
        std::fs::OpenOptions::new().write(true).open(&path).expect("open").set_len(10).expect("truncate");
        let error = read_all(body).await.expect_err("a short file cannot fill its stated length");
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
