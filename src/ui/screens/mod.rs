//! One file per screen; each draws into the body area from the app state.

pub mod funds;
pub mod history;
pub mod home;
pub mod item_form;
pub mod postage;
pub mod printing;
pub mod review;
pub mod settings;
pub mod sign_in;
pub mod welcome;

use super::App;
use super::app::Screen;
use super::theme::Role;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::widgets::Block;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    match app.screen {
        Screen::Welcome => welcome::draw(frame, area, app),
        Screen::SignIn => sign_in::draw(frame, area, app),
        Screen::Home => home::draw(frame, area, app),
        Screen::Postage => postage::draw(frame, area, app),
        Screen::ItemForm(kind) => item_form::draw(frame, area, app, kind),
        Screen::Review => review::draw(frame, area, app),
        Screen::Printing => printing::draw(frame, area, app),
        Screen::History => history::draw(frame, area, app),
        Screen::Funds => funds::draw(frame, area, app),
        Screen::Settings => settings::draw(frame, area, app),
    }
}

/// The bordered frame every screen sits in; returns the inner area.
pub fn framed(frame: &mut Frame, area: Rect, app: &App, title: &str) -> Rect {
    let theme = &app.config.theme;
    let block = Block::bordered()
        .title(ratatui::text::Span::styled(
            format!(" {title} "),
            theme.style(Role::Title),
        ))
        .border_style(theme.style(Role::Border));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    inner
}
