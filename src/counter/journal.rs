//! The counter's settlement journal: the job book's records on disk, in the terminal's data
//! directory (`settlement.journal`). A **shell**: it appends, fsyncs, reads back and compacts;
//! every decision is the job book's ([`super::jobbook`]).
//!
//! Format (docs/PRINTING.md §Settlement journal): one record per line,
//! `<first 8 bytes of SHA-256(json), hex> <json>\n`. A line is durable once `append` returned
//! (written and `fdatasync`ed). On open, a last line cut short by a crash is dropped (its
//! effect never happened: the effect follows the append); a bad line anywhere else means the
//! file was damaged, and the counter refuses to print until a person looks.
//!
//! Bounded: when the file passes `journal_bytes_max` it is rewritten (to a temporary file,
//! fsynced, renamed over, directory fsynced) with only the records that keep open jobs alive
//! (`JobBook::snapshot`). The job book bounds the open jobs, so the compacted file is small.

use super::jobbook::{JobBook, Record};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// File name in the terminal's data directory.
pub const JOURNAL_FILE: &str = "settlement.journal";
/// Size at which the journal is compacted, in bytes.
pub const JOURNAL_BYTES_MAX: u64 = 1 << 20;
/// Longest line read back, in bytes (an authorize body is a few hundred bytes).
const LINE_BYTES_MAX: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("settlement journal {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("settlement journal {path} is damaged at line {line}: {why}")]
    Damaged {
        path: String,
        line: usize,
        why: String,
    },
}

/// The open journal and the book folded from it.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    bytes: u64,
    bytes_max: u64,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn line_for(r: &Record) -> String {
    // Serialising a plain enum of strings and integers cannot fail.
    let json = serde_json::to_string(r).unwrap_or_default();
    let sum = Sha256::digest(json.as_bytes());
    format!("{} {json}\n", hex::encode(&sum[..8]))
}

fn parse_line(line: &str) -> Result<Record, String> {
    let (sum, json) = line
        .split_once(' ')
        .ok_or_else(|| "no checksum".to_string())?;
    let want = Sha256::digest(json.as_bytes());
    if sum != hex::encode(&want[..8]) {
        return Err("checksum does not match".into());
    }
    serde_json::from_str(json).map_err(|e| format!("not a record: {e}"))
}

impl Journal {
    /// Opens (creating) the journal in `dir`, folds it into a book, and compacts it.
    pub fn open(dir: &Path) -> Result<(Journal, JobBook), JournalError> {
        Self::open_with(dir, JOURNAL_BYTES_MAX)
    }

    pub fn open_with(dir: &Path, bytes_max: u64) -> Result<(Journal, JobBook), JournalError> {
        let path = dir.join(JOURNAL_FILE);
        let records = read_records(&path)?;
        let book = JobBook::recover(records.iter());
        let file = rewrite(&path, &book.snapshot())?;
        let bytes = file.metadata().map_err(io(&path))?.len();
        Ok((
            Journal {
                path,
                file,
                bytes,
                bytes_max: bytes_max.max(4096),
            },
            book,
        ))
    }

    /// Appends `records` and makes them durable; then the caller may apply them and act.
    pub fn append(&mut self, records: &[Record]) -> Result<(), JournalError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = String::new();
        for r in records {
            buf.push_str(&line_for(r));
        }
        let path = self.path.clone();
        self.file.write_all(buf.as_bytes()).map_err(io(&path))?;
        self.file.sync_data().map_err(io(&path))?;
        self.bytes += buf.len() as u64;
        Ok(())
    }

    /// Rewrites the journal with only what `book` still needs, when it has grown past its
    /// bound (call after applying).
    pub fn compact_if_due(&mut self, book: &JobBook) -> Result<(), JournalError> {
        if self.bytes < self.bytes_max {
            return Ok(());
        }
        self.file = rewrite(&self.path, &book.snapshot())?;
        self.bytes = self.file.metadata().map_err(io(&self.path))?.len();
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// Reads every record; drops a torn last line; refuses a damaged one elsewhere.
pub fn read_records(path: &Path) -> Result<Vec<Record>, JournalError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(path)(e)),
    };
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    let mut pending_bad: Option<(usize, String)> = None;
    let mut line = Vec::new();
    let mut n = 0usize;
    loop {
        line.clear();
        let read = (&mut reader)
            .take(LINE_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(io(path))?;
        if read == 0 {
            break;
        }
        n += 1;
        if let Some((at, why)) = pending_bad.take() {
            // A bad line followed by more lines is not a torn tail.
            return Err(JournalError::Damaged {
                path: path.display().to_string(),
                line: at,
                why,
            });
        }
        let complete = line.last() == Some(&b'\n');
        let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line));
        match parse_line(&text) {
            Ok(r) if complete => out.push(r),
            Ok(_) => pending_bad = Some((n, "line cut short".into())),
            Err(why) => pending_bad = Some((n, why)),
        }
    }
    if let Some((at, why)) = pending_bad {
        tracing::warn!(line = at, %why, "settlement journal: dropped a last line cut short by a crash");
    }
    Ok(out)
}

use std::io::Read as _;

/// Writes `records` to a new file, fsyncs it, renames it over `path`, fsyncs the directory,
/// and returns the file opened for appending.
fn rewrite(path: &Path, records: &[Record]) -> Result<File, JournalError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(crate::datafiles::DIR_MODE)
            .create(dir)
            .map_err(io(path))?;
    }
    let tmp = path.with_extension("journal.tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(crate::datafiles::FILE_MODE)
            .open(&tmp)
            .map_err(io(&tmp))?;
        for r in records {
            f.write_all(line_for(r).as_bytes()).map_err(io(&tmp))?;
        }
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(path))?;
    OpenOptions::new().append(true).open(path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::jobbook::{Answer, RequestIds, Stage};

    fn ids() -> RequestIds {
        RequestIds {
            authorize: [1; 16],
            commit: [2; 16],
            void: [3; 16],
        }
    }

    fn record_all(j: &mut Journal, b: &mut JobBook, recs: Vec<Record>) {
        j.append(&recs).expect("append");
        for r in &recs {
            b.apply(r);
        }
    }

    #[test]
    fn what_was_appended_is_there_after_a_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        let k = [5; 16];
        {
            let (mut j, mut b) = Journal::open(dir.path()).expect("open");
            let recs = b.decide_authorize(k, 250, ids(), "a1".into()).expect("ok");
            record_all(&mut j, &mut b, recs);
            let recs = b.decide_authorized(k, Ok((9, "ff".into()))).expect("ok");
            record_all(&mut j, &mut b, recs);
            let recs = b.decide_print(k, 1).expect("ok");
            record_all(&mut j, &mut b, recs);
        }
        let (_, b) = Journal::open(dir.path()).expect("reopen");
        let e = b.get(&k).expect("job");
        assert_eq!(e.stage, Stage::Printing);
        assert_eq!(e.piece_serial, Some(9));
        assert!(e.from_last_run);
    }

    /// Issue 13: the journal (and a directory it creates) is readable by its owner only.
    #[test]
    fn the_journal_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let sub = dir.path().join("terminal");
        drop(Journal::open(&sub).expect("open"));
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&sub), crate::datafiles::DIR_MODE);
        assert_eq!(mode(&sub.join(JOURNAL_FILE)), crate::datafiles::FILE_MODE);
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_damage_elsewhere_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let k = [5; 16];
        {
            let (mut j, mut b) = Journal::open(dir.path()).expect("open");
            let recs = b.decide_authorize(k, 250, ids(), "a1".into()).expect("ok");
            record_all(&mut j, &mut b, recs);
        }
        let path = dir.path().join(JOURNAL_FILE);
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str("0123abcd {\"r\":\"print_sta");
        std::fs::write(&path, &text).expect("write");
        let (_, b) = Journal::open(dir.path()).expect("torn tail is fine");
        assert_eq!(b.get(&k).map(|e| e.stage), Some(Stage::Authorizing));

        let good = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, format!("deadbeefdeadbeef {{}}\n{good}")).expect("write");
        assert!(matches!(
            Journal::open(dir.path()),
            Err(JournalError::Damaged { line: 1, .. })
        ));
    }

    #[test]
    fn compaction_keeps_open_jobs_only() {
        let dir = tempfile::tempdir().expect("dir");
        let (mut j, mut b) = Journal::open_with(dir.path(), 4096).expect("open");
        for n in 0..40u8 {
            let k = [n; 16];
            let ids = RequestIds {
                authorize: [n; 16],
                commit: [n; 16],
                void: [n; 16],
            };
            let recs = b
                .decide_authorize(k, 100, ids, "ab".repeat(20))
                .expect("ok");
            record_all(&mut j, &mut b, recs);
            let recs = b
                .decide_authorized(k, Ok((u64::from(n), "s".into())))
                .expect("ok");
            record_all(&mut j, &mut b, recs);
            if n != 7 {
                let recs = b.decide_abandon(k).expect("ok");
                record_all(&mut j, &mut b, recs);
                let recs = b
                    .decide_settled(
                        k,
                        Answer::Ok {
                            result: "voided".into(),
                        },
                    )
                    .expect("ok");
                record_all(&mut j, &mut b, recs);
            }
            j.compact_if_due(&b).expect("compact");
            assert!(j.bytes() < 4096 + 2048, "{}", j.bytes());
        }
        drop(j);
        let (_, b) = Journal::open(dir.path()).expect("reopen");
        assert_eq!(b.open_count(), 1);
        assert_eq!(b.get(&[7; 16]).map(|e| e.stage), Some(Stage::Authorized));
    }
}
