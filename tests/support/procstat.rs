//! CPU time of processes from `/proc/<pid>/stat` (proc(5)), for benchmarks that measure a
//! child process's work apart from their own.
#![allow(dead_code)]

/// Ticks per second of the `/proc` times (`getconf CLK_TCK`; 100 when it cannot be asked).
pub fn clock_ticks_per_s() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// One process's times, in ticks.
pub struct Times {
    pub ppid: u64,
    /// utime + stime.
    pub own: u64,
    /// cutime + cstime: children that ended and were waited for.
    pub children: u64,
}

/// `pid`'s times, or `None` when it is gone.
pub fn times(pid: &str) -> Option<Times> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (in parentheses, which may hold spaces): state, ppid
    // (field 4 of stat), …, utime, stime, cutime, cstime (fields 14–17).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    Some(Times {
        ppid: *f.get(1)?,
        own: f.get(11)? + f.get(12)?,
        children: f.get(13)? + f.get(14)?,
    })
}

/// CPU seconds (user + system) `pid` used so far.
pub fn cpu_s(pid: &str, ticks_per_s: f64) -> f64 {
    times(pid).expect("/proc stat").own as f64 / ticks_per_s
}

/// CPU seconds used so far by `parent`, the children of it that ended, and its live children.
pub fn tree_cpu_s(parent: u32, ticks_per_s: f64) -> f64 {
    let mut ticks = times(&parent.to_string()).map_or(0, |t| t.own + t.children);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if let Some(t) = times(pid).filter(|t| t.ppid == u64::from(parent)) {
            ticks += t.own;
        }
    }
    ticks as f64 / ticks_per_s
}
