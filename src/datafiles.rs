//! Data directories and files only their owner may read, and the lock that keeps one process
//! per data directory.
//!
//! Frank's data holds password hashes, keys, the ledger and the counter's journal: directories
//! are 0700 and files 0600, whatever the umask. SQLite gives its `-wal` and `-shm` files the
//! mode of the database file, so a database created here through [`private_file`] first keeps
//! all three private.

use anyhow::{Context, bail};
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of every data directory Frank creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every data file Frank creates.
pub const FILE_MODE: u32 = 0o600;
/// The lock file in a locked data directory; it holds the locking process's pid.
pub const LOCK_FILE: &str = "lock";
/// Longest lock file read back, in bytes (a pid and a newline).
const LOCK_FILE_BYTES_MAX: u64 = 64;

/// Creates `dir` (and missing parents) and makes `dir` itself 0700, also when it existed.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
        .with_context(|| format!("making {} private (chmod 700)", dir.display()))
}

/// Creates `path` empty with mode 0600 if it does not exist (never truncates) and makes an
/// existing one 0600: call it before a database opens the file.
pub fn private_file(path: &Path) -> anyhow::Result<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    fs::set_permissions(path, Permissions::from_mode(FILE_MODE))
        .with_context(|| format!("making {} private (chmod 600)", path.display()))
}

/// Makes each existing file of `paths` 0600 (files of a data directory older than this rule);
/// missing ones are skipped.
pub fn tighten_files<'a>(paths: impl IntoIterator<Item = &'a Path>) -> anyhow::Result<()> {
    for path in paths {
        match fs::metadata(path) {
            Ok(meta) if meta.permissions().mode() & 0o777 != FILE_MODE => {
                fs::set_permissions(path, Permissions::from_mode(FILE_MODE))
                    .with_context(|| format!("making {} private (chmod 600)", path.display()))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    Ok(())
}

/// Replaces `path` with `bytes` atomically: a 0600 temporary file next to it, fsync'd, renamed
/// over it, and the directory fsync'd. A crash leaves the old file or the new one.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        fs::set_permissions(&tmp, Permissions::from_mode(FILE_MODE))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
        .with_context(|| format!("replacing {} with {}", path.display(), tmp.display()))?;
    File::open(&dir)?.sync_all()?;
    Ok(())
}

/// Overwrites the file at `path` in place with random bytes, then zeros (each pass synced),
/// and deletes it (the directory synced). On copy-on-write filesystems, SSDs and with snapshots
/// or backups older copies may survive: docs/DEPLOY.md says so; a key that ever lay in a file
/// is only as secret as every copy of it.
pub fn shred(path: &Path) -> anyhow::Result<()> {
    let len = usize::try_from(fs::metadata(path)?.len())
        .with_context(|| format!("{} is too large to overwrite", path.display()))?;
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {} to overwrite it", path.display()))?;
    let mut noise = vec![0u8; len];
    crate::clock::fill_from_os(&mut noise)
        .with_context(|| format!("reading random bytes to overwrite {}", path.display()))?;
    for pass in [noise, vec![0u8; len]] {
        f.seek(std::io::SeekFrom::Start(0))?;
        f.write_all(&pass)?;
        f.sync_all()?;
    }
    drop(f);
    fs::remove_file(path).with_context(|| format!("deleting {}", path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// An exclusive lock on a data directory, held until dropped (or the process ends, even by
/// SIGKILL: it is an `flock` on [`LOCK_FILE`], which holds the holder's pid for the message a
/// second process prints).
#[derive(Debug)]
pub struct DirLock {
    _file: nix::fcntl::Flock<File>,
    path: PathBuf,
}

impl DirLock {
    /// Locks `dir` for this process, or says which process holds it. `what` names the holder's
    /// role in the message (e.g. "frank vendor serve").
    pub fn acquire(dir: &Path, what: &str) -> anyhow::Result<DirLock> {
        use nix::fcntl::{Flock, FlockArg};
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let holder = read_pid(&mut file)
                    .map(|pid| format!("process {pid}"))
                    .unwrap_or_else(|| "another process".to_string());
                bail!(
                    "data directory {} is in use by {holder} (another {what}); stop it first, or use another data directory",
                    dir.display()
                );
            }
            Err((_, errno)) => {
                bail!("cannot lock {}: {errno}", path.display());
            }
        };
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_all()?;
        Ok(DirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The pid a lock file holds, if it holds one.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(LOCK_FILE_BYTES_MAX)
        .read_to_string(&mut text)
        .ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn directories_and_files_are_private() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        private_dir(&d).unwrap();
        assert_eq!(mode(&d), DIR_MODE);
        fs::set_permissions(&d, Permissions::from_mode(0o755)).unwrap();
        private_dir(&d).unwrap();
        assert_eq!(mode(&d), DIR_MODE, "an existing directory is tightened");

        let f = d.join("x.db");
        private_file(&f).unwrap();
        assert_eq!(mode(&f), FILE_MODE);
        fs::write(&f, b"kept").unwrap();
        fs::set_permissions(&f, Permissions::from_mode(0o644)).unwrap();
        private_file(&f).unwrap();
        assert_eq!(mode(&f), FILE_MODE);
        assert_eq!(fs::read(&f).unwrap(), b"kept", "never truncates");

        let g = d.join("g");
        fs::write(&g, b"").unwrap();
        fs::set_permissions(&g, Permissions::from_mode(0o666)).unwrap();
        tighten_files([g.as_path(), d.join("missing").as_path()]).unwrap();
        assert_eq!(mode(&g), FILE_MODE);

        write_private(&g, b"new").unwrap();
        assert_eq!(fs::read(&g).unwrap(), b"new");
        assert_eq!(mode(&g), FILE_MODE);
    }

    #[test]
    fn a_second_lock_names_the_holder() {
        let t = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(t.path(), "frank vendor serve").unwrap();
        assert_eq!(mode(lock.path()), FILE_MODE);
        let err = DirLock::acquire(t.path(), "frank vendor serve")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("in use by process {}", std::process::id())),
            "{err}"
        );
        drop(lock);
        DirLock::acquire(t.path(), "frank vendor serve").expect("free again once dropped");
    }
}
