//! Issue 15 items 1–3 on the counter screen: a basket of mixed kinds with one failing
//! mid-basket, the tender (cash with change), the receipt's content, the end-of-day screen
//! from the vendor's report and the supervisor's refund decisions (asked first); snapshots at
//! 80×24 and 120×40 with style checks on the cells that carry meaning.

mod ui_support;

use crossterm::event::KeyCode;
use frank::counter::jobbook::Settlement;
use frank::indicium::ItemKind;
use frank::printer::streamer::{IndiciumPaper, JobOutcome, PrinterFault};
use frank::ui::App;
use frank::ui::app::{BasketPhase, ItemOutcome, Screen, TenderField};
use frank::ui::event::{
    Backend, BasketId, Command, DayReport, JobId, PieceNumber, PrintoutKind, RefundAwaiting,
    ReportScope, SettlePhase, Tender, TenderKind, TenderLine, Totals,
};
use frank::ui::theme::Role;
use ui_support::*;

fn n(serial: u64) -> PieceNumber {
    PieceNumber::new("FRK10000001", serial)
}

fn key(app: &mut App, code: KeyCode) -> Vec<Command> {
    app.handle(key_ev(code, crossterm::event::KeyModifiers::NONE))
}

/// A postage label with a $5.40 quote, reviewed and added to the basket.
fn add_postage(app: &mut App) {
    ctrl(app, 'n');
    quoted_postage(app, 540);
    press(app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Review);
    assert!(ctrl(app, 'b').is_empty(), "adding sends nothing");
    assert_eq!(app.screen, Screen::Basket);
}

/// A $12.50 coupon from the home menu, reviewed and added.
fn add_coupon(app: &mut App) {
    key(app, KeyCode::F(2));
    for _ in 0..3 {
        press(app, KeyCode::Down);
    }
    press(app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::ItemForm(ItemKind::Coupon));
    typ(app, "Free coffee");
    press(app, KeyCode::Tab);
    typ(app, "12.50");
    press(app, KeyCode::Tab);
    typ(app, "2099-01-31");
    press(app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Review, "{:?}", app.notice);
    ctrl(app, 'b');
}

/// Three items: postage, coupon, postage.
fn basket3() -> App {
    let mut app = signed_in();
    add_postage(&mut app);
    add_coupon(&mut app);
    add_postage(&mut app);
    assert_eq!(app.basket.items.len(), 3);
    app
}

fn authorize_of(cmds: &[Command]) -> JobId {
    match cmds {
        [Command::Authorize { job, .. }] => *job,
        other => panic!("expected one Authorize, got {other:?}"),
    }
}

/// The backend's reports for one item printing and committing.
fn print_ok(app: &mut App, job: JobId, serial: u64, amount: u64) -> Vec<Command> {
    let cmds = backend(app, Backend::Authorized { job });
    assert_eq!(cmds, vec![Command::Print { job }]);
    backend(
        app,
        Backend::Numbered {
            job,
            number: n(serial),
        },
    );
    // The next item starts as soon as this one's print ended.
    let mut out = backend(
        app,
        Backend::PrintOutcome {
            job,
            outcome: JobOutcome::Completed {
                bytes_sent: 100,
                indicium: IndiciumPaper::Printed,
            },
        },
    );
    out.extend(backend(
        app,
        Backend::Settlement {
            job,
            piece: Some(serial),
            assumed_on_paper: false,
            amount: cents(amount),
            settlement: Settlement::Commit,
            phase: SettlePhase::Sending,
        },
    ));
    out
}

/// Prints the three: the coupon (second) fails on paper out before its indicium; the others
/// go on. Returns the app on the payment step.
fn run_with_second_failing() -> App {
    let mut app = basket3();
    let text = screen_text(&render(&app, 80, 24));
    assert!(text.contains("Total $23.30 for 3 items"), "{text}");
    let first = authorize_of(&press(&mut app, KeyCode::Enter));
    assert_eq!(app.basket.phase, BasketPhase::Running);
    assert_eq!(app.screen, Screen::Basket, "stays on the basket");
    let second = authorize_of(&print_ok(&mut app, first, 21, 540));
    assert_eq!(app.basket.items[0].outcome, ItemOutcome::Charged);
    // The second stops on paper out before its indicium: voided, and the third still goes.
    backend(&mut app, Backend::Authorized { job: second });
    backend(
        &mut app,
        Backend::Numbered {
            job: second,
            number: n(22),
        },
    );
    let mut cmds = backend(
        &mut app,
        Backend::PrintOutcome {
            job: second,
            outcome: JobOutcome::Faulted {
                fault: PrinterFault::PaperOut,
                bytes_sent: 10,
                indicium: IndiciumPaper::NotSent,
            },
        },
    );
    cmds.extend(backend(
        &mut app,
        Backend::Settlement {
            job: second,
            piece: Some(22),
            assumed_on_paper: false,
            amount: cents(1250),
            settlement: Settlement::Void,
            phase: SettlePhase::Sending,
        },
    ));
    assert!(matches!(
        app.basket.items[1].outcome,
        ItemOutcome::Voided(_)
    ));
    let third = authorize_of(&cmds);
    let cmds = print_ok(&mut app, third, 23, 540);
    assert!(cmds.is_empty(), "{cmds:?}");
    assert_eq!(app.basket.phase, BasketPhase::Paying);
    assert_eq!(app.basket.charged_total(), cents(1080));
    app
}

/// The vendor's answer to the basket's `RecordTender`: items #21 and #23, $10.80.
fn tender_recorded(app: &mut App, tender: Tender) -> Vec<Command> {
    let basket = app.basket.id;
    backend(
        app,
        Backend::TenderRecorded {
            basket,
            pieces: vec![n(21), n(23)],
            tender,
            total: cents(1080),
            recorded_at_ms: 1_796_000_000_000,
        },
    )
}

#[test]
fn a_basket_prints_in_order_and_a_failing_item_is_voided_while_the_rest_go_on() {
    let app = run_with_second_failing();
    let notice = app.notice.clone().unwrap().text;
    assert!(notice.contains("1 item not charged"), "{notice}");
    assert!(notice.contains("$10.80"), "{notice}");
    let text = screen_text(&render(&app, 120, 40));
    assert!(text.contains("FRK10000001 #22"), "{text}");
    assert!(text.contains("voided"), "{text}");
    assert!(text.contains("To pay $10.80"), "{text}");
    // Each item printed once.
    for i in &app.basket.items {
        assert_eq!(app.print_count(i.job.unwrap()), 1);
    }
}

#[test]
fn cash_with_change_is_recorded_and_the_receipt_says_everything() {
    let mut app = run_with_second_failing();
    // Too little cash is refused with the reason; nothing sent.
    press(&mut app, KeyCode::Tab);
    typ(&mut app, "10");
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    assert!(
        app.notice
            .clone()
            .unwrap()
            .text
            .contains("less than the total")
    );
    typ(&mut app, "0"); // $100
    let text = screen_text(&render(&app, 80, 24));
    assert!(text.contains("Change due $89.20"), "{text}");
    let cmds = press(&mut app, KeyCode::Enter);
    let tender = Tender {
        kind: TenderKind::Cash,
        amount_tendered: cents(10_000),
        change: cents(8920),
    };
    assert_eq!(
        cmds,
        vec![Command::RecordTender {
            basket: app.basket.id,
            pieces: vec![n(21), n(23)],
            tender,
        }]
    );
    assert!(press(&mut app, KeyCode::Enter).is_empty(), "sent once");
    let basket = app.basket.id;
    let cmds = tender_recorded(&mut app, tender);
    let BasketPhase::Receipt(r) = &app.basket.phase else {
        panic!("{:?}", app.basket.phase);
    };
    // The receipt prints at once, as shown, kept under the charged items' numbers.
    assert_eq!(
        cmds,
        vec![Command::PrintReceipt {
            basket,
            pieces: vec![n(21), n(23)],
            lines: r.lines.clone(),
        }]
    );
    let text = r.lines.join("\n");
    // The office's name is the vendor's (from the sign-in), not a config guess.
    assert_eq!(r.lines[0], "Main Street office");
    for want in [
        "Clerk alice, 2026-",
        "UTC",
        "FRK10000001 #21  Postage label",
        "To Charles Babbage, Boston, MA 02108-1234",
        "FRK10000001 #22  Coupon",
        "not charged",
        "voided: printer: paper out",
        "FRK10000001 #23  Postage label",
        "$10.80",
        "Paid by cash",
        "$100.00",
        "Change",
        "$89.20",
        "refund",
    ] {
        assert!(
            text.contains(want),
            "{want:?} missing from the receipt:\n{text}"
        );
    }
    assert!(
        app.notice
            .clone()
            .unwrap()
            .text
            .contains("Change due: $89.20")
    );
    snap_both("receipt", &app);
    // Next customer: an empty basket with a new id.
    let id = app.basket.id;
    press(&mut app, KeyCode::Enter);
    assert!(app.basket.items.is_empty());
    assert_eq!(app.basket.id, BasketId(id.0 + 1));
    assert_eq!(app.screen, Screen::Home);
}

#[test]
fn card_tender_is_the_total_and_a_refused_tender_says_why() {
    let mut app = run_with_second_failing();
    press(&mut app, KeyCode::Right); // card
    assert!(app.basket.tender.get(TenderField::Tendered).unwrap().hidden);
    let cmds = press(&mut app, KeyCode::Enter);
    let Command::RecordTender { tender, .. } = &cmds[0] else {
        panic!("{cmds:?}")
    };
    assert_eq!(tender.kind, TenderKind::Card);
    assert_eq!(tender.amount_tendered, cents(1080));
    assert_eq!(tender.change, cents(0));
    let basket = app.basket.id;
    backend(
        &mut app,
        Backend::TenderFailed {
            basket,
            reason: "this basket was already paid".into(),
        },
    );
    let t = app.notice.clone().unwrap().text;
    assert!(
        t.contains("not recorded: this basket was already paid"),
        "{t}"
    );
    assert_eq!(app.basket.phase, BasketPhase::Paying, "can be tried again");
}

#[test]
fn an_item_the_vendor_refuses_is_not_issued_and_the_basket_goes_on() {
    let mut app = basket3();
    let first = authorize_of(&press(&mut app, KeyCode::Enter));
    let cmds = backend(
        &mut app,
        Backend::AuthorizeFailed {
            job: first,
            reason: "the balance is too low".into(),
        },
    );
    assert!(
        matches!(&app.basket.items[0].outcome, ItemOutcome::NotIssued(w) if w.contains("balance is too low"))
    );
    authorize_of(&cmds);
}

#[test]
fn removing_an_item_and_the_basket_snapshots() {
    let mut app = basket3();
    snap_both("basket", &app);
    let buf = render(&app, 80, 24);
    // The chosen row is in the selection style.
    let y = (0..24)
        .find(|y| {
            (0..80)
                .map(|x| buf.backend().buffer()[(x, *y)].symbol().to_string())
                .collect::<String>()
                .contains("▶")
        })
        .unwrap();
    let sel = app.config.theme.style(Role::Selection);
    assert_eq!(buf.backend().buffer()[(6, y)].modifier, sel.add_modifier);
    ctrl(&mut app, 'd');
    assert_eq!(app.basket.items.len(), 2);
    assert!(
        app.notice
            .clone()
            .unwrap()
            .text
            .contains("Removed Postage label ($5.40)")
    );
}

fn report() -> DayReport {
    let t = |count, amount_cents| Totals {
        count,
        amount_cents,
    };
    DayReport {
        day: "2026-12-05".into(),
        timezone: "UTC".into(),
        from_ms: 0,
        to_ms: 0,
        account: Some(1),
        scope: ReportScope::Clerk("alice".into()),
        lines: vec![frank::ui::event::ReportLine {
            kind: "postage".into(),
            class: Some("first-class".into()),
            title: "First-Class Mail".into(),
            count: 2,
            amount_cents: 1080,
        }],
        issued: t(2, 1080),
        in_progress: t(0, 0),
        voided: t(1, 1250),
        unsettled: t(0, 0),
        unsettled_items: vec![],
        refunds_awaiting: t(0, 0),
        refunds_approved: t(0, 0),
        refunds_rejected: t(0, 0),
        net_charged_cents: 1080,
        tenders: vec![TenderLine {
            kind: TenderKind::Cash,
            count: 1,
            tendered_cents: 10_000,
            change_cents: 8920,
            received_cents: 1080,
        }],
        received_cents: 1080,
        cash_expected_cents: 1080,
        tendered_items: t(2, 1080),
        untendered_items: t(0, 0),
        truncated: false,
    }
}

#[test]
fn end_of_day_asks_the_vendor_for_the_chosen_day_and_shows_its_figures() {
    let mut app = signed_in();
    let today = frank::indicium::kinds::Day::parse("today", "2026-12-05").unwrap();
    app.handle(frank::ui::Event::Today(today));
    key(&mut app, KeyCode::F(2));
    for _ in 0..7 {
        press(&mut app, KeyCode::Down);
    }
    let cmds = press(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Day);
    assert_eq!(
        cmds,
        vec![Command::LoadDayReport {
            day: today,
            scope: frank::ui::event::DayScope::Clerk
        }]
    );
    backend(&mut app, Backend::DayReport(Box::new(report())));
    let text = screen_text(&render(&app, 120, 40));
    for want in [
        "Cash expected in drawer",
        "$10.80",
        "First-Class Mail",
        "Voided (not charged)",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    snap_both("day", &app);
    // The day before, then this terminal's.
    let cmds = press(&mut app, KeyCode::Left);
    assert!(
        matches!(&cmds[..], [Command::LoadDayReport { day, .. }] if day.to_string() == "2026-12-04")
    );
    let cmds = press(&mut app, KeyCode::Tab);
    assert!(matches!(
        &cmds[..],
        [Command::LoadDayReport {
            scope: frank::ui::event::DayScope::Terminal,
            ..
        }]
    ));
    // No report of tomorrow.
    press(&mut app, KeyCode::Right);
    assert!(press(&mut app, KeyCode::Right).is_empty());
}

#[test]
fn a_supervisor_decides_refunds_by_number_after_confirming() {
    let mut app = signed_in();
    key(&mut app, KeyCode::F(2));
    for _ in 0..8 {
        press(&mut app, KeyCode::Down);
    }
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        vec![Command::LoadRefundsAwaiting]
    );
    assert_eq!(app.screen, Screen::Refunds);
    let row = |serial, summary: &str| RefundAwaiting {
        number: n(serial),
        kind: ItemKind::Postage,
        summary: summary.into(),
        amount: cents(540),
        authorized_at_ms: 0,
        clerk: Some("bob".into()),
        terminal: Some(3),
    };
    backend(
        &mut app,
        Backend::RefundsAwaiting(vec![
            row(7, "to Boston MA 02108"),
            row(9, "to Austin TX 78701"),
        ]),
    );
    snap_both("refunds", &app);
    press(&mut app, KeyCode::Down);
    assert!(key(&mut app, KeyCode::F(7)).is_empty(), "asked first");
    assert!(
        app.notice
            .clone()
            .unwrap()
            .text
            .contains("Approve the refund of FRK10000001 #9")
    );
    assert!(
        press(&mut app, KeyCode::Esc).is_empty(),
        "any other key: no"
    );
    key(&mut app, KeyCode::F(8));
    let cmds = typ(&mut app, "y");
    assert_eq!(
        cmds,
        vec![Command::DecideRefund {
            number: n(9),
            approve: false
        }]
    );
    backend(
        &mut app,
        Backend::RefundDecided {
            number: n(9),
            approved: false,
        },
    );
    assert_eq!(app.refunds.rows.len(), 1);
    backend(
        &mut app,
        Backend::RefundsAwaitingFailed {
            reason: "Only a supervisor can decide refunds.".into(),
        },
    );
    assert!(app.notice.unwrap().text.contains("Only a supervisor"));
}

fn snap_both(name: &str, app: &App) {
    for (w, h) in [(80, 24), (120, 40)] {
        let t = render(app, w, h);
        insta::assert_snapshot!(format!("ui_{name}_{w}x{h}"), t.backend());
    }
}

/// Printouts from the screens: the receipt again from its screen, a copy from history by the
/// item's number, the close-out under the office's and the clerk's names; what the printer
/// said comes back in words (printed, or why not and which key tries again).
#[test]
fn receipts_and_the_close_out_print_and_their_outcome_is_told() {
    let mut app = run_with_second_failing();
    press(&mut app, KeyCode::Right); // card
    press(&mut app, KeyCode::Enter);
    let tender = Tender {
        kind: TenderKind::Card,
        amount_tendered: cents(1080),
        change: cents(0),
    };
    let cmds = tender_recorded(&mut app, tender);
    assert!(
        matches!(&cmds[..], [Command::PrintReceipt { .. }]),
        "{cmds:?}"
    );
    // The same answer again (a retry) neither prints nor changes anything.
    assert!(tender_recorded(&mut app, tender).is_empty());
    // Paper out: the clerk reads why and the key that tries again; the receipt stays on screen.
    backend(
        &mut app,
        Backend::PrintoutDone {
            kind: PrintoutKind::Receipt,
            result: Err("printer: paper out".into()),
        },
    );
    let t = app.notice.clone().unwrap().text;
    assert_eq!(
        t,
        "The receipt did not print: printer: paper out. Press Ctrl-P to try again."
    );
    snap_both("receipt_not_printed", &app);
    // The failure is in the error style (and says so in words with its ✗).
    let buf = render(&app, 80, 24);
    let err = app.config.theme.style(Role::AlertError);
    let cell = &buf.backend().buffer()[(0, 22)];
    assert_eq!(cell.symbol(), "✗");
    assert_eq!(Some(cell.fg), err.fg);
    let again = ctrl(&mut app, 'p');
    assert_eq!(again, cmds, "the same receipt, printed again");
    backend(
        &mut app,
        Backend::PrintoutDone {
            kind: PrintoutKind::Receipt,
            result: Ok(()),
        },
    );
    assert_eq!(app.notice.clone().unwrap().text, "The receipt printed.");

    // History: a copy of the chosen item's receipt, by its number.
    press(&mut app, KeyCode::Enter); // next customer
    let cmds = key(&mut app, KeyCode::F(3));
    assert_eq!(cmds, vec![Command::LoadHistory]);
    backend(
        &mut app,
        Backend::Items(vec![frank::ui::event::IssuedItem {
            number: n(23),
            job: None,
            kind: ItemKind::Postage,
            date: "2026-12-05".into(),
            authorized_at_ms: 0,
            summary: "to Boston".into(),
            amount: cents(540),
            state: frank::ui::event::ItemState::Printed,
        }]),
    );
    typ(&mut app, "FRK10000001 #23"); // searched by the number on the label
    assert_eq!(
        ctrl(&mut app, 'p'),
        vec![Command::ReprintReceipt { number: n(23) }]
    );

    // The close-out: the office's name as the vendor knows it, who printed it, the figures.
    let today = frank::indicium::kinds::Day::parse("today", "2026-12-05").unwrap();
    app.handle(frank::ui::Event::Today(today));
    key(&mut app, KeyCode::F(2));
    app.home.selected = 0; // the menu remembers the coupon chosen earlier
    for _ in 0..7 {
        press(&mut app, KeyCode::Down);
    }
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Day, "{:?}", app.notice);
    assert!(
        ctrl(&mut app, 'p').is_empty(),
        "nothing to print before the answer"
    );
    backend(&mut app, Backend::DayReport(Box::new(report())));
    let cmds = ctrl(&mut app, 'p');
    let [Command::PrintDayReport { lines }] = &cmds[..] else {
        panic!("{cmds:?}")
    };
    assert_eq!(lines[0], "Main Street office");
    assert_eq!(lines[1], "Printed by clerk alice");
    assert_eq!(lines[3..], report().text_lines()[..]);
}
