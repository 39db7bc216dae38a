//! The counter's terminal UI: a sans-I/O app state machine ([`app`]), pure drawing
//! ([`draw`], [`screens`], [`panels`]), key bindings ([`keys`]) and themes ([`theme`]). The app
//! talks to the outside only through [`event::Event`] in and [`event::Command`] out; the
//! terminal runner ([`run`]) is the thin I/O shell.

pub mod app;
pub mod config;
pub mod event;
pub mod form;
pub mod hits;
pub mod input;
pub mod keys;
pub mod panels;
pub mod plain;
pub mod printed;
pub mod runner;
pub mod screens;
pub mod text;
pub mod theme;

pub use app::{App, AppConfig, Screen};
pub use event::{Backend, Command, Event};
pub use runner::run;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};
use theme::Role;

/// Smallest terminal the counter draws into; below it only a notice is shown.
pub const MIN_COLS: u16 = 40;
pub const MIN_ROWS: u16 = 12;

/// Whether a terminal of `cols`×`rows` is below the smallest the counter draws into.
pub fn too_small(cols: u16, rows: u16) -> bool {
    cols < MIN_COLS || rows < MIN_ROWS
}

/// Draws the whole UI from the app state. Pure: reads `app`, writes the frame.
pub fn draw(frame: &mut Frame, app: &App) {
    let _ = draw_with_hits(frame, app);
}

/// [`draw`], returning where it drew what a click can act on (for [`App::set_hits`]).
pub fn draw_with_hits(frame: &mut Frame, app: &App) -> hits::Hits {
    let mut hits = hits::Hits::default();
    let area = frame.area();
    // A theme with its own background (light) paints it first, with its text colour, so it
    // reads the same on a light or a dark terminal; the others keep the terminal's.
    let base = app.config.theme.style(Role::Text);
    if base.bg.is_some() {
        frame.render_widget(ratatui::widgets::Block::default().style(base), area);
    }
    if too_small(area.width, area.height) {
        let mut text = format!(
            "Enlarge the terminal to at least {MIN_COLS}×{MIN_ROWS} (now {}×{}).",
            area.width, area.height
        );
        // Keys other than quit and help wait for a larger terminal (App::handle); what they
        // answered (e.g. a quit question) is still shown.
        if let Some(n) = &app.notice {
            text.push(' ');
            text.push_str(&n.text);
        }
        let p = Paragraph::new(text)
            .style(app.config.theme.style(Role::AlertWarn))
            .wrap(Wrap { trim: true });
        frame.render_widget(p, area);
        return hits;
    }
    // A long notice wraps onto up to three rows instead of being cut.
    let notice_rows = panels::notice::lines(app, area.width as usize).len().max(1) as u16;
    let [status, body, notice, hints] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(notice_rows),
        Constraint::Length(1),
    ])
    .areas(area);
    panels::status_bar::draw(frame, status, app);
    if app.screen == app::Screen::Welcome && app.kiosk_unavailable() {
        panels::out_of_service::draw(frame, body, app);
    } else {
        screens::draw(frame, body, app, &mut hits);
    }
    panels::notice::draw(frame, notice, app);
    panels::hints::draw(frame, hints, app, &mut hits);
    if app.show_help {
        hits.clear(); // the overlay covers the screen
        panels::help::draw(frame, body, app);
    }
    if app.pin_prompt.is_some() {
        hits.clear();
        panels::pin::draw(frame, body, app);
    }
    hits
}

/// A rectangle of at most `w`×`h` centred in `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

/// A one-line paragraph.
pub(crate) fn line_widget<'a>(line: impl Into<Line<'a>>) -> Paragraph<'a> {
    Paragraph::new(line.into())
}
