//! One module per screen, each owning its state, its key table (the handlers and, from the same
//! rows, the hint line and the plain mode's prompt) and its drawing into the body area.

pub mod basket;
pub mod day;
pub mod funds;
pub mod history;
pub mod home;
pub mod item_form;
pub mod postage;
pub mod printing;
pub mod refunds;
pub mod review;
pub mod settings;
pub mod sign_in;
pub mod welcome;

use super::App;
use super::app::Screen;
use super::event::Command;
use super::form::{FieldKey, Form};
use super::hits::Hits;
use super::keys::Action;
use super::theme::Role;
use crossterm::event::KeyCode;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::widgets::Block;

/// What a key (or the button for it) does on a screen.
pub type Run = fn(&mut App, Action, &mut Vec<Command>);

/// One row of a key table: the action, the words on the hint line (`None`: it acts but is not
/// hinted, e.g. moving between fields) and its handler. A key acts only if its row is in the
/// table of the screen shown, and a hint is shown only for a row there: they cannot disagree.
#[derive(Clone, Copy)]
pub struct Binding {
    pub action: Action,
    pub hint: Option<&'static str>,
    pub run: Run,
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Binding({:?}, {:?})", self.action, self.hint)
    }
}

/// A hinted row.
pub fn key(action: Action, hint: &'static str, run: Run) -> Binding {
    Binding {
        action,
        hint: Some(hint),
        run,
    }
}

/// A row that acts without a hint.
pub fn quiet(action: Action, run: Run) -> Binding {
    Binding {
        action,
        hint: None,
        run,
    }
}

/// Field and choice movement on a form, unhinted (the hint for Tab, if any, is the screen's).
pub fn form_nav(run: Run) -> impl Iterator<Item = Binding> {
    [
        Action::NextField,
        Action::PrevField,
        Action::RowUp,
        Action::RowDown,
        Action::ChoiceNext,
        Action::ChoicePrev,
    ]
    .into_iter()
    .map(move |a| quiet(a, run))
}

/// Moves the focus or a choice of `form` for a navigation action; returns whether a value
/// changed (a choice moved).
pub fn nav<K: FieldKey>(form: &mut Form<K>, action: Action) -> bool {
    match action {
        Action::NextField | Action::RowDown => form.next(),
        Action::PrevField | Action::RowUp => form.prev(),
        Action::ChoiceNext | Action::ChoicePrev => {
            return form
                .focused_mut()
                .is_some_and(|f| f.cycle(action == Action::ChoiceNext));
        }
        _ => {}
    }
    false
}

/// Types a key into the focused field of `form` (a character, or Backspace); returns whether
/// its value changed. The one place a typed key reaches a form's field.
pub fn type_into<K: FieldKey>(form: &mut Form<K>, code: KeyCode) -> bool {
    let Some(field) = form.focused_mut() else {
        return false;
    };
    match code {
        KeyCode::Char(c) => field.type_char(c),
        KeyCode::Backspace => field.backspace(),
        _ => false,
    }
}

/// The key table of the screen shown.
pub fn keys(app: &App) -> Vec<Binding> {
    match app.screen {
        Screen::Welcome => welcome::keys(app),
        Screen::SignIn => sign_in::keys(app),
        Screen::Home => home::keys(app),
        Screen::Postage => postage::keys(app),
        Screen::ItemForm(_) => item_form::keys(app),
        Screen::Review => review::keys(app),
        Screen::Printing => printing::keys(app),
        Screen::History => history::keys(app),
        Screen::Funds => funds::keys(app),
        Screen::Settings => settings::keys(app),
        Screen::Basket => basket::keys(app),
        Screen::Day => day::keys(app),
        Screen::Refunds => refunds::keys(app),
    }
}

/// A click on row `n` of the screen's list.
pub fn click_row(app: &mut App, n: usize, out: &mut Vec<Command>) {
    match app.screen {
        Screen::Home => home::click_row(app, n, out),
        Screen::History => history::click_row(app, n),
        Screen::Settings => settings::click_row(app, n, out),
        Screen::Basket => basket::click_row(app, n),
        Screen::Refunds => refunds::click_row(app, n),
        _ => {}
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, hits: &mut Hits) {
    match app.screen {
        Screen::Welcome => welcome::draw(frame, area, app, hits),
        Screen::SignIn => sign_in::draw(frame, area, app, hits),
        Screen::Home => home::draw(frame, area, app, hits),
        Screen::Postage => postage::draw(frame, area, app, hits),
        Screen::ItemForm(kind) => item_form::draw(frame, area, app, kind, hits),
        Screen::Review => review::draw(frame, area, app, hits),
        Screen::Printing => printing::draw(frame, area, app, hits),
        Screen::History => history::draw(frame, area, app, hits),
        Screen::Funds => funds::draw(frame, area, app, hits),
        Screen::Settings => settings::draw(frame, area, app, hits),
        Screen::Basket => basket::draw(frame, area, app, hits),
        Screen::Day => day::draw(frame, area, app, hits),
        Screen::Refunds => refunds::draw(frame, area, app, hits),
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

/// Records row `offset` of `area` as clickable (if it is inside the area).
pub fn row_hit(hits: &mut Hits, area: Rect, offset: usize, target: super::hits::Target) {
    if offset < area.height as usize {
        hits.add(
            Rect {
                y: area.y + offset as u16,
                height: 1,
                ..area
            },
            target,
        );
    }
}
