//! The key table is the one source of what a key does and what the hint line says, and mouse
//! clicks (synthetic crossterm mouse events over what the last frame drew) run the same
//! handlers: buttons on the hint line, list rows and form fields.

mod ui_support;

use crossterm::event::{KeyCode, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use frank::printer::streamer::{IndiciumPaper, JobOutcome};
use frank::ui::app::{HOME_MENU, PostageField, Screen};
use frank::ui::event::{Backend, Command, Event};
use frank::ui::hits::Target;
use frank::ui::keys::Action;
use frank::ui::screens::postage::{AddressPart, Party};
use frank::ui::{App, draw_with_hits};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ui_support::*;

/// Draws `app` at 80×24 and hands it where things were drawn, as the runner does.
fn frame(app: &mut App) {
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    app.handle(Event::Resize(80, 24));
    let mut hits = None;
    t.draw(|f| hits = Some(draw_with_hits(f, app))).unwrap();
    app.set_hits(hits.unwrap());
}

fn click_at(app: &mut App, x: u16, y: u16) -> Vec<Command> {
    app.handle(Event::Mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: x,
        row: y,
        modifiers: KeyModifiers::NONE,
    }))
}

/// Clicks the middle of where `target` was drawn in the last frame.
fn click(app: &mut App, target: Target) -> Vec<Command> {
    frame(app);
    let r = app
        .hits()
        .find(target)
        .unwrap_or_else(|| panic!("{target:?} not drawn on {:?}", app.screen));
    click_at(app, r.x + r.width / 2, r.y)
}

fn hinted(app: &App) -> Vec<Action> {
    app.hints().into_iter().map(|(a, _)| a).collect()
}

#[test]
fn a_key_acts_only_where_its_hint_is_shown() {
    let mut app = signed_in();
    let job = authorized_postage(&mut app);
    assert_eq!(app.screen, Screen::Printing);
    // While the item prints, no new item and no refund: neither hinted nor acting.
    assert!(
        !hinted(&app).contains(&Action::NewItem),
        "{:?}",
        app.hints()
    );
    assert!(!hinted(&app).contains(&Action::RequestRefund));
    ctrl(&mut app, 'n');
    assert_eq!(app.screen, Screen::Printing);
    backend(
        &mut app,
        Backend::PrintOutcome {
            job,
            outcome: JobOutcome::Completed {
                bytes_sent: 10,
                indicium: IndiciumPaper::Printed,
            },
        },
    );
    assert!(hinted(&app).contains(&Action::NewItem), "{:?}", app.hints());
    ctrl(&mut app, 'n');
    assert_eq!(app.screen, Screen::Postage);
    // Every hint of every table is a key the table runs: the hint line is drawn from it.
    let text = screen_text(&render(&app, 120, 40));
    for (a, words) in app.hints() {
        let key = app.config.keys.hint(a);
        assert!(
            text.contains(&format!("{key} {words}")),
            "{key} {words}: {text}"
        );
    }
}

#[test]
fn kiosk_hints_speak_to_customers() {
    let mut app = kiosk_app();
    link(&mut app, frank::link::LinkState::Up);
    backend(
        &mut app,
        Backend::SignedIn {
            office: "Main Street office".into(),
            clerk: "kiosk".into(),
            balance: cents(100),
        },
    );
    assert_eq!(app.hints()[0], (Action::Submit, "start"));
    assert!(!hinted(&app).contains(&Action::Home), "no office screens");
}

#[test]
fn clicking_a_home_row_opens_it_and_a_hint_is_a_button() {
    let mut app = signed_in();
    let row = HOME_MENU
        .iter()
        .position(|(_, s)| *s == Screen::History)
        .unwrap();
    let cmds = click(&mut app, Target::Row(row));
    assert_eq!(app.screen, Screen::History);
    assert_eq!(cmds, vec![Command::LoadHistory]);
    // The "home" hint is a button.
    click(&mut app, Target::Key(Action::Home));
    assert_eq!(app.screen, Screen::Home);
    // The help button opens the help; clicks then wait for a key.
    click(&mut app, Target::Key(Action::Help));
    assert!(app.show_help);
    frame(&mut app);
    assert!(app.hits().is_empty(), "the overlay covers the screen");
}

#[test]
fn clicking_a_field_focuses_it_and_typing_goes_there() {
    let mut app = signed_in();
    ctrl(&mut app, 'n');
    let zip = PostageField::Address(Party::Recipient, AddressPart::Zip);
    let i = app.postage.form.index_of(zip).unwrap();
    click(&mut app, Target::Field(i));
    assert_eq!(app.postage.form.focused().unwrap().key, zip);
    typ(&mut app, "02108");
    assert_eq!(app.postage.form.text(zip), "02108");
    // A click on nothing does nothing.
    frame(&mut app);
    let before = app.postage.form.focus;
    assert!(click_at(&mut app, 79, 0).is_empty());
    assert_eq!(app.postage.form.focus, before);
}

#[test]
fn clicking_the_review_confirm_line_confirms_once() {
    let mut app = signed_in();
    ctrl(&mut app, 'n');
    quoted_postage(&mut app, 540);
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Review);
    let cmds = click(&mut app, Target::Key(Action::Submit));
    assert!(matches!(&cmds[..], [Command::Authorize { .. }]), "{cmds:?}");
    assert_eq!(app.screen, Screen::Printing);
    // The same spot again: the draft is spent, nothing more is sent.
    frame(&mut app);
    assert!(click_at(&mut app, 10, 10).is_empty());
}

#[test]
fn clicks_are_ignored_while_the_terminal_is_too_small_or_a_question_is_up() {
    let mut app = signed_in();
    frame(&mut app);
    let r = app.hits().find(Target::Row(0)).unwrap();
    app.handle(Event::Resize(30, 10));
    assert!(click_at(&mut app, r.x + 1, r.y).is_empty());
    assert_eq!(app.screen, Screen::Home);
    app.handle(Event::Resize(80, 24));
    ctrl(&mut app, 'q'); // asks first
    assert!(click_at(&mut app, r.x + 1, r.y).is_empty());
    assert_eq!(app.screen, Screen::Home);
}
