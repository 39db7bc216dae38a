//! Issue 15 item 4 on screen: the vendor's piece number (meter + serial, as the label prints
//! it) is the item's one number on the printing screen, in history (searchable by it, newest
//! first, after a restart too) and in the refund request.

mod ui_support;

use crossterm::event::KeyCode;
use frank::indicium::ItemKind;
use frank::ui::app::{HistoryField, Screen};
use frank::ui::event::{Backend, Command, IssuedItem, ItemState, JobId, PieceNumber};
use ui_support::*;

fn n(serial: u64) -> PieceNumber {
    PieceNumber::new("FRK10000001", serial)
}

fn authorized(app: &mut frank::ui::App) -> JobId {
    let job = authorized_postage(app);
    backend(app, Backend::Numbered { job, number: n(9) });
    job
}

#[test]
fn the_label_number_is_the_number_on_screen_and_in_history() {
    let mut app = signed_in();
    let job = authorized(&mut app);
    let text = screen_text(&render(&app, 80, 24));
    assert!(
        text.contains("Postage label FRK10000001 #9 — $5.40"),
        "{text}"
    );
    assert!(!text.contains("#1 "), "no UI job number: {text}");
    assert_eq!(app.history[0].number, Some(n(9)));
    assert_eq!(app.history[0].job, Some(job));
}

fn restarted_history() -> frank::ui::App {
    let mut app = signed_in();
    let item = |serial, summary: &str, state| IssuedItem {
        number: n(serial),
        job: None,
        kind: ItemKind::Postage,
        date: "2026-12-05".into(),
        authorized_at_ms: 0,
        summary: summary.into(),
        amount: cents(540),
        state,
    };
    backend(
        &mut app,
        Backend::Items(vec![
            item(12, "to Austin TX 78701", ItemState::Printed),
            item(11, "to Boston MA 02108", ItemState::Printed),
            item(10, "to Denver CO 80202", ItemState::Voided),
        ]),
    );
    app.handle(frank::ui::Event::Key(crossterm::event::KeyEvent::new(
        KeyCode::F(3),
        crossterm::event::KeyModifiers::NONE,
    )));
    assert_eq!(app.screen, Screen::History);
    app
}

#[test]
fn history_after_a_restart_lists_the_vendor_numbers_newest_first_and_finds_them() {
    let mut app = restarted_history();
    let numbers: Vec<String> = app
        .filtered_history()
        .iter()
        .map(|e| e.number_text())
        .collect();
    assert_eq!(
        numbers,
        vec!["FRK10000001 #12", "FRK10000001 #11", "FRK10000001 #10"]
    );
    let text = screen_text(&render(&app, 80, 24));
    assert!(text.contains("FRK10000001 #11"), "{text}");
    assert!(!text.contains("922337"), "no internal job numbers: {text}");
    // Search by the number as printed on the label, or part of it.
    for q in ["FRK10000001 #11", "frk10000001#11", "#11"] {
        app.history_view
            .filter
            .get_mut(HistoryField::Search)
            .unwrap()
            .clear();
        typ(&mut app, q);
        let found: Vec<String> = app
            .filtered_history()
            .iter()
            .map(|e| e.number_text())
            .collect();
        assert_eq!(found, vec!["FRK10000001 #11"], "{q}");
    }
}

#[test]
fn a_refund_of_an_earlier_runs_item_is_asked_by_its_number() {
    let mut app = restarted_history();
    press(&mut app, KeyCode::Down); // FRK10000001 #11
    assert!(ctrl(&mut app, 'r').is_empty(), "asked first");
    let asked = app.notice.clone().unwrap().text;
    assert!(
        asked.contains("Request a refund for FRK10000001 #11"),
        "{asked}"
    );
    let cmds = typ(&mut app, "y");
    assert_eq!(cmds, vec![Command::RequestRefundByNumber { number: n(11) }]);
    assert!(
        app.notice
            .unwrap()
            .text
            .contains("Refund requested for FRK10000001 #11")
    );
}
