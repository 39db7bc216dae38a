//! Counter UI benchmark: full redraws of the app at 120×40 on ratatui's TestBackend.
//!
//! Prints a final JSON line. `frame_ms_p99` is measured here (goal ≤ 2 ms). `rss_mb`,
//! `startup_ms` and `keypress_to_first_byte_ms` need the counter wired to the vendor link and
//! printer (the lead's integration) and are reported as null until then; `ui_core_rss_mb` is
//! this process's resident set after driving the UI core through one print.

#[path = "../tests/ui_support/mod.rs"]
mod ui_support;

use crossterm::event::KeyCode;
use frank::printer::streamer::{JobOutcome, Progress};
use frank::ui::event::{Backend, Command, HistoryEntry, ItemState, JobId};
use frank::ui::{App, draw};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::time::Instant;
use ui_support::*;

/// Frames rendered per scene.
const FRAMES_PER_SCENE: usize = 400;

fn scenes() -> Vec<App> {
    let mut out = Vec::new();
    let mut app = signed_in();
    let rows: Vec<HistoryEntry> = (1..=200)
        .map(|i| HistoryEntry {
            job: JobId(i),
            kind: frank::indicium::ItemKind::Postage,
            date: format!("2026-11-{:02}", 1 + i % 28),
            summary: format!("to Boston MA 02108 #{i}"),
            amount: cents(540),
            state: ItemState::Printed,
        })
        .collect();
    backend(&mut app, Backend::History(rows));
    out.push(app.clone());
    ctrl(&mut app, 'n');
    let cmds = fill_postage(&mut app);
    let request = quote_request(&cmds).unwrap_or(0);
    backend(
        &mut app,
        Backend::Quote {
            request,
            amount: cents(540),
        },
    );
    out.push(app.clone());
    press(&mut app, KeyCode::Enter);
    out.push(app.clone());
    let cmds = press(&mut app, KeyCode::Enter);
    if let Some(Command::Authorize { job, .. }) = cmds.first() {
        let job = *job;
        backend(&mut app, Backend::Authorized { job });
        backend(
            &mut app,
            Backend::PrintProgress {
                job,
                progress: Progress {
                    bytes_sent: 1000,
                    bytes_total: 4096,
                },
            },
        );
        out.push(app.clone());
        backend(
            &mut app,
            Backend::PrintOutcome {
                job,
                outcome: JobOutcome::Completed { bytes_sent: 4096 },
            },
        );
    }
    press(&mut app, KeyCode::F(3));
    out.push(app.clone());
    press(&mut app, KeyCode::F(1));
    out.push(app);
    out
}

fn rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn main() {
    let apps = scenes();
    let mut term = Terminal::new(TestBackend::new(120, 40)).expect("test backend");
    let mut ms = Vec::with_capacity(apps.len() * FRAMES_PER_SCENE);
    for app in &apps {
        for _ in 0..FRAMES_PER_SCENE {
            // Full redraw: forget the previous frame so every cell is drawn and flushed.
            term.clear().expect("clear");
            let t = Instant::now();
            term.draw(|f| draw(f, app)).expect("draw");
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{{\"bench\":\"counter\",\"size\":\"120x40\",\"frames\":{},\"frame_ms_p50\":{:.4},\"frame_ms_p99\":{:.4},\"frame_ms_max\":{:.4},\"ui_core_rss_mb\":{},\"rss_mb\":null,\"startup_ms\":null,\"keypress_to_first_byte_ms\":null}}",
        ms.len(),
        pct(0.5),
        pct(0.99),
        ms.last().copied().unwrap_or(0.0),
        rss_mb()
            .map(|v| format!("{v:.1}"))
            .unwrap_or_else(|| "null".into())
    );
}
