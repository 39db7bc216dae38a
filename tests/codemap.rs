//! Issue 19: ARCHITECTURE.md's codemap is the map of the house, checked against the tree.
//!
//! - Every file under `src/`, `tests/` and `benches/` is named by a codemap row (by its path, by
//!   a name relative to the row's first path's folder, or by a folder row ending in `/`), and
//!   every path a row names exists.
//! - Every row naming code (`src/`, `tests/`, `benches/`) says what it is: its "owns" cell
//!   starts with `**core**` or `shell`. Tests and benches are shells.
//! - Every row whose "owns" cell starts with `**core**` names files that do no I/O: outside
//!   comments and `#[cfg(test)]` modules they do not name tokio, `std::fs`, `std::net`,
//!   `SystemTime::now`, `Instant::now`, a thread's sleep or spawn, the process's randomness or
//!   a database driver (docs: ARCHITECTURE.md §Codemap).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What a core must not name: the world's I/O, clocks and randomness.
const FORBIDDEN_IN_CORES: &[&str] = &[
    "tokio",
    "std::fs",
    "fs::read",
    "fs::write",
    "File::open",
    "File::create",
    "std::net",
    "SystemTime::now",
    "Instant::now",
    "thread::sleep",
    "rand::random",
    "rand::rng",
    "thread_rng",
    "OsRng",
    "SysRng",
    "getrandom",
    "fill_from_os",
    "new_signing_key",
    "std::process",
    "std::env",
    "thread::spawn",
    "rusqlite",
    "tokio_postgres",
];

/// Folders of the repository's root: a name under one of them is a path from the root.
const TOP_FOLDERS: &[&str] = &["src", "tests", "benches", "scripts", "docs", ".ci"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One codemap row: the paths its first cell names (files, or folders ending in `/`) and
/// whether it is a core.
struct Row {
    line: usize,
    paths: Vec<String>,
    core: bool,
    shell: bool,
}

fn rows() -> Vec<Row> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let mut cells = rest.splitn(3, " | ");
        let first = cells.next().unwrap_or("");
        let owns = cells.next().unwrap_or("");
        let first = format!("`{first}");
        let names: Vec<&str> = first.split('`').skip(1).step_by(2).map(str::trim).collect();
        let Some(lead) = names.first() else { continue };
        // Names after the first are relative to the first one's folder (`src/indicium/rates.rs`,
        // `address.rs`) unless they name a top folder themselves (`ui/form.rs` → `src/ui/…`).
        let lead_dir = if lead.ends_with('/') {
            lead.trim_end_matches('/')
                .rsplit_once('/')
                .map_or("", |(d, _)| d)
        } else {
            lead.rsplit_once('/').map_or("", |(d, _)| d)
        };
        let top = lead.split('/').next().unwrap_or("");
        let mut paths = Vec::new();
        for (n, name) in names.iter().enumerate() {
            let from_root = TOP_FOLDERS.contains(&name.split('/').next().unwrap_or(""));
            let path = if n == 0 || (name.contains('/') && from_root) {
                name.to_string()
            } else if top == "src" && name.contains('/') {
                format!("src/{name}")
            } else {
                format!("{lead_dir}/{name}")
            };
            paths.push(path);
        }
        out.push(Row {
            line: i + 1,
            paths,
            core: owns.trim_start().starts_with("**core**"),
            shell: owns.trim_start().starts_with("shell"),
        });
    }
    out
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn covers(row_path: &str, file: &str) -> bool {
    if row_path.ends_with('/') {
        file.starts_with(row_path)
    } else {
        file == row_path
    }
}

#[test]
fn every_file_has_a_row_in_the_codemap() {
    let rows = rows();
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches"] {
        files_under(&root().join(dir), &mut files);
    }
    let missing: BTreeSet<String> = files
        .iter()
        .map(|f| relative(f))
        .filter(|f| !rows.iter().any(|r| r.paths.iter().any(|p| covers(p, f))))
        .collect();
    assert!(
        missing.is_empty(),
        "files without a row in ARCHITECTURE.md's codemap: {missing:#?}"
    );
    let stale: BTreeSet<String> = rows
        .iter()
        .flat_map(|r| r.paths.iter().map(move |p| (r.line, p)))
        .filter(|(_, p)| !root().join(p).exists())
        .map(|(line, p)| format!("line {line}: {p}"))
        .collect();
    assert!(
        stale.is_empty(),
        "codemap rows naming files that do not exist: {stale:#?}"
    );
}

/// Issue 19: a file over about 800 lines says at its top why it is one file ("on purpose" or
/// "about 800 lines" in its module docs), so a long file is a decision, not an accident.
#[test]
fn every_file_over_800_lines_says_why_at_its_top() {
    const LINES_MAX: usize = 800;
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches"] {
        files_under(&root().join(dir), &mut files);
    }
    let unexplained: BTreeSet<String> = files
        .iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let lines = text.lines().count();
            let top: String = text
                .lines()
                .take_while(|l| l.starts_with("//!"))
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase();
            let says_why = top.contains("on purpose") || top.contains("about 800 lines");
            (lines > LINES_MAX && !says_why).then(|| format!("{} ({lines} lines)", relative(f)))
        })
        .collect();
    assert!(
        unexplained.is_empty(),
        "files over {LINES_MAX} lines without a reason at their top: {unexplained:#?}"
    );
}

#[test]
fn every_code_row_is_marked_core_or_shell() {
    let unmarked: Vec<String> = rows()
        .iter()
        .filter(|r| {
            r.paths.iter().any(|p| {
                ["src/", "tests/", "benches/"]
                    .iter()
                    .any(|t| p.starts_with(t))
            })
        })
        .filter(|r| !r.core && !r.shell)
        .map(|r| format!("line {}: {}", r.line, r.paths.join(", ")))
        .collect();
    assert!(
        unmarked.is_empty(),
        "codemap rows whose \"owns\" cell starts with neither **core** nor shell: {unmarked:#?}"
    );
    let tests_as_cores: Vec<String> = rows()
        .iter()
        .filter(|r| {
            r.core
                && r.paths
                    .iter()
                    .any(|p| p.starts_with("tests/") || p.starts_with("benches/"))
        })
        .map(|r| format!("line {}", r.line))
        .collect();
    assert!(
        tests_as_cores.is_empty(),
        "tests and benches are shells: {tests_as_cores:?}"
    );
}

/// The file's code without comments and without its `#[cfg(test)]` modules.
fn code_outside_tests(text: &str) -> String {
    let mut out = String::new();
    let mut skip_depth: Option<i32> = None;
    let mut depth = 0i32;
    let mut pending_cfg_test = false;
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let trimmed = code.trim();
        if trimmed.starts_with("#[cfg(test)]") {
            pending_cfg_test = true;
            continue;
        }
        let opens = code.matches('{').count() as i32;
        let closes = code.matches('}').count() as i32;
        if pending_cfg_test && !trimmed.is_empty() {
            pending_cfg_test = false;
            if skip_depth.is_none() && trimmed.contains('{') {
                skip_depth = Some(depth);
                depth += opens - closes;
                continue;
            }
            if skip_depth.is_none() {
                // An attribute on one item without a block (`use`, `const`): skip the line.
                continue;
            }
        }
        depth += opens - closes;
        if let Some(d) = skip_depth {
            if depth <= d {
                skip_depth = None;
            }
            continue;
        }
        out.push_str(code);
        out.push('\n');
    }
    out
}

#[test]
fn cores_do_no_io_and_read_no_clock_or_randomness() {
    let mut offences = Vec::new();
    for row in rows().iter().filter(|r| r.core) {
        for path in &row.paths {
            let mut files = Vec::new();
            let full = root().join(path);
            if path.ends_with('/') {
                files_under(&full, &mut files);
            } else {
                files.push(full);
            }
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap();
                let code = code_outside_tests(&text);
                for word in FORBIDDEN_IN_CORES {
                    if code.contains(word) {
                        offences.push(format!("{} names `{word}`", relative(&file)));
                    }
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "core modules (ARCHITECTURE.md rows starting **core**) touching the world: {offences:#?}"
    );
}

#[test]
fn the_test_scanner_skips_test_modules_and_comments_only() {
    let text = "use a;\n// tokio here\nfn f() { let x = 1; }\n#[cfg(test)]\nmod tests {\n    fn g() { tokio::spawn(); }\n}\nfn h() { std::fs::read(\"x\"); }\n";
    let code = code_outside_tests(text);
    assert!(!code.contains("tokio"), "{code}");
    assert!(code.contains("std::fs"), "{code}");
    assert!(code.contains("fn f()"), "{code}");
}
