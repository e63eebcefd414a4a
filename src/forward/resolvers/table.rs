//! The `table` resolver: a CSV file `phone,extension[,name]` kept in memory and reloaded when
//! the file changes (notify, watching the directory so editors' save-by-rename is seen too).
//! A file that does not parse keeps the last good table and logs the line that is wrong.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

use notify::Watcher;

use crate::forward::answer::{is_valid_extension, Answer};
use crate::forward::cache::AnswerCache;
use crate::numbers::PhoneNormalizer;

/// Quiet time after a change before the file is read: editors write in several steps.
const SETTLE: Duration = Duration::from_millis(100);
/// How often the file's mtime is checked when the OS cannot watch it.
const POLL_EVERY: Duration = Duration::from_secs(2);

/// What is wrong with a table file, naming the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub(crate) struct TableError {
    pub line: u64,
    pub message: String,
}

type Entries = HashMap<String, Answer>;

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    phones: PhoneNormalizer,
    entries: RwLock<Arc<Entries>>,
    cache: Arc<AnswerCache>,
}

#[derive(Debug)]
pub(crate) struct TableResolver {
    shared: Arc<Shared>,
    // Dropping the resolver drops the watcher, which ends the reload thread.
    _watcher: Option<notify::RecommendedWatcher>,
}

impl TableResolver {
    /// Loads `path` now (an unreadable or broken file starts an empty table, logged) and
    /// keeps watching it.
    pub(crate) fn open(path: &Path, phones: PhoneNormalizer, cache: Arc<AnswerCache>) -> Self {
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            phones,
            entries: RwLock::new(Arc::new(Entries::new())),
            cache,
        });
        shared.reload();
        let watcher = watch(&shared);
        Self { shared, _watcher: watcher }
    }

    pub(crate) fn lookup(&self, phone: &str) -> Option<Answer> {
        let entries = Arc::clone(&self.shared.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner()));
        entries.get(phone).cloned()
    }
}

impl Shared {
    /// Reads the file; installs it when it parses, otherwise keeps the current table.
    fn reload(&self) {
        let shown = self.path.display();
        let text = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(
                    "forward table {shown}: cannot read it ({error}); keeping the previous table, fix the path or permissions"
                );
                return;
            }
        };
        match parse_table(&text, &self.phones) {
            // Nothing good in it at all (a wrong separator, a wrong file): the previous table stays.
            Ok(ParsedTable { entries, skipped }) if entries.is_empty() && !skipped.is_empty() => {
                crate::metrics::counter!(
                    "deskhook_forward_table_rejected_total",
                    "Forward table files rejected as broken (the previous table stays).",
                )
                .inc();
                let kept = self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner()).len();
                tracing::warn!(
                    "forward table {shown}: no usable row ({}); keeping the previous table ({kept} phones) until the \
                     file is fixed",
                    skipped[0]
                );
            }
            Ok(ParsedTable { entries, skipped }) => {
                for problem in skipped.iter().take(5) {
                    tracing::warn!("forward table {shown}: {problem}; that row is skipped, the others are used");
                }
                if skipped.len() > 5 {
                    tracing::warn!("forward table {shown}: {} more rows skipped", skipped.len() - 5);
                }
                let count = entries.len();
                *self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(entries);
                self.cache.clear();
                crate::metrics::counter!("deskhook_forward_table_loads_total", "Forward table files loaded.").inc();
                tracing::info!("forward table {shown}: loaded {count} phones");
            }
            Err(error) => {
                crate::metrics::counter!(
                    "deskhook_forward_table_rejected_total",
                    "Forward table files rejected as broken (the previous table stays).",
                )
                .inc();
                let kept = self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner()).len();
                tracing::warn!(
                    "forward table {shown}: {error}; keeping the previous table ({kept} phones) until the file is fixed"
                );
            }
        }
    }
}

/// A table file read: the good rows, and each bad one with why.
#[derive(Debug, Default)]
pub(crate) struct ParsedTable {
    pub entries: Entries,
    pub skipped: Vec<TableError>,
}

/// Parses `phone,extension[,name]` lines. A first line without digits in its phone column
/// is a header; `#` starts a comment line; later rows win over earlier ones for the same phone.
/// A bad row is skipped and named (the good ones still count); `Err` only when the file as a
/// whole cannot be read (not UTF-8, not CSV).
pub(crate) fn parse_table(bytes: &[u8], phones: &PhoneNormalizer) -> Result<ParsedTable, TableError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let mut table = ParsedTable::default();
    let mut record = csv::StringRecord::new();
    let mut first = true;
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => {
                let line = error.position().map_or(line, |position| line_of(bytes, position.byte()));
                let message = match error.kind() {
                    csv::ErrorKind::Utf8 { .. } => "is not UTF-8 text; save the file as UTF-8".to_string(),
                    _ => format!("cannot be read as CSV ({error})"),
                };
                return Err(TableError { line, message });
            }
        }
        // csv counts no comment lines: the line is counted from the record's byte offset.
        let line = record.position().map_or(line, |position| line_of(bytes, position.byte()));
        let was_first = std::mem::replace(&mut first, false);
        if record.iter().all(str::is_empty) {
            continue;
        }
        let phone_field = record.get(0).unwrap_or_default();
        if was_first && !phone_field.bytes().any(|b| b.is_ascii_digit()) {
            continue;
        }
        match row(&record, phones) {
            Ok((phone, answer)) => {
                table.entries.insert(phone, answer);
            }
            Err(message) => table.skipped.push(TableError { line, message }),
        }
    }
    Ok(table)
}

/// The 1-based line of the record starting at byte `offset` of `bytes`. csv counts no
/// comment lines and may place a record at the comment (or blank line) before it: those are
/// stepped over.
fn line_of(bytes: &[u8], offset: u64) -> u64 {
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
    let mut line = bytes[..start].iter().filter(|byte| **byte == b'\n').count() as u64 + 1;
    let mut at = start;
    while at < bytes.len() {
        let end = bytes[at..].iter().position(|byte| *byte == b'\n').map_or(bytes.len(), |i| at + i);
        let text = String::from_utf8_lossy(&bytes[at..end]);
        let text = text.trim();
        if !text.is_empty() && !text.starts_with('#') {
            break;
        }
        line += 1;
        at = end + 1;
    }
    line
}

/// One row as (phone, answer), or why not.
fn row(record: &csv::StringRecord, phones: &PhoneNormalizer) -> Result<(String, Answer), String> {
    if record.len() == 1 && record.get(0).is_some_and(|field| field.contains(';')) {
        return Err(
            "is separated by ';', expected commas: phone,extension,name (spreadsheets in some locales save CSV with \
             ';' — choose comma-separated, or replace ';' with ',')"
                .into(),
        );
    }
    if !(2..=3).contains(&record.len()) {
        return Err(format!("has {} columns, expected phone,extension[,name]", record.len()));
    }
    let phone_field = record.get(0).unwrap_or_default();
    let phone = phones.normalise(phone_field).map_err(|error| format!("{error} (found {phone_field:?})"))?;
    let extension = record.get(1).unwrap_or_default();
    if !is_valid_extension(extension) {
        return Err(format!("{extension:?} is not an extension, expected digits such as 101"));
    }
    let name = record.get(2).unwrap_or_default();
    Answer::new(extension, name, "table").map(|answer| (phone, answer)).ok_or_else(|| "has no usable extension".into())
}

/// Starts watching the table's directory; falls back to polling the mtime when the OS refuses.
fn watch(shared: &Arc<Shared>) -> Option<notify::RecommendedWatcher> {
    // Change notices, drained in one go by the reloader (a burst is one reload).
    let (changed, changes) = mpsc::channel::<()>();
    let file_name = shared.path.file_name().map(|name| name.to_os_string());
    let watched_dir = match shared.path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        if event.paths.iter().any(|path| path.file_name().map(|name| name.to_os_string()) == file_name) {
            let _ = changed.send(());
        }
    })
    .and_then(|mut watcher| {
        watcher.watch(&watched_dir, notify::RecursiveMode::NonRecursive)?;
        Ok(watcher)
    });
    let weak = Arc::downgrade(shared);
    match watcher {
        Ok(watcher) => {
            let spawned = std::thread::Builder::new()
                .name("forward-table".into())
                .spawn(move || reload_on_change(&weak, &changes));
            if let Err(error) = spawned {
                tracing::warn!("forward table: cannot start its reload thread ({error}); edits need a restart");
            }
            Some(watcher)
        }
        Err(error) => {
            tracing::warn!(
                "forward table {}: cannot watch {} ({error}); checking the file every {}s instead",
                shared.path.display(),
                watched_dir.display(),
                POLL_EVERY.as_secs()
            );
            let spawned = std::thread::Builder::new().name("forward-table-poll".into()).spawn(move || poll(&weak));
            if let Err(error) = spawned {
                tracing::warn!("forward table: cannot start its poll thread ({error}); edits need a restart");
            }
            None
        }
    }
}

fn reload_on_change(shared: &Weak<Shared>, changes: &mpsc::Receiver<()>) {
    while changes.recv().is_ok() {
        // Wait until the writer is done: no further change for SETTLE.
        loop {
            match changes.recv_timeout(SETTLE) {
                Ok(()) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        let Some(shared) = shared.upgrade() else { return };
        shared.reload();
    }
}

fn poll(shared: &Weak<Shared>) {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|meta| meta.modified()).ok();
    let mut seen: Option<SystemTime> = shared.upgrade().and_then(|shared| modified(&shared.path));
    loop {
        std::thread::sleep(POLL_EVERY);
        let Some(shared) = shared.upgrade() else { return };
        let now = modified(&shared.path);
        if now != seen {
            seen = now;
            shared.reload();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rows_headers_comments_and_quoted_names() {
        let text = "phone,extension,name\n# managers\n+7 916 123-45-67, 101 ,\"Petrov, Ivan\"\n\n89161112233,102\n";
        let entries = parse_table(text.as_bytes(), &PhoneNormalizer::default()).expect("valid table").entries;
        assert_eq!(entries.len(), 2);
        let petrov = &entries["79161234567"];
        assert_eq!((petrov.number.as_str(), petrov.name.as_str()), ("101", "Petrov, Ivan"));
        assert_eq!(entries["79161112233"].name, "");
    }

    #[test]
    fn a_broken_row_is_named_by_its_line_and_the_good_ones_are_kept() {
        let phones = PhoneNormalizer::default();
        let skipped = |text: &[u8]| {
            let table = parse_table(text, &phones).expect("readable");
            (table.entries.len(), table.skipped.iter().map(|e| (e.line, e.message.clone())).collect::<Vec<_>>())
        };
        let (kept, bad) = skipped(b"79161234567,101\n79161234568\n# a comment\nnot-a-phone,102\n79161234569,10 1\n");
        assert_eq!(kept, 1);
        assert_eq!(bad.iter().map(|(line, _)| *line).collect::<Vec<_>>(), [2, 4, 5], "{bad:?}");
        assert!(bad[0].1.contains("has 1 columns") && bad[2].1.contains("not an extension"), "{bad:?}");
        let (kept, bad) = skipped("phone;extension;name\n79161234567;101;Petrov\n".as_bytes());
        assert_eq!(kept, 0);
        assert_eq!(bad[0].0, 2, "the header is a header, whatever its separator");
        assert!(bad[0].1.contains("separated by ';'"), "{bad:?}");
        let error = parse_table(b"79161234567,101,\xff\xfe\n", &phones).expect_err("not utf-8");
        assert!(error.message.contains("UTF-8"), "{error}");
    }
}
