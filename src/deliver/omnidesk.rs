//! The wire encodings of requests: urlencoded forms (the Omnidesk/Deskie webhook, SPEC §3) and
//! `multipart/form-data` recording uploads streamed from disk (the Omnidesk form, or the `json`
//! sink's summary + record). No retry logic, no storage.

use std::path::Path;

use reqwest::multipart::{Form, Part};

use super::file_body::{FileBody, UploadError};

/// The `Content-Type` of an event POST.
pub(crate) const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
/// The `Content-Type` of a JSON POST (and of a summary part).
pub(super) const JSON_CONTENT_TYPE: &str = "application/json";

/// Encodes form fields in the given order: UTF-8 percent-encoding, space as `+`, `+` as `%2B`.
pub(crate) fn form_body(fields: &[(&str, String)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

/// The upload form: parts `status=record`, `unique_id`, and `record` = the file, whose bytes
/// are read from disk while the request is sent (never held in memory whole).
pub(super) async fn upload_form(unique_id: &str, path: &Path) -> Result<Form, UploadError> {
    let record = record_part(path).await?;
    Ok(Form::new()
        .text("status", super::request::UPLOAD_STATUS)
        .text("unique_id", unique_id.to_string())
        .part("record", record))
}

/// The file as a streamed `record` part, named by its base name.
async fn record_part(path: &Path) -> Result<Part, UploadError> {
    let body = FileBody::open(path).await?;
    let length = body.length;
    let file_name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_else(|| "record".into());
    Part::stream_with_length(reqwest::Body::wrap_stream(body.into_stream()), length)
        .file_name(file_name)
        .mime_str(audio_content_type(path))
        .map_err(|_| UploadError::NotAFile { path: path.display().to_string() })
}

/// The `json` sink's upload form: part `summary` (the call summary, JSON) and part `record`
/// (the file, streamed from disk).
pub(super) async fn summary_upload_form(summary: &str, path: &Path) -> Result<Form, UploadError> {
    let record = record_part(path).await?;
    let summary = Part::text(summary.to_string())
        .mime_str(JSON_CONTENT_TYPE)
        .map_err(|_| UploadError::NotAFile { path: path.display().to_string() })?;
    Ok(Form::new().part("summary", summary).part("record", record))
}

/// The part's `Content-Type`, from the extensions Asterisk records to.
fn audio_content_type(path: &Path) -> &'static str {
    let extension = path.extension().map(|ext| ext.to_string_lossy().to_ascii_lowercase());
    match extension.as_deref() {
        Some("wav") | Some("wav49") => "audio/wav",
        Some("mp3") => "audio/mpeg",
        Some("ogg") | Some("oga") => "audio/ogg",
        Some("gsm") => "audio/gsm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_body_encodes_plus_space_and_cyrillic() {
        let body = form_body(&[
            ("from_user", "+7 916".to_string()),
            ("status", "call to queue поддержка".to_string()),
            ("to_user", "101,102".to_string()),
        ]);
        assert_eq!(
            body,
            "from_user=%2B7+916&status=call+to+queue+%D0%BF%D0%BE%D0%B4%D0%B4%D0%B5%D1%80%D0%B6%D0%BA%D0%B0&to_user=101%2C102"
        );
    }

    #[test]
    fn audio_types_follow_the_extension() {
        assert_eq!(audio_content_type(Path::new("/x/in-101.WAV")), "audio/wav");
        assert_eq!(audio_content_type(Path::new("/x/in-101.mp3")), "audio/mpeg");
        assert_eq!(audio_content_type(Path::new("/x/in-101")), "application/octet-stream");
    }

    #[tokio::test]
    async fn missing_and_empty_files_are_refused_before_sending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("gone.wav");
        assert!(matches!(upload_form("1.1", &missing).await, Err(UploadError::Missing { .. })));
        let empty = dir.path().join("empty.wav");
        std::fs::write(&empty, b"").expect("write");
        let error = upload_form("1.1", &empty).await.expect_err("empty file refused");
        assert!(error.to_string().contains("empty.wav is empty"), "{error}");
        assert!(matches!(upload_form("1.1", dir.path()).await, Err(UploadError::NotAFile { .. })));
    }
}
