//! Home: balance, what to do next, recent items.

use super::{Binding, framed, key, quiet};
use crate::indicium::ItemKind;
use crate::ui::app::{App, Screen};
use crate::ui::event::Command;
use crate::ui::hits::{Hits, Target};
use crate::ui::keys::Action;
use crate::ui::text;
use crate::ui::theme::Role;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};

/// Recent items shown on the home screen.
pub const RECENT_ROWS_MAX: usize = 8;

/// Home menu rows.
pub const HOME_MENU: [(&str, Screen); 12] = [
    ("Postage label", Screen::Postage),
    ("Ticket", Screen::ItemForm(ItemKind::Ticket)),
    ("Check", Screen::ItemForm(ItemKind::Check)),
    ("Coupon", Screen::ItemForm(ItemKind::Coupon)),
    (
        "Gift certificate",
        Screen::ItemForm(ItemKind::GiftCertificate),
    ),
    ("Basket", Screen::Basket),
    ("History", Screen::History),
    ("End of day", Screen::Day),
    ("Refunds to decide", Screen::Refunds),
    ("Add funds", Screen::Funds),
    ("Settings", Screen::Settings),
    ("Sign out", Screen::SignIn),
];

#[derive(Debug, Clone, Default)]
pub struct HomeScreen {
    /// The menu row chosen.
    pub selected: usize,
}

pub fn keys(_app: &App) -> Vec<Binding> {
    vec![
        key(Action::Submit, "open", open),
        key(Action::NewItem, "new postage", |app, _, out| {
            app.go(Screen::Postage, out)
        }),
        quiet(Action::RowDown, down),
        quiet(Action::NextField, down),
        quiet(Action::RowUp, up),
        quiet(Action::PrevField, up),
    ]
}

fn down(app: &mut App, _: Action, _: &mut Vec<Command>) {
    app.home.selected = (app.home.selected + 1) % HOME_MENU.len();
}

fn up(app: &mut App, _: Action, _: &mut Vec<Command>) {
    let n = HOME_MENU.len();
    app.home.selected = (app.home.selected + n - 1) % n;
}

fn open(app: &mut App, _: Action, out: &mut Vec<Command>) {
    let (_, screen) = HOME_MENU[app.home.selected % HOME_MENU.len()];
    app.go(screen, out);
}

/// A click on a menu row chooses it and opens it.
pub fn click_row(app: &mut App, n: usize, out: &mut Vec<Command>) {
    if n < HOME_MENU.len() {
        app.home.selected = n;
        open(app, Action::Submit, out);
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, hits: &mut Hits) {
    let inner = framed(frame, area, app, "Home");
    let theme = &app.config.theme;
    let [menu_area, recent_area] =
        Layout::horizontal([Constraint::Length(24), Constraint::Min(0)]).areas(inner);
    let mut menu = vec![Line::from(Span::styled(
        format!(
            "Balance {}",
            app.balance
                .map(|b| b.to_string())
                .unwrap_or_else(|| "–".into())
        ),
        theme.style(Role::Title),
    ))];
    menu.push(Line::raw(""));
    for (i, (label, _)) in HOME_MENU.iter().enumerate() {
        let sel = i == app.home.selected;
        super::row_hit(hits, menu_area, 2 + i, Target::Row(i));
        menu.push(Line::from(vec![
            Span::styled(if sel { "▶ " } else { "  " }, theme.style(Role::Title)),
            Span::styled(
                *label,
                if sel {
                    theme.style(Role::Selection)
                } else {
                    theme.style(Role::Text)
                },
            ),
        ]));
    }
    crate::ui::panels::rows(frame, menu_area, &menu);
    let mut recent = vec![Line::from(Span::styled(
        "Recent items",
        theme.style(Role::Title),
    ))];
    if app.history.is_empty() {
        recent.push(Line::from(Span::styled(
            "none yet",
            theme.style(Role::Muted),
        )));
    }
    let w = recent_area.width as usize;
    // The history is kept newest first.
    for e in app.history.iter().take(RECENT_ROWS_MAX) {
        let row = format!(
            "{} {} {} {}",
            e.number_text(),
            e.summary,
            e.amount,
            e.state.label()
        );
        recent.push(Line::from(Span::styled(
            text::fit(&row, w),
            theme.style(Role::Text),
        )));
    }
    crate::ui::panels::rows(frame, recent_area, &recent);
}
