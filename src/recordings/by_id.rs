//! Finding a call's MixMonitor files by name when Asterisk can no longer say them: a call
//! taken over after a restart may hang up before its channels' `MIXMONITOR_FILENAME` could be
//! read. File names that carry the channel's uniqueid (FreePBX's
//! `…-20261121-052233-1795238553.249.wav`, or any dialplan using `${UNIQUEID}`) still name
//! the call; other naming schemes find nothing here.

use std::path::{Path, PathBuf};

/// How deep below a recording directory files are looked for (FreePBX: `YYYY/MM/DD/`).
const DEPTH: usize = 4;
/// The most directory entries one search reads (a spool of years holds a few hundred thousand).
const MOST_ENTRIES: usize = 500_000;

/// The files under `dirs` whose names carry one of `ids` as a whole token (not as the start
/// of a longer id), oldest first.
pub(crate) fn files_naming(dirs: &[PathBuf], ids: &[String]) -> Vec<String> {
    let ids: Vec<&str> = ids.iter().map(String::as_str).filter(|id| !id.is_empty()).collect();
    if ids.is_empty() {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut budget = MOST_ENTRIES;
    for dir in dirs {
        walk(dir, DEPTH, &ids, &mut found, &mut budget);
    }
    found.sort();
    found.dedup();
    found.sort_by_key(|(modified, _)| *modified);
    found.into_iter().map(|(_, path)| path.display().to_string()).collect()
}

fn walk(dir: &Path, depth: usize, ids: &[&str], found: &mut Vec<(std::time::SystemTime, PathBuf)>, budget: &mut usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let Ok(kind) = entry.file_type() else { continue };
        let path = entry.path();
        if kind.is_dir() {
            if depth > 0 {
                walk(&path, depth - 1, ids, found, budget);
            }
        } else if kind.is_file() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if ids.iter().any(|id| names_id(&name, id)) {
                let modified = entry.metadata().and_then(|meta| meta.modified()).unwrap_or(std::time::UNIX_EPOCH);
                found.push((modified, path));
            }
        }
    }
}

/// Whether `id` (e.g. `1795238553.25`) stands in `name` on its own: not followed by a digit
/// (`…553.252`) nor preceded by one or by a dot.
fn names_id(name: &str, id: &str) -> bool {
    name.match_indices(id).any(|(at, _)| {
        let before = name[..at].chars().next_back();
        let after = name[at + id.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit() || c == '.') && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_found_by_its_uniqueid_as_a_whole_token() {
        let spool = tempfile::tempdir().expect("tempdir");
        let day = spool.path().join("2026/11/21");
        std::fs::create_dir_all(&day).expect("mkdir");
        for name in [
            "out-84954854058-103-20261121-052234-1795238553.252.wav",
            "q-500-89035429382-20261121-052233-1795238553.25.wav",
            "in-74951234567-79161234567-20261121-045816-11795238553.252.wav",
            "unrelated.wav",
        ] {
            std::fs::write(day.join(name), b"audio").expect("write");
        }
        let found = files_naming(&[spool.path().to_path_buf()], &["1795238553.252".into()]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].ends_with("-1795238553.252.wav"));
        let found = files_naming(&[spool.path().to_path_buf()], &["1795238553.25".into()]);
        assert_eq!(found.len(), 1, "the longer id is another call: {found:?}");
        assert!(files_naming(&[spool.path().to_path_buf()], &["1795238553.2".into()]).is_empty());
        assert!(files_naming(&[spool.path().join("missing")], &["1795238553.252".into()]).is_empty());
    }
}
