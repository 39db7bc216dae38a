//! The bottom line: the keys that matter on this screen, from the binding table.

use crate::ui::app::Screen;
use crate::ui::keys::Action;
use crate::ui::theme::Role;
use crate::ui::{App, text};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

fn actions(app: &App) -> Vec<(Action, &'static str)> {
    let mut v = match app.screen {
        // Out of service: nothing to start.
        Screen::Welcome if app.out_of_service => vec![],
        Screen::Welcome => vec![(Action::Submit, "start")],
        Screen::SignIn => vec![(Action::Submit, "sign in"), (Action::NextField, "next")],
        Screen::Home => vec![(Action::Submit, "open"), (Action::NewItem, "new postage")],
        Screen::Postage | Screen::ItemForm(_) => vec![
            (Action::Submit, "review"),
            (Action::NextField, "next"),
            (Action::Back, "back"),
        ],
        Screen::Review => vec![(Action::Submit, "confirm & print"), (Action::Back, "edit")],
        Screen::Printing => vec![
            (Action::NewItem, "new item"),
            (Action::RequestRefund, "refund"),
            (Action::Back, "home"),
        ],
        Screen::History => vec![
            (Action::RequestRefund, "request refund"),
            (Action::NextField, "filter"),
            (Action::Back, "back"),
        ],
        Screen::Funds => vec![(Action::Submit, "add funds"), (Action::Back, "back")],
        Screen::Settings => vec![(Action::ChoiceNext, "theme"), (Action::Back, "back")],
    };
    if app.config.kiosk {
        v.retain(|(a, _)| !matches!(a, Action::RequestRefund));
    } else if app.clerk.is_some() {
        v.push((Action::Home, "home"));
    }
    v.push((Action::Help, "help"));
    v
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.config.theme;
    let mut spans = Vec::new();
    let mut used = 0usize;
    for (a, what) in actions(app) {
        let key = app.config.keys.hint(a);
        let w = text::width(&key) + text::width(what) + 3;
        if used + w > area.width as usize {
            break;
        }
        used += w;
        spans.push(Span::styled(key, theme.style(Role::Title)));
        spans.push(Span::styled(format!(" {what}  "), theme.style(Role::Muted)));
    }
    frame.render_widget(crate::ui::line_widget(Line::from(spans)), area);
}
