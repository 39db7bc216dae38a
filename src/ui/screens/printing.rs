//! Printing: the progress gauge (bytes and %), then the outcome.

use super::framed;
use crate::ui::App;
use crate::ui::app::JobPhase;
use crate::ui::keys::Action;
use crate::ui::panels::notice::role_of;
use crate::ui::theme::Role;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Gauge, Paragraph, Wrap};

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let inner = framed(frame, area, app, "Printing");
    let theme = &app.config.theme;
    let Some(job) = &app.job else {
        frame.render_widget(
            Paragraph::new(Span::styled(
                "No item in progress.",
                theme.style(Role::Muted),
            )),
            inner,
        );
        return;
    };
    let [head, gauge, _, msg] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(inner);
    frame.render_widget(
        Paragraph::new(Span::styled(
            format!("{} {} — {}", job.title, job.id, job.amount),
            theme.style(Role::Title),
        )),
        head,
    );
    match &job.phase {
        JobPhase::Authorizing => frame.render_widget(
            Paragraph::new(Span::styled(
                "Asking the vendor to sign the item…",
                theme.style(Role::Muted),
            )),
            gauge,
        ),
        JobPhase::Printing(p) => {
            let label = format!(
                "{} / {} bytes  {}%",
                p.bytes_sent,
                p.bytes_total,
                p.percent()
            );
            frame.render_widget(
                Gauge::default()
                    .gauge_style(theme.style(Role::Gauge))
                    .percent(u16::from(p.percent().min(100)))
                    .label(label),
                gauge,
            );
        }
        JobPhase::Done { severity, message } => {
            let mut lines = vec![Line::from(Span::styled(
                message.clone(),
                theme.style(role_of(*severity)),
            ))];
            lines.push(Line::raw(""));
            let keys = &app.config.keys;
            let next = if app.config.kiosk {
                format!("Press {} to finish.", keys.hint(Action::Submit))
            } else {
                format!(
                    "{} new item · {} request refund · {} home. This item cannot be printed again.",
                    keys.hint(Action::NewItem),
                    keys.hint(Action::RequestRefund),
                    keys.hint(Action::Back)
                )
            };
            lines.push(Line::from(Span::styled(next, theme.style(Role::Muted))));
            frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), msg);
        }
    }
}
