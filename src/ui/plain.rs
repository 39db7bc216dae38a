//! The plain mode (`--plain`, `accessibility = "plain"`): for a screen reader or a braille
//! display, each change of state and each prompt is written as one plain line — no box
//! drawing, no colours, no spinners, no redraws. **Core**: [`Plain::lines`] compares what it
//! said last with the app now and returns the lines to write; the runner only writes them
//! ([`super::runner::run_plain`]).
//!
//! What is said, in this order, each only when it changed: the link and printer, the screen,
//! what the screen shows (review lines, the item's outcome, the chosen row), the focused field
//! (its number, label and value), problems with fields already left, the quote, the notice
//! line, and the keys that act now (from the same key table the handlers run).

use super::App;
use super::app::{JobPhase, Screen, Severity};
use super::event::PrinterStatus;
use super::screens::postage::QuoteState;
use crate::link::LinkState;

/// Most lines one update writes (a long review is cut, with a last line saying so).
pub const LINES_PER_UPDATE_MAX: usize = 64;

/// What was said last, fact by fact.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plain {
    said: Vec<(Fact, String)>,
}

/// The kinds of thing said, in the order they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fact {
    Status,
    Screen,
    Body,
    Focus,
    Problems,
    Quote,
    Notice,
    Keys,
}

impl Plain {
    pub fn new() -> Plain {
        Plain::default()
    }

    /// The lines to write now: every fact that changed since the last call (all of them the
    /// first time). A new screen says its body and keys again even if they read the same.
    pub fn lines(&mut self, app: &App) -> Vec<String> {
        let now = facts(app);
        let screen_now = now.iter().find(|(f, _)| *f == Fact::Screen);
        let screen_changed = self.get(Fact::Screen) != screen_now.map(|(_, t)| t.as_str());
        let mut out = Vec::new();
        for (fact, text) in &now {
            let again = screen_changed && matches!(fact, Fact::Body | Fact::Keys | Fact::Focus);
            let before = self.get(*fact).unwrap_or_default();
            if !again && before == text {
                continue;
            }
            // Of a fact of several lines, only the lines that are new are said.
            let old: Vec<&str> = if again {
                vec![]
            } else {
                before.lines().collect()
            };
            out.extend(
                text.lines()
                    .filter(|l| !old.contains(l))
                    .map(str::to_string),
            );
        }
        self.said = now;
        if out.len() > LINES_PER_UPDATE_MAX {
            out.truncate(LINES_PER_UPDATE_MAX - 1);
            out.push("(more not read out; press F1 for the keys)".into());
        }
        out
    }

    fn get(&self, fact: Fact) -> Option<&str> {
        self.said
            .iter()
            .find(|(f, _)| *f == fact)
            .map(|(_, t)| t.as_str())
    }
}

/// The screen's name, as said.
pub fn screen_name(app: &App) -> &'static str {
    match app.screen {
        Screen::Welcome if app.out_of_service => "Out of service",
        Screen::Welcome => "Welcome",
        Screen::SignIn => "Sign in",
        Screen::Home => "Home",
        Screen::Postage => "Postage label",
        Screen::ItemForm(k) => super::screens::printing::title_of(k),
        Screen::Review => "Review and confirm",
        Screen::Printing => "Printing",
        Screen::History => "History",
        Screen::Funds if app.funds.paying => "Pay by card",
        Screen::Funds => "Add funds",
        Screen::Settings => "Settings",
        Screen::Basket => match app.basket.phase {
            super::app::BasketPhase::Receipt(_) => "Receipt",
            super::app::BasketPhase::Paying => "Payment",
            _ => "Basket",
        },
        Screen::Day => "End of day",
        Screen::Refunds => "Refunds to decide",
    }
}

fn facts(app: &App) -> Vec<(Fact, String)> {
    vec![
        (Fact::Status, status(app)),
        (Fact::Screen, format!("Screen: {}.", screen_name(app))),
        (Fact::Body, body(app)),
        (Fact::Focus, focus(app)),
        (Fact::Problems, problems(app)),
        (Fact::Quote, quote(app)),
        (Fact::Notice, notice(app)),
        (Fact::Keys, keys(app)),
    ]
}

fn status(app: &App) -> String {
    let link = match app.link_state() {
        LinkState::Up => "link up",
        LinkState::Down => "link down",
        LinkState::Lapsed => "link lapsed",
        LinkState::Closed => "link closed",
    };
    let printer = match app.printer {
        PrinterStatus::Unknown => "printer not heard from".to_string(),
        PrinterStatus::Ready => "printer ready".to_string(),
        PrinterStatus::Fault(f) => format!("printer: {f}"),
    };
    format!("Status: {link}, {printer}.")
}

fn body(app: &App) -> String {
    let mut lines: Vec<String> = Vec::new();
    match app.screen {
        Screen::Welcome if !app.out_of_service => {
            lines.push("Buy postage here. Card payment only.".into())
        }
        Screen::Home => {
            if let Some(b) = app.balance {
                lines.push(format!("Balance {b}."));
            }
            let (label, _) = super::app::HOME_MENU[app.home.selected % super::app::HOME_MENU.len()];
            lines.push(format!(
                "Menu item {} of {}: {label}.",
                app.home.selected + 1,
                super::app::HOME_MENU.len()
            ));
        }
        Screen::Review => match &app.review.draft {
            Some(d) => {
                for (k, v) in &d.summary {
                    lines.push(format!("{k}: {v}."));
                }
                lines.push(format!("Total: {}.", d.amount));
                if let Some(reason) = app.print_block_reason() {
                    lines.push(reason);
                }
            }
            None => lines.push("Nothing to review.".into()),
        },
        Screen::Printing => match &app.job {
            Some(j) => {
                let what = format!("{} {}, {}", j.title, j.number_text(), j.amount);
                lines.push(match &j.phase {
                    JobPhase::Authorizing => format!("{what}: asking the vendor to sign it."),
                    // No progress ticks: one line while it prints.
                    JobPhase::Printing(_) => format!("{what}: printing."),
                    JobPhase::Done { message, .. } => format!("{what}: {message}"),
                });
            }
            None => lines.push("No item in progress.".into()),
        },
        Screen::History => {
            let rows = app.filtered_history();
            lines.push(format!("{} items listed.", rows.len()));
            if let Some(e) = rows.get(app.history_view.selected) {
                lines.push(format!(
                    "Row {} of {}: {} {}, {}, {}, {}.",
                    app.history_view.selected + 1,
                    rows.len(),
                    e.kind.name(),
                    e.number_text(),
                    e.summary,
                    e.amount,
                    e.state.label()
                ));
            }
        }
        Screen::Basket => {
            let b = &app.basket;
            if let super::app::BasketPhase::Receipt(r) = &b.phase {
                lines.extend(r.lines.iter().filter(|l| !l.is_empty()).cloned());
            } else {
                for (i, item) in b.items.iter().enumerate() {
                    let number = item
                        .number
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    lines.push(format!(
                        "Item {} of {}: {} {number} {}, {}: {}.",
                        i + 1,
                        b.items.len(),
                        item.title(),
                        item.summary(),
                        item.draft.amount,
                        item.outcome.words()
                    ));
                }
                lines.push(format!("Total {}.", b.listed_total()));
            }
        }
        Screen::Day => lines.extend(
            super::screens::day::lines(app)
                .iter()
                .map(|l| l.trim().to_string()),
        ),
        Screen::Refunds => {
            lines.push(format!(
                "{} refund requests waiting.",
                app.refunds.rows.len()
            ));
            if let Some(r) = app.refunds.rows.get(app.refunds.selected) {
                lines.push(format!(
                    "Chosen: {}, {}, {}.",
                    r.number, r.summary, r.amount
                ));
            }
        }
        Screen::Settings => {
            let theme = super::theme::BUILTIN
                .get(app.settings.theme_index)
                .copied()
                .unwrap_or("dark");
            lines.push(if app.settings.selected == 0 {
                format!("Theme: {theme}.")
            } else {
                format!("Printer: {}.", app.config.printer_name)
            });
        }
        _ => {}
    }
    lines.join("\n")
}

fn focus(app: &App) -> String {
    if let Some(p) = &app.pin_prompt {
        let n = p.display().chars().count();
        return format!("Supervisor PIN: {n} digits typed. Enter checks it, Esc cancels.");
    }
    let Some(form) = app.form_of(app.screen) else {
        return String::new();
    };
    let i = form.focus_index();
    let (Some(label), Some(value)) = (form.label(i), form.display(i)) else {
        return String::new();
    };
    let value = value.replace(['◀', '▶'], "");
    let value = value.trim();
    let mut line = format!(
        "Field {} of {}: {label}, {}.",
        i + 1,
        form_len(app),
        if value.is_empty() { "empty" } else { value }
    );
    if let Some(note) = form.note(i) {
        line.push_str(&format!(" Read as {note}."));
    }
    line
}

fn form_len(app: &App) -> usize {
    let Some(form) = app.form_of(app.screen) else {
        return 0;
    };
    (0..).take_while(|i| form.label(*i).is_some()).count()
}

/// Problems with fields other than the focused one (those already left), one line each.
fn problems(app: &App) -> String {
    let Some(form) = app.form_of(app.screen) else {
        return String::new();
    };
    let focus = form.focus_index();
    (0..form_len(app))
        .filter(|i| *i != focus)
        .filter_map(|i| {
            Some(format!(
                "Problem: {}: {}.",
                form.label(i)?,
                form.shown_error(i)?
            ))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn quote(app: &App) -> String {
    if app.screen != Screen::Postage {
        return String::new();
    }
    if let Some(words) = app.quote_waiting_for_link() {
        return words.to_string();
    }
    match &app.postage.quote {
        QuoteState::Incomplete => String::new(),
        QuoteState::Pending { .. } => "Quote: asking the vendor.".into(),
        QuoteState::Ready { amount, .. } => match &app.postage.price_note {
            Some(n) => format!("Quote: {amount}, {}.", n.words.trim_end_matches('.')),
            None => format!("Quote: {amount}."),
        },
        QuoteState::Failed { reason } => format!("No quote: {reason}"),
        QuoteState::Table {
            amount,
            table,
            vendor_failed,
            ..
        } => match vendor_failed {
            None => format!(
                "Price: {amount} from this counter's rate table ({table}); asking the vendor to confirm."
            ),
            Some(r) => format!(
                "Price: {amount} from this counter's rate table ({table}); the vendor's price is not in: {r}"
            ),
        },
    }
}

fn notice(app: &App) -> String {
    if let Some(left) = app.idle_countdown_s() {
        return format!(
            "Still there? The form clears in {left} seconds; press any key to keep it."
        );
    }
    match &app.notice {
        Some(n) => {
            let lead = match n.severity {
                Severity::Info => "Note",
                Severity::Ok => "Done",
                Severity::Warn => "Warning",
                Severity::Error => "Error",
            };
            format!("{lead}: {}", n.text)
        }
        None => String::new(),
    }
}

/// The keys that act now, from the key table the handlers run.
fn keys(app: &App) -> String {
    if app.pin_prompt.is_some() {
        return String::new();
    }
    let k = &app.config.keys;
    let mut parts: Vec<String> = app
        .hints()
        .into_iter()
        .map(|(a, words)| format!("{} {words}", k.hint(a)))
        .collect();
    if app.form_of(app.screen).is_some() {
        parts.push("type to fill the field".into());
    }
    format!("Keys: {}.", parts.join(", "))
}
