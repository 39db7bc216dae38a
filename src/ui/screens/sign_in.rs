//! Clerk sign-in: the form, its keys and its drawing.

use super::{Binding, form_nav, framed, key};
use crate::ui::app::{App, Severity};
use crate::ui::event::Command;
use crate::ui::form::{Field, Form};
use crate::ui::hits::Hits;
use crate::ui::keys::Action;
use crate::ui::panels::form;
use crate::ui::theme::Role;
use crate::ui::{centered, line_widget};
use crossterm::event::KeyCode;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInField {
    Clerk,
    Password,
}

#[derive(Debug, Clone)]
pub struct SignInScreen {
    pub form: Form<SignInField>,
    /// Sign-in sent; waiting for the vendor's answer.
    pub busy: bool,
}

impl SignInScreen {
    pub fn new() -> SignInScreen {
        SignInScreen {
            form: Form::new(vec![
                Field::text(SignInField::Clerk, "Clerk", 32),
                Field::secret(SignInField::Password, "Password", 64, 0),
            ]),
            busy: false,
        }
    }
}

impl Default for SignInScreen {
    fn default() -> Self {
        SignInScreen::new()
    }
}

pub fn keys(_app: &App) -> Vec<Binding> {
    let mut v = vec![
        key(Action::Submit, "sign in", submit),
        key(Action::NextField, "next", nav),
    ];
    v.extend(form_nav(nav).filter(|b| b.action != Action::NextField));
    v
}

fn nav(app: &mut App, action: Action, _: &mut Vec<Command>) {
    super::nav(&mut app.sign_in.form, action);
}

pub fn type_key(app: &mut App, code: KeyCode) -> bool {
    super::type_into(&mut app.sign_in.form, code)
}

fn submit(app: &mut App, _: Action, out: &mut Vec<Command>) {
    if app.sign_in.busy {
        return;
    }
    let form = &mut app.sign_in.form;
    let clerk = form.text(SignInField::Clerk).trim().to_string();
    let password = form
        .get(SignInField::Password)
        .and_then(Field::secret_value)
        .cloned()
        .unwrap_or_default();
    if clerk.is_empty() || password.is_empty() {
        app.notice(
            Severity::Warn,
            "Enter the clerk name and password, then Enter.",
        );
        return;
    }
    if let Some(p) = form.get_mut(SignInField::Password) {
        p.clear();
    }
    app.sign_in.busy = true;
    app.notice(Severity::Info, format!("Signing in as {clerk}…"));
    out.push(Command::SignIn { clerk, password });
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, hits: &mut Hits) {
    let inner = framed(frame, area, app, "Sign in");
    let theme = &app.config.theme;
    let info = app.config.info_lines.len() as u16;
    let info_cols = app
        .config
        .info_lines
        .iter()
        .map(|l| crate::ui::text::width(l) as u16)
        .max()
        .unwrap_or(0);
    let rect = centered(
        inner,
        info_cols.max(60),
        5 + if info > 0 { info + 1 } else { 0 },
    );
    let [head, _, fields] = ratatui::layout::Layout::vertical([
        ratatui::layout::Constraint::Length(1),
        ratatui::layout::Constraint::Length(1),
        ratatui::layout::Constraint::Min(0),
    ])
    .areas(rect);
    let msg = if app.sign_in.busy {
        "Signing in…"
    } else {
        "Clerk name and password"
    };
    frame.render_widget(
        line_widget(Span::styled(msg, theme.style(Role::Muted))),
        head,
    );
    let [fields, info_area] = ratatui::layout::Layout::vertical([
        ratatui::layout::Constraint::Length(3),
        ratatui::layout::Constraint::Min(0),
    ])
    .areas(fields);
    form::draw(frame, fields, &app.sign_in.form, &[0, 1], theme, true, hits);
    if info > 0 {
        let lines: Vec<ratatui::text::Line> = std::iter::once(ratatui::text::Line::raw(""))
            .chain(app.config.info_lines.iter().map(|l| {
                ratatui::text::Line::from(Span::styled(
                    crate::ui::text::fit(l, info_area.width as usize),
                    theme.style(Role::Muted),
                ))
            }))
            .collect();
        frame.render_widget(ratatui::widgets::Paragraph::new(lines), info_area);
    }
}
