//! Confines recording paths to `recordings.dirs`: a crafted `MIXMONITOR_FILENAME` must not
//! make deskhook upload `/etc/shadow`, directly, through `..`, or through a symlink.

use std::path::{Component, Path, PathBuf};

/// Why a recording is not uploaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum PickupError {
    #[error("recording path {0:?} is not absolute; refused")]
    NotAbsolute(String),
    #[error("recording {path:?} is outside recordings.dirs ({allowed}); refused")]
    OutsideDirs { path: String, allowed: String },
    #[error("recording {0:?} does not exist")]
    Missing(String),
    #[error("recording {0:?} is empty")]
    Empty(String),
    #[error("recording {path:?} was still being written after {waited_secs} s; gave up")]
    Incomplete { path: String, waited_secs: u64 },
    #[error("recording {path:?}: {message}")]
    Io { path: String, message: String },
}

/// The directories recordings may come from, resolved to their real paths.
#[derive(Debug, Clone)]
pub(crate) struct AllowedDirs {
    configured: Vec<PathBuf>,
}

impl AllowedDirs {
    pub(crate) fn new(dirs: &[PathBuf]) -> Self {
        Self { configured: dirs.to_vec() }
    }

    fn describe(&self) -> String {
        self.configured.iter().map(|dir| dir.display().to_string()).collect::<Vec<_>>().join(", ")
    }

    /// The real path of `raw` if it is a file inside one of the directories (after resolving
    /// every symlink on the way); an error saying why not otherwise.
    pub(crate) fn confine(&self, raw: &str) -> Result<PathBuf, PickupError> {
        let path = Path::new(raw);
        if !path.is_absolute() {
            return Err(PickupError::NotAbsolute(raw.to_string()));
        }
        let outside = || PickupError::OutsideDirs { path: raw.to_string(), allowed: self.describe() };
        // Refuse `..` outright: it has no business in a MixMonitor file name.
        if path.components().any(|component| matches!(component, Component::ParentDir)) {
            return Err(outside());
        }
        let real = match std::fs::canonicalize(path) {
            Ok(real) => real,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                // Not there (yet): check the lexical path, so the caller can wait for it.
                return if self.lexically_inside(path) {
                    Err(PickupError::Missing(raw.to_string()))
                } else {
                    Err(outside())
                };
            }
            Err(error) => return Err(PickupError::Io { path: raw.to_string(), message: error.to_string() }),
        };
        let inside = self
            .configured
            .iter()
            .filter_map(|dir| std::fs::canonicalize(dir).ok())
            .any(|dir| real.starts_with(&dir) && real != dir);
        if !inside {
            return Err(outside());
        }
        match std::fs::metadata(&real) {
            Ok(meta) if meta.is_file() => Ok(real),
            Ok(_) => Err(outside()),
            Err(error) => Err(PickupError::Io { path: raw.to_string(), message: error.to_string() }),
        }
    }

    fn lexically_inside(&self, path: &Path) -> bool {
        self.configured
            .iter()
            .any(|dir| path.starts_with(dir) || std::fs::canonicalize(dir).is_ok_and(|real| path.starts_with(real)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_inside_the_dirs_are_allowed() {
        let root = tempfile::tempdir().expect("tempdir");
        let spool = root.path().join("monitor");
        std::fs::create_dir_all(spool.join("2026/11/21")).expect("mkdir");
        let inside = spool.join("2026/11/21/in-101.wav");
        std::fs::write(&inside, b"RIFF").expect("write");
        let secret = root.path().join("shadow");
        std::fs::write(&secret, b"root:x").expect("write");
        let allowed = AllowedDirs::new(std::slice::from_ref(&spool));

        let confined = allowed.confine(inside.to_str().expect("utf-8")).expect("inside is fine");
        assert_eq!(confined, std::fs::canonicalize(&inside).expect("real"));

        let outside = allowed.confine(secret.to_str().expect("utf-8"));
        assert!(matches!(outside, Err(PickupError::OutsideDirs { .. })), "{outside:?}");

        let traversal = format!("{}/2026/../../shadow", spool.display());
        assert!(matches!(allowed.confine(&traversal), Err(PickupError::OutsideDirs { .. })));

        assert!(matches!(allowed.confine("relative/in-101.wav"), Err(PickupError::NotAbsolute(_))));
        assert!(matches!(allowed.confine("/etc/shadow"), Err(PickupError::OutsideDirs { .. })));
        // The directory itself is not a recording.
        assert!(allowed.confine(spool.to_str().expect("utf-8")).is_err());
    }

    #[test]
    fn a_symlink_escaping_the_dirs_is_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        let spool = root.path().join("monitor");
        std::fs::create_dir_all(&spool).expect("mkdir");
        let secret = root.path().join("secret.txt");
        std::fs::write(&secret, b"token").expect("write");
        let link = spool.join("in-101.wav");
        std::os::unix::fs::symlink(&secret, &link).expect("symlink");
        let allowed = AllowedDirs::new(std::slice::from_ref(&spool));
        let refused = allowed.confine(link.to_str().expect("utf-8"));
        assert!(matches!(refused, Err(PickupError::OutsideDirs { .. })), "{refused:?}");

        // A symlinked directory pointing outside is refused the same way.
        let outside_dir = root.path().join("elsewhere");
        std::fs::create_dir_all(&outside_dir).expect("mkdir");
        std::fs::write(outside_dir.join("x.wav"), b"RIFF").expect("write");
        std::os::unix::fs::symlink(&outside_dir, spool.join("2026")).expect("symlink");
        let via_dir = format!("{}/2026/x.wav", spool.display());
        assert!(matches!(allowed.confine(&via_dir), Err(PickupError::OutsideDirs { .. })));
    }

    #[test]
    fn a_file_not_written_yet_is_missing_only_inside_the_dirs() {
        let root = tempfile::tempdir().expect("tempdir");
        let allowed = AllowedDirs::new(&[root.path().to_path_buf()]);
        let later = format!("{}/later.wav", root.path().display());
        assert_eq!(allowed.confine(&later), Err(PickupError::Missing(later.clone())));
        assert!(matches!(allowed.confine("/nonexistent/x.wav"), Err(PickupError::OutsideDirs { .. })));
    }
}
