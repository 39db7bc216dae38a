//! Flow tests of the counter app state machine (sans-I/O: events in, commands out).
//!
//! Long on purpose: one flow per test; shared steps live in `tests/ui_support`.

mod ui_support;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers};
use frank::counter::jobbook::Settlement;
use frank::indicium::{Item, MailClass};
use frank::link::LinkState;
use frank::printer::streamer::{AbortCause, IndiciumPaper, JobOutcome, PrinterFault, Progress};
use frank::ui::App;
use frank::ui::app::{
    FundsField, ItemField, JobPhase, PostageField, QuoteState, Screen, SignInField,
};
use frank::ui::event::{
    Backend, Command, Event, FundMethod, IssuedItem, ItemState, JobId, PieceNumber, PrinterStatus,
    RefundState, SettlePhase,
};
use frank::ui::keys::{Action, KeyBindings};
use frank::ui::screens::postage::{AddressPart, Party};
use frank::ui::theme::{Role, Theme};
use ratatui::style::{Color, Modifier};
use ui_support::*;

/// Signed in, on a filled postage form with a $5.40 quote in.
fn quoted() -> frank::ui::App {
    let mut app = signed_in();
    ctrl(&mut app, 'n');
    assert_eq!(app.screen, Screen::Postage);
    let request = quoted_postage(&mut app, 540);
    assert_eq!(
        app.postage.quote,
        QuoteState::Ready {
            request,
            amount: cents(540)
        }
    );
    app
}

/// Quote → review → confirm; returns the job id from the Authorize command.
fn authorize(app: &mut frank::ui::App) -> JobId {
    press(app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Review, "notice: {:?}", app.notice);
    let cmds = press(app, KeyCode::Enter);
    match &cmds[..] {
        [
            Command::Authorize {
                job, item, amount, ..
            },
        ] => {
            assert_eq!(*amount, cents(540));
            assert!(
                matches!(**item, Item::Postage(ref p) if p.class == MailClass::FirstClass && p.weight.get() == 3)
            );
            *job
        }
        other => panic!("expected one Authorize, got {other:?}"),
    }
}

#[test]
fn sign_in_postage_quote_review_print_emits_one_print() {
    let mut app = quoted();
    let job = authorize(&mut app);
    assert_eq!(app.screen, Screen::Printing);
    let cmds = backend(&mut app, Backend::Authorized { job });
    assert_eq!(cmds, vec![Command::Print { job }]);
    backend(
        &mut app,
        Backend::PrintProgress {
            job,
            progress: Progress {
                bytes_sent: 512,
                bytes_total: 2048,
            },
        },
    );
    let phase = &app.job.as_ref().unwrap().phase;
    assert_eq!(
        *phase,
        JobPhase::Printing(Progress {
            bytes_sent: 512,
            bytes_total: 2048
        })
    );
    let text = screen_text(&render(&app, 80, 24));
    assert!(text.contains("25% sent to the printer"), "{text}");
    assert!(
        !text.contains("bytes"),
        "a clerk reads a percentage: {text}"
    );
    let cmds = backend(
        &mut app,
        Backend::PrintOutcome {
            job,
            outcome: JobOutcome::Completed {
                bytes_sent: 2048,
                indicium: IndiciumPaper::Printed,
            },
        },
    );
    assert!(
        cmds.is_empty(),
        "the UI sends no money step itself: {cmds:?}"
    );
    // Not "charged" until the vendor acknowledged the commit.
    assert_eq!(app.item_state(job), Some(ItemState::Settling));
    settle(&mut app, job, Settlement::Commit, SettlePhase::Sending);
    let text = screen_text(&render(&app, 80, 24));
    assert!(text.contains("settling with the vendor"), "{text}");
    assert!(!text.contains("charged"), "{text}");
    settle(&mut app, job, Settlement::Commit, SettlePhase::Done);
    let text = screen_text(&render(&app, 80, 24));
    assert!(text.contains("$5.40 charged"), "{text}");
    assert_eq!(app.item_state(job), Some(ItemState::Printed));
}

fn settle(app: &mut App, job: JobId, settlement: Settlement, phase: SettlePhase) -> Vec<Command> {
    backend(
        app,
        Backend::Settlement {
            job,
            piece: Some(1),
            assumed_on_paper: false,
            amount: cents(540),
            settlement,
            phase,
        },
    )
}

#[test]
fn quote_request_carries_the_form_and_stale_answers_are_dropped() {
    let mut app = signed_in();
    ctrl(&mut app, 'n');
    let cmds = fill_postage(&mut app);
    let (request, from, to) = cmds
        .iter()
        .find_map(|c| match c {
            Command::RequestQuote {
                request,
                from_zip,
                to_zip,
                weight_oz: 3,
                class: MailClass::FirstClass,
            } => Some((*request, from_zip.clone(), to_zip.clone())),
            _ => None,
        })
        .expect("quote requested");
    assert_eq!((from.as_str(), to.as_str()), ("94105", "02108-1234"));
    // Change the class: a new request; the old answer no longer applies.
    let cmds = press(&mut app, KeyCode::Right);
    let newer = quote_request(&cmds).expect("class change asks again");
    assert!(newer > request);
    answer_quote(&mut app, request, 1);
    assert_eq!(app.postage.quote, QuoteState::Pending { request: newer });
    answer_quote(&mut app, newer, 995);
    assert_eq!(
        app.postage.quote,
        QuoteState::Ready {
            request: newer,
            amount: cents(995)
        }
    );
}

#[test]
fn address_fields_are_validated_per_field_as_you_type() {
    let mut app = signed_in();
    ctrl(&mut app, 'n');
    for _ in 0..4 {
        press(&mut app, KeyCode::Tab);
    }
    typ(&mut app, "C1");
    let state = app
        .postage
        .form
        .get(PostageField::Address(Party::Sender, AddressPart::State))
        .unwrap();
    assert!(
        state.shown_error().is_some(),
        "bad state flagged while typing"
    );
    press(&mut app, KeyCode::Tab);
    typ(&mut app, "9410");
    assert!(
        app.postage
            .form
            .get(PostageField::Address(Party::Sender, AddressPart::Zip))
            .unwrap()
            .shown_error()
            .is_some()
    );
    typ(&mut app, "5");
    assert_eq!(
        app.postage
            .form
            .get(PostageField::Address(Party::Sender, AddressPart::Zip))
            .unwrap()
            .shown_error(),
        None
    );
    // Untouched fields are not flagged yet.
    assert_eq!(
        app.postage
            .form
            .get(PostageField::Address(Party::Recipient, AddressPart::Name))
            .unwrap()
            .shown_error(),
        None
    );
    // Submitting names the first bad field.
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Postage);
    let notice = app.notice.clone().unwrap().text;
    assert!(notice.contains("Fix the sender's Name"), "{notice}");
}

#[test]
fn lapse_during_printing_voids_and_says_how_much_returned() {
    let mut app = quoted();
    let job = authorize(&mut app);
    backend(&mut app, Backend::Authorized { job });
    link(&mut app, LinkState::Lapsed);
    let cmds = backend(
        &mut app,
        Backend::PrintOutcome {
            job,
            outcome: JobOutcome::Aborted {
                bytes_sent: 100,
                indicium: IndiciumPaper::NotSent,
                cancel_confirmed: true,
                void_printed: true,
                cause: AbortCause::Link,
            },
        },
    );
    assert!(cmds.is_empty(), "the backend's job book settles: {cmds:?}");
    settle(&mut app, job, Settlement::Void, SettlePhase::Sending);
    let text = screen_text(&render(&app, 80, 24));
    assert!(text.contains("voiding it"), "{text}");
    settle(&mut app, job, Settlement::Void, SettlePhase::Done);
    let text = screen_text(&render(&app, 80, 24));
    assert!(
        text.contains("Link lost — label voided, $5.40 returned to balance"),
        "{text}"
    );
    assert_eq!(app.item_state(job), Some(ItemState::Voided));
}

#[test]
fn lapse_after_indicium_complete_requests_refund() {
    let mut app = quoted();
    let job = authorize(&mut app);
    backend(&mut app, Backend::Authorized { job });
    let cmds = backend(
        &mut app,
        Backend::PrintOutcome {
            job,
            outcome: JobOutcome::Aborted {
                bytes_sent: 1900,
                indicium: IndiciumPaper::Printed,
                cancel_confirmed: false,
                void_printed: false,
                cause: AbortCause::Link,
            },
        },
    );
    assert!(cmds.is_empty(), "{cmds:?}");
    settle(
        &mut app,
        job,
        Settlement::VoidReachedPrinter,
        SettlePhase::Done,
    );
    let text = screen_text(&render(&app, 120, 40));
    assert!(
        text.contains("Link lost after the indicium printed — $5.40 charged, refund requested"),
        "{text}"
    );
    assert_eq!(
        app.item_state(job),
        Some(ItemState::Refund(RefundState::Requested))
    );
}

#[test]
fn printer_fault_before_indicium_voids() {
    let mut app = quoted();
    let job = authorize(&mut app);
    backend(&mut app, Backend::Authorized { job });
    let cmds = backend(
        &mut app,
        Backend::PrintOutcome {
            job,
            outcome: JobOutcome::Faulted {
                fault: PrinterFault::PaperOut,
                bytes_sent: 10,
                indicium: IndiciumPaper::NotSent,
            },
        },
    );
    assert!(cmds.is_empty(), "{cmds:?}");
    settle(&mut app, job, Settlement::Void, SettlePhase::Done);
    let msg = match &app.job.as_ref().unwrap().phase {
        JobPhase::Done { message, .. } => message.clone(),
        p => panic!("{p:?}"),
    };
    assert!(
        msg.contains("paper out") && msg.contains("$5.40 returned"),
        "{msg}"
    );
}

#[test]
fn quitting_with_items_still_settling_says_what_happens_and_asks_again() {
    let mut app = signed_in();
    backend(
        &mut app,
        Backend::OpenJobs {
            open: 2,
            from_last_run: 0,
        },
    );
    let cmds = ctrl(&mut app, 'q');
    assert!(cmds.is_empty(), "{cmds:?}");
    let notice = app.notice.clone().unwrap().text;
    assert!(
        notice.contains("2 items not settled with the vendor yet")
            && notice.contains("settled at the next start"),
        "{notice}"
    );
    let text = screen_text(&render(&app, 120, 24));
    assert!(text.contains("⧗ 2 settling"), "{text}");
    assert_eq!(ctrl(&mut app, 'q'), vec![Command::Quit]);
}

#[test]
fn items_left_by_the_last_run_are_announced_until_settled() {
    let mut app = signed_in();
    backend(
        &mut app,
        Backend::OpenJobs {
            open: 1,
            from_last_run: 1,
        },
    );
    let notice = app.notice.clone().unwrap().text;
    assert!(
        notice.contains("Settling 1 item from the last run"),
        "{notice}"
    );
    backend(
        &mut app,
        Backend::OpenJobs {
            open: 0,
            from_last_run: 0,
        },
    );
    let notice = app.notice.clone().unwrap().text;
    assert!(notice.contains("ready for new items"), "{notice}");
    assert!(ctrl(&mut app, 'q').is_empty(), "quitting is asked first");
    assert_eq!(ctrl(&mut app, 'q'), vec![Command::Quit]);
}

#[test]
fn printing_is_disabled_while_link_is_not_up_with_reason_on_screen() {
    let mut app = quoted();
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Review);
    link(&mut app, LinkState::Lapsed);
    let cmds = press(&mut app, KeyCode::Enter);
    assert!(cmds.is_empty(), "no Authorize while lapsed: {cmds:?}");
    assert_eq!(app.screen, Screen::Review);
    let text = screen_text(&render(&app, 80, 24));
    assert!(
        text.contains("Printing disabled: the link to the vendor lapsed"),
        "{text}"
    );
    // Back up: confirm works again.
    link(&mut app, LinkState::Up);
    let cmds = press(&mut app, KeyCode::Enter);
    assert!(matches!(&cmds[..], [Command::Authorize { .. }]));
}

#[test]
fn authorized_while_link_down_voids_instead_of_printing() {
    let mut app = quoted();
    let job = authorize(&mut app);
    link(&mut app, LinkState::Closed);
    let cmds = backend(&mut app, Backend::Authorized { job });
    assert_eq!(cmds, vec![Command::Void { job }]);
    assert_eq!(app.print_count(job), 0);
}

#[test]
fn an_issued_item_is_never_printed_again() {
    let mut app = quoted();
    let job = authorize(&mut app);
    assert_eq!(
        backend(&mut app, Backend::Authorized { job }),
        vec![Command::Print { job }]
    );
    // A repeated authorization does not print twice.
    assert!(backend(&mut app, Backend::Authorized { job }).is_empty());
    print_completed(&mut app, job);
    settle(&mut app, job, Settlement::Commit, SettlePhase::Done);
    assert!(backend(&mut app, Backend::Authorized { job }).is_empty());
    // The draft was consumed: the review has nothing to confirm, and no key on the outcome
    // screen prints.
    assert!(app.review.draft.is_none());
    for code in [
        KeyCode::Enter,
        KeyCode::Char('p'),
        KeyCode::F(1),
        KeyCode::Esc,
    ] {
        let cmds = press(&mut app, code);
        assert!(
            !cmds
                .iter()
                .any(|c| matches!(c, Command::Print { .. } | Command::Authorize { .. })),
            "{cmds:?}"
        );
    }
    assert_eq!(app.print_count(job), 1);
    // Only a refund can follow, from history.
    press(&mut app, KeyCode::F(3));
    assert_eq!(app.screen, Screen::History);
    assert!(ctrl(&mut app, 'r').is_empty(), "a refund is asked first");
    let cmds = press(&mut app, KeyCode::Char('y'));
    assert_eq!(cmds, vec![Command::RequestRefund { job }]);
    assert_eq!(
        app.item_state(job),
        Some(ItemState::Refund(RefundState::Requested))
    );
    // Asking twice does nothing more.
    assert!(ctrl(&mut app, 'r').is_empty());
    backend(
        &mut app,
        Backend::RefundChanged {
            job,
            state: RefundState::Refunded,
        },
    );
    assert_eq!(
        app.item_state(job),
        Some(ItemState::Refund(RefundState::Refunded))
    );
}

fn entry(job: u64, kind: frank::indicium::ItemKind, date: &str, summary: &str) -> IssuedItem {
    IssuedItem {
        number: PieceNumber::new("FRK10000001", job),
        job: Some(JobId(job)),
        kind,
        date: date.into(),
        authorized_at_ms: 0,
        summary: summary.into(),
        amount: cents(100 * job),
        state: ItemState::Printed,
    }
}

#[test]
fn history_filters_by_search_date_and_kind() {
    use frank::indicium::ItemKind as K;
    let mut app = signed_in();
    let cmds = press(&mut app, KeyCode::F(3));
    assert_eq!(cmds, vec![Command::LoadHistory]);
    backend(
        &mut app,
        Backend::Items(vec![
            entry(1, K::Postage, "2026-11-01", "to Boston"),
            entry(2, K::Ticket, "2026-11-20", "Opera"),
            entry(3, K::Postage, "2026-10-05", "to Austin"),
        ]),
    );
    assert_eq!(app.filtered_history().len(), 3);
    typ(&mut app, "boston");
    let jobs: Vec<u64> = app
        .filtered_history()
        .iter()
        .map(|e| e.job.unwrap().0)
        .collect();
    assert_eq!(jobs, vec![1]);
    for _ in 0..6 {
        press(&mut app, KeyCode::Backspace);
    }
    press(&mut app, KeyCode::Tab);
    typ(&mut app, "2026-11");
    assert_eq!(app.filtered_history().len(), 2);
    press(&mut app, KeyCode::Tab);
    press(&mut app, KeyCode::Right); // kind: postage
    let jobs: Vec<u64> = app
        .filtered_history()
        .iter()
        .map(|e| e.job.unwrap().0)
        .collect();
    assert_eq!(jobs, vec![1]);
}

#[test]
fn kiosk_idle_timeout_clears_input_and_returns_to_welcome() {
    let mut app = kiosk_app();
    link(&mut app, LinkState::Up);
    assert_eq!(app.screen, Screen::Welcome);
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Postage);
    typ(&mut app, "Ada");
    app.handle(Event::Tick { elapsed_ms: 30_000 });
    assert_eq!(app.screen, Screen::Postage, "not idle long enough yet");
    typ(&mut app, " L"); // a key resets the idle clock
    app.handle(Event::Tick { elapsed_ms: 59_000 });
    assert_eq!(app.screen, Screen::Postage);
    app.handle(Event::Tick { elapsed_ms: 2_000 });
    assert_eq!(app.screen, Screen::Welcome);
    assert!(
        app.postage
            .form
            .fields
            .iter()
            .all(|f| f.text_value().is_empty() || f.key == PostageField::Class)
    );
    assert!(app.review.draft.is_none());
}

#[test]
fn kiosk_has_no_other_screens_and_quits_only_with_the_pin() {
    let mut app = kiosk_app();
    link(&mut app, LinkState::Up); // in service
    for code in [KeyCode::F(2), KeyCode::F(3), KeyCode::F(4), KeyCode::F(5)] {
        press(&mut app, code);
        assert_eq!(app.screen, Screen::Welcome);
    }
    for c in ['z', '\\'] {
        assert!(ctrl(&mut app, c).is_empty());
        assert!(!app.quit);
    }
    assert!(
        ctrl(&mut app, 'c').is_empty(),
        "Ctrl-C only opens the PIN prompt"
    );
    assert!(app.pin_prompt.is_some());
    typ(&mut app, "1111");
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    assert!(!app.quit);
    typ(&mut app, "2468");
    assert_eq!(press(&mut app, KeyCode::Enter), vec![Command::Quit]);
    assert!(app.quit);
}

#[test]
fn kiosk_pays_by_card_then_authorizes() {
    let mut app = kiosk_app();
    link(&mut app, LinkState::Up);
    press(&mut app, KeyCode::Enter);
    quoted_postage(&mut app, 540);
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Review);
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Funds);
    assert_eq!(app.funds.form.text(FundsField::Method), "card");
    assert_eq!(app.funds.form.text(FundsField::Amount), "5.40");
    assert_eq!(app.funds.form.focused().unwrap().key, FundsField::Card);
    press(&mut app, KeyCode::BackTab);
    typ(&mut app, "9"); // the item's price is not editable
    assert_eq!(app.funds.form.text(FundsField::Amount), "5.40");
    press(&mut app, KeyCode::Tab);
    typ(&mut app, "4242424242424241"); // wrong check digit
    press(&mut app, KeyCode::Tab);
    typ(&mut app, "04/29");
    press(&mut app, KeyCode::Tab);
    typ(&mut app, "123");
    assert!(
        press(&mut app, KeyCode::Enter).is_empty(),
        "bad card number is refused"
    );
    assert!(app.notice.as_ref().unwrap().text.contains("Card number"));
    press(&mut app, KeyCode::BackTab);
    press(&mut app, KeyCode::BackTab);
    press(&mut app, KeyCode::Backspace);
    typ(&mut app, "2");
    // The card is charged first; nothing is authorized until the payment is approved.
    let cmds = press(&mut app, KeyCode::Enter);
    match &cmds[..] {
        [
            Command::Fund {
                method: FundMethod::Card { .. },
                amount,
            },
        ] => assert_eq!(*amount, cents(540)),
        other => panic!("expected Fund alone, got {other:?}"),
    }
    assert!(app.funds.pay_pending);
    assert_eq!(app.screen, Screen::Funds);
    assert!(
        press(&mut app, KeyCode::Enter).is_empty(),
        "no second charge"
    );
    // Declined: no item; the form stays for another card, the price still fixed.
    let cmds = backend(
        &mut app,
        Backend::FundResult {
            declined: true,
            ok: false,
            message: "Not added: payment declined by the issuer".into(),
        },
    );
    assert!(cmds.is_empty(), "a declined card issued {cmds:?}");
    assert_eq!(app.screen, Screen::Funds);
    assert!(app.notice.as_ref().unwrap().text.contains("declined"));
    assert_eq!(app.funds.form.text(FundsField::Amount), "5.40");
    assert_eq!(app.funds.form.focused().unwrap().key, FundsField::Card);
    let cmds = pay_by_test_card(&mut app);
    assert!(matches!(&cmds[..], [Command::Fund { .. }]), "{cmds:?}");
    // Approved: now the item is authorized, once.
    let cmds = funded_540(&mut app);
    match &cmds[..] {
        [Command::Authorize { amount, .. }] => assert_eq!(*amount, cents(540)),
        other => panic!("expected Authorize, got {other:?}"),
    }
    assert_eq!(app.screen, Screen::Printing);
    assert!(!app.funds.pay_pending);
}

#[test]
fn card_number_is_masked_and_never_in_debug() {
    let mut app = signed_in();
    press(&mut app, KeyCode::F(4));
    assert_eq!(app.screen, Screen::Funds);
    press(&mut app, KeyCode::Tab);
    typ(&mut app, "25.00");
    press(&mut app, KeyCode::Tab);
    typ(&mut app, "4242424242424242");
    let text = screen_text(&render(&app, 80, 24));
    assert!(!text.contains("424242424242"), "{text}");
    assert!(text.contains("4242"));
    assert!(!format!("{app:?}").contains("4242424242424242"));
    press(&mut app, KeyCode::Tab);
    typ(&mut app, "04/29");
    press(&mut app, KeyCode::Tab);
    typ(&mut app, "123");
    let cmds = press(&mut app, KeyCode::Enter);
    let [Command::Fund { method, amount }] = &cmds[..] else {
        panic!("{cmds:?}")
    };
    assert_eq!(*amount, cents(2500));
    let dbg = format!("{cmds:?}");
    assert!(
        !dbg.contains("4242424242424242") && !dbg.contains("123,"),
        "{dbg}"
    );
    assert!(dbg.contains("ending 4242"), "{dbg}");
    let _ = method;
    // The form forgets the number once sent.
    assert!(!format!("{app:?}").contains("4242424242424242"));
}

#[test]
fn password_never_in_debug_of_sign_in_command() {
    let mut app = clerk_app();
    typ(&mut app, "bob");
    press(&mut app, KeyCode::Tab);
    typ(&mut app, "hunter2");
    assert!(!format!("{app:?}").contains("hunter2"));
    let cmds = press(&mut app, KeyCode::Enter);
    assert!(!format!("{cmds:?}").contains("hunter2"));
    let [Command::SignIn { password, .. }] = &cmds[..] else {
        panic!()
    };
    assert_eq!(password.expose(), "hunter2");
}

#[test]
fn only_key_presses_act() {
    let mut app = clerk_app();
    for kind in [KeyEventKind::Release, KeyEventKind::Repeat] {
        app.handle(Event::Key(KeyEvent {
            code: KeyCode::Char('x'),
            modifiers: KeyModifiers::NONE,
            kind,
            state: KeyEventState::NONE,
        }));
    }
    assert_eq!(app.sign_in.form.text(SignInField::Clerk), "");
}

#[test]
fn key_bindings_override_from_toml_and_help_follows() {
    let kb = KeyBindings::with_overrides("help = [\"f9\"]\nquit = [\"ctrl-x\"]").unwrap();
    let f9 = KeyEvent::new(KeyCode::F(9), KeyModifiers::NONE);
    assert_eq!(kb.action(&f9), Some(Action::Help));
    assert_eq!(
        kb.action(&KeyEvent::new(KeyCode::F(1), KeyModifiers::NONE)),
        None
    );
    assert_eq!(
        kb.action(&KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
        Some(Action::Submit)
    );
    let rows = kb.help_rows();
    assert!(rows.iter().any(|(k, d)| k == "F9" && d.contains("help")));
    assert!(
        rows.iter()
            .any(|(k, d)| k == "Ctrl-X" && d.contains("quit"))
    );
    let err = KeyBindings::with_overrides("jump = [\"f2\"]").unwrap_err();
    assert!(err.contains("unknown action \"jump\""), "{err}");
    let err = KeyBindings::with_overrides("help = [\"q\"]").unwrap_err();
    assert!(err.contains("bare letters"), "{err}");
}

#[test]
fn theme_user_file_overrides_only_its_keys_and_no_color_strips_colour() {
    let base = Theme::builtin("dark", false).unwrap();
    let t = Theme::with_overrides("dark", Some("title = \"bold magenta\""), false).unwrap();
    assert_eq!(t.style(Role::Title).fg, Some(Color::Magenta));
    assert_eq!(t.style(Role::Muted), base.style(Role::Muted));
    let nc = Theme::builtin("dark", true).unwrap();
    for role in Role::ALL {
        assert_eq!(nc.style(role).fg, None, "{role:?}");
        assert_eq!(nc.style(role).bg, None, "{role:?}");
    }
    assert!(
        nc.style(Role::Selection)
            .add_modifier
            .contains(Modifier::REVERSED)
    );
    for name in frank::ui::theme::BUILTIN {
        Theme::builtin(name, false).unwrap();
    }
    let err = Theme::with_overrides("dark", Some("danger = \"red\""), false).unwrap_err();
    assert!(err.contains("unknown key \"danger\""), "{err}");
    let err = Theme::with_overrides("dark", Some("title = \"sparkly\""), false).unwrap_err();
    assert!(err.contains("title") && err.contains("sparkly"), "{err}");
}

#[test]
fn item_forms_build_items_with_face_value() {
    let mut app = signed_in();
    press(&mut app, KeyCode::Down); // Ticket
    press(&mut app, KeyCode::Down); // Check
    press(&mut app, KeyCode::Enter);
    assert_eq!(
        app.screen,
        Screen::ItemForm(frank::indicium::ItemKind::Check)
    );
    for v in ["ACME Corp", "12.50", "1001", ""] {
        typ(&mut app, v);
        press(&mut app, KeyCode::Tab);
    }
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Review, "{:?}", app.notice);
    assert_eq!(app.review.draft.as_ref().unwrap().amount, cents(1250));
    let cmds = press(&mut app, KeyCode::Enter);
    assert!(matches!(&cmds[..], [Command::Authorize { amount, .. }] if *amount == cents(1250)));
}

#[test]
fn no_navigation_away_while_an_item_prints() {
    let mut app = quoted();
    let job = authorize(&mut app);
    backend(&mut app, Backend::Authorized { job });
    for code in [KeyCode::F(2), KeyCode::F(3), KeyCode::F(4), KeyCode::F(5)] {
        press(&mut app, code);
        assert_eq!(app.screen, Screen::Printing);
    }
    assert!(ctrl(&mut app, 'q').is_empty(), "no quitting mid-print");
    assert!(!app.quit);
    backend(
        &mut app,
        Backend::PrintOutcome {
            job,
            outcome: JobOutcome::Completed {
                bytes_sent: 1,
                indicium: IndiciumPaper::Printed,
            },
        },
    );
    press(&mut app, KeyCode::F(3));
    assert_eq!(app.screen, Screen::History);
}

#[test]
fn supervisor_pin_hash_is_not_in_debug() {
    let app = kiosk_app();
    let dbg = format!("{:?}", app.config);
    assert!(dbg.contains("PinHash(<redacted>)"), "{dbg}");
}

#[test]
fn a_printer_that_cannot_confirm_printing_says_so_on_the_refund() {
    let mut app = quoted();
    let job = authorize(&mut app);
    backend(&mut app, Backend::Authorized { job });
    backend(
        &mut app,
        Backend::PrintOutcome {
            job,
            outcome: JobOutcome::Aborted {
                bytes_sent: 1900,
                indicium: IndiciumPaper::AssumedPrinted,
                cancel_confirmed: false,
                void_printed: false,
                cause: AbortCause::Link,
            },
        },
    );
    for phase in [SettlePhase::Sending, SettlePhase::Done] {
        backend(
            &mut app,
            Backend::Settlement {
                job,
                piece: Some(1),
                assumed_on_paper: phase == SettlePhase::Sending,
                amount: cents(540),
                settlement: Settlement::VoidReachedPrinter,
                phase,
            },
        );
    }
    let text = screen_text(&render(&app, 160, 40));
    assert!(
        text.contains("this printer cannot confirm what it printed"),
        "{text}"
    );
}

#[test]
fn keys_do_not_act_on_a_screen_hidden_by_the_enlarge_message() {
    let mut app = quoted();
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Review);
    app.handle(Event::Resize(39, 11));
    let text = screen_text(&render(&app, 39, 11));
    assert!(text.contains("Enlarge"), "{text}");
    for code in [
        KeyCode::Enter,
        KeyCode::Esc,
        KeyCode::Char('x'),
        KeyCode::F(3),
    ] {
        let cmds = press(&mut app, code);
        assert!(
            cmds.is_empty(),
            "{code:?} acted on the hidden review: {cmds:?}"
        );
        assert_eq!(app.screen, Screen::Review);
    }
    assert!(app.review.draft.is_some(), "the hidden draft was spent");
    // Help still opens and closes.
    press(&mut app, KeyCode::F(1));
    assert!(app.show_help);
    press(&mut app, KeyCode::F(1));
    assert!(!app.show_help);
    // Large enough again: Enter confirms.
    app.handle(Event::Resize(80, 24));
    let cmds = press(&mut app, KeyCode::Enter);
    assert!(matches!(&cmds[..], [Command::Authorize { .. }]), "{cmds:?}");
}

#[test]
fn quit_still_works_while_the_terminal_is_too_small() {
    let mut app = signed_in();
    app.handle(Event::Resize(30, 8));
    ctrl(&mut app, 'q');
    let cmds = ctrl(&mut app, 'q');
    assert_eq!(cmds, vec![Command::Quit]);
}

#[test]
fn quit_asks_first_and_any_other_key_stays() {
    let mut app = signed_in();
    assert!(ctrl(&mut app, 'q').is_empty(), "Ctrl-Q alone must not quit");
    assert!(!app.quit);
    let notice = app.notice.clone().unwrap().text;
    assert!(
        notice.contains("Quit the counter?") && notice.contains("Ctrl-Q again quits"),
        "{notice}"
    );
    // n (or any key) answers no, and is not typed anywhere.
    assert!(press(&mut app, KeyCode::Char('n')).is_empty());
    assert!(!app.quit);
    assert_eq!(app.screen, Screen::Home);
    assert!(ctrl(&mut app, 'q').is_empty());
    assert_eq!(press(&mut app, KeyCode::Char('y')), vec![Command::Quit]);
    assert!(app.quit);
}

#[test]
fn quit_while_printing_says_so_and_does_not_ask() {
    let mut app = quoted();
    let job = authorize(&mut app);
    backend(&mut app, Backend::Authorized { job });
    assert!(ctrl(&mut app, 'q').is_empty());
    assert!(app.confirm.is_none());
    let notice = app.notice.clone().unwrap().text;
    assert!(notice.contains("An item is printing"), "{notice}");
    assert!(ctrl(&mut app, 'q').is_empty(), "no quitting mid-print");
}

#[test]
fn a_refund_is_sent_only_after_it_is_confirmed() {
    let mut app = quoted();
    let job = authorize(&mut app);
    backend(&mut app, Backend::Authorized { job });
    print_completed(&mut app, job);
    settle(&mut app, job, Settlement::Commit, SettlePhase::Done);
    // On the outcome screen: Ctrl-R asks; Esc answers no and nothing is sent.
    assert!(ctrl(&mut app, 'r').is_empty());
    let notice = app.notice.clone().unwrap().text;
    assert!(notice.contains("Request a refund for #1"), "{notice}");
    assert!(press(&mut app, KeyCode::Esc).is_empty());
    assert_eq!(app.item_state(job), Some(ItemState::Printed));
    assert_eq!(
        app.screen,
        Screen::Printing,
        "the answer did not act as Back"
    );
    // In history: Ctrl-R asks, Ctrl-R again sends.
    press(&mut app, KeyCode::F(3));
    assert!(ctrl(&mut app, 'r').is_empty());
    assert_eq!(ctrl(&mut app, 'r'), vec![Command::RequestRefund { job }]);
    assert_eq!(
        app.item_state(job),
        Some(ItemState::Refund(RefundState::Requested))
    );
}

#[test]
fn history_and_recent_items_list_newest_first() {
    use frank::indicium::ItemKind as K;
    let mut app = quoted();
    let job = authorize(&mut app);
    backend(&mut app, Backend::Authorized { job });
    // The vendor lists its rows newest first and does not know this run's item yet.
    backend(
        &mut app,
        Backend::Items(vec![
            entry(103, K::Postage, "2026-11-03", "to Chicago"),
            entry(102, K::Ticket, "2026-11-02", "Opera"),
            entry(101, K::Postage, "2026-11-01", "to Boston"),
        ]),
    );
    let jobs: Vec<u64> = app
        .filtered_history()
        .iter()
        .map(|e| e.job.unwrap().0)
        .collect();
    assert_eq!(jobs, vec![job.0, 103, 102, 101]);
    press(&mut app, KeyCode::Esc); // nothing: the item prints
    print_completed(&mut app, job);
    settle(&mut app, job, Settlement::Commit, SettlePhase::Done);
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.screen, Screen::Home);
    let text = screen_text(&render(&app, 120, 40));
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle}: {text}"))
    };
    assert!(
        at("to Chicago") < at("Opera") && at("Opera") < at("to Boston"),
        "{text}"
    );
    assert!(at(&format!("{job} ")) < at("to Chicago"), "{text}");
    press(&mut app, KeyCode::F(3));
    let text = screen_text(&render(&app, 120, 40));
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle}: {text}"))
    };
    assert!(
        at("to Chicago") < at("Opera") && at("Opera") < at("to Boston"),
        "{text}"
    );
}

#[test]
fn kiosk_shows_no_office_data_to_the_public() {
    let mut app = kiosk_app();
    link(&mut app, LinkState::Up);
    backend(
        &mut app,
        Backend::SignedIn {
            office: "Main Street office".into(),
            clerk: "kiosk-clerk".into(),
            balance: cents(123_456),
        },
    );
    backend(&mut app, Backend::Balance(cents(654_321)));
    for (w, h) in [(120, 40), (80, 24), (40, 12)] {
        let text = screen_text(&render(&app, w, h));
        for office in [
            "kiosk-clerk",
            "$1,234.56",
            "$1234.56",
            "$6,543.21",
            "$6543.21",
            "balance",
            "clerk",
        ] {
            assert!(!text.contains(office), "{office} at {w}x{h}:\n{text}");
        }
        assert!(text.contains("LINK UP"), "{text}");
    }
}

#[test]
fn kiosk_counts_down_before_the_idle_timeout_and_a_key_keeps_the_form() {
    let mut app = kiosk_app(); // idle timeout 60 s
    link(&mut app, LinkState::Up);
    assert_eq!(
        app.idle_countdown_s(),
        None,
        "nothing to clear on the welcome screen"
    );
    press(&mut app, KeyCode::Enter);
    typ(&mut app, "Ada");
    app.handle(Event::Tick { elapsed_ms: 44_000 });
    assert_eq!(app.idle_countdown_s(), None, "16 s left: no countdown yet");
    let text = screen_text(&render(&app, 80, 24));
    assert!(!text.contains("Still there?"), "{text}");
    app.handle(Event::Tick { elapsed_ms: 3_000 });
    assert_eq!(app.idle_countdown_s(), Some(13));
    let text = screen_text(&render(&app, 80, 24));
    assert!(
        text.contains("Still there? The form clears in 13 s"),
        "{text}"
    );
    // A key keeps the form: the countdown goes, and the key does nothing else.
    let cmds = press(&mut app, KeyCode::Esc);
    assert!(cmds.is_empty());
    assert_eq!(app.screen, Screen::Postage, "the key acted on the form");
    assert_eq!(
        app.postage
            .form
            .text(PostageField::Address(Party::Sender, AddressPart::Name)),
        "Ada"
    );
    assert_eq!(app.idle_countdown_s(), None);
    let text = screen_text(&render(&app, 80, 24));
    assert!(!text.contains("Still there?"), "{text}");
    // Left alone: the countdown runs out and the form is cleared.
    app.handle(Event::Tick { elapsed_ms: 50_000 });
    assert_eq!(app.idle_countdown_s(), Some(10));
    app.handle(Event::Tick { elapsed_ms: 10_000 });
    assert_eq!(app.screen, Screen::Welcome);
    assert_eq!(
        app.postage
            .form
            .text(PostageField::Address(Party::Sender, AddressPart::Name)),
        ""
    );
}

#[test]
fn kiosk_pin_lock_lifts_after_its_stated_time() {
    let mut app = kiosk_app();
    // In service (an out-of-service kiosk shows staff the reason after the PIN instead).
    link(&mut app, LinkState::Up);
    for _ in 0..5 {
        ctrl(&mut app, 'c');
        typ(&mut app, "1111");
        press(&mut app, KeyCode::Enter);
    }
    assert!(app.pin_prompt.is_none());
    let notice = app.notice.clone().unwrap().text;
    assert!(notice.contains("locked for 5 min"), "{notice}");
    // Locked: Ctrl-C says how long is left instead of opening the prompt.
    app.handle(Event::Tick { elapsed_ms: 48_000 });
    ctrl(&mut app, 'c');
    assert!(app.pin_prompt.is_none());
    let notice = app.notice.clone().unwrap().text;
    assert!(notice.contains("try again in 4 min 12 s"), "{notice}");
    // The right PIN cannot be tried while locked.
    typ(&mut app, "2468");
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    assert!(!app.quit);
    app.handle(Event::Tick {
        elapsed_ms: 252_000,
    });
    ctrl(&mut app, 'c');
    assert!(
        app.pin_prompt.is_some(),
        "the lock did not lift after 5 min"
    );
    typ(&mut app, "2468");
    assert_eq!(press(&mut app, KeyCode::Enter), vec![Command::Quit]);
}

/// Kiosk: postage filled, quoted at $5.40 and on the card payment screen.
fn kiosk_paying() -> App {
    let mut app = kiosk_app();
    link(&mut app, LinkState::Up);
    backend(&mut app, Backend::PrinterStatus(PrinterStatus::Ready));
    press(&mut app, KeyCode::Enter);
    quoted_postage(&mut app, 540);
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Review);
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Funds);
    let cmds = pay_by_test_card(&mut app);
    assert!(matches!(&cmds[..], [Command::Fund { .. }]), "{cmds:?}");
    app
}

#[test]
fn kiosk_tells_customers_what_to_do_in_their_words() {
    let office = [
        "top-up",
        "minimum",
        "Not added",
        "Fix the printer",
        "available",
        "insufficient",
        "register",
    ];
    let shown = |app: &App| {
        let text = screen_text(&render(app, 120, 40));
        for w in office {
            assert!(
                !text.contains(w),
                "office words {w:?} on the kiosk:\n{text}"
            );
        }
        text
    };
    // A payment the vendor's limits refuse.
    let mut app = kiosk_paying();
    backend(
        &mut app,
        Backend::FundResult {
            declined: false,
            ok: false,
            message: "Not added: top-up $5.40 is below the minimum of $10.00".into(),
        },
    );
    let text = shown(&app);
    assert!(
        text.contains("This kiosk cannot take that payment; please ask at the counter."),
        "{text}"
    );
    // A declined card: another card may do.
    let mut app = kiosk_paying();
    backend(
        &mut app,
        Backend::FundResult {
            declined: true,
            ok: false,
            message: "Not added: payment declined by the issuer; use another card or account"
                .into(),
        },
    );
    let text = shown(&app);
    assert!(
        text.contains("Your card was declined. Please try another card."),
        "{text}"
    );
    // Paid, then the vendor refuses the item with the account's figures in its reason.
    let mut app = kiosk_paying();
    let cmds = funded_540(&mut app);
    let [Command::Authorize { job, .. }] = &cmds[..] else {
        panic!("{cmds:?}");
    };
    backend(
        &mut app,
        Backend::AuthorizeFailed {
            job: *job,
            reason: "insufficient funds: $5.40 requested, $1.00 available".into(),
        },
    );
    let text = shown(&app);
    assert!(text.contains("please ask staff for a refund"), "{text}");
    // The printer fails: printing is refused in customer words.
    let mut app = kiosk_app();
    link(&mut app, LinkState::Up);
    backend(
        &mut app,
        Backend::PrinterStatus(PrinterStatus::Fault(PrinterFault::PaperOut)),
    );
    // The welcome screen is out of service (issue 15 item 6), in customer words.
    let text = shown(&app);
    assert!(
        text.contains("OUT OF SERVICE") && text.contains("ask staff"),
        "{text}"
    );
    assert!(!text.contains("Fix the printer"), "{text}");
}

#[test]
fn a_long_message_wraps_instead_of_being_cut() {
    let mut app = signed_in();
    let long = "The vendor refused the request because the terminal's clock is more than five \
                minutes off; set the clock of this computer to the right time, then sign in \
                again and try once more.";
    backend(&mut app, Backend::Error(long.into()));
    let text = screen_text(&render(&app, 120, 40));
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("then sign in again and try once more."),
        "{text}"
    );
    assert!(!text.contains('…'), "{text}");
}

#[test]
fn a_fix_notice_goes_once_its_field_is_valid_and_names_it_in_words() {
    let mut app = signed_in();
    ctrl(&mut app, 'n');
    fill_postage(&mut app);
    // Make the recipient's ZIP wrong, then try to review.
    for _ in 0..2 {
        press(&mut app, KeyCode::BackTab);
    }
    assert_eq!(
        app.postage.form.focused().unwrap().key,
        PostageField::Address(Party::Recipient, AddressPart::Zip)
    );
    for _ in 0..10 {
        press(&mut app, KeyCode::Backspace);
    }
    typ(&mut app, "021");
    press(&mut app, KeyCode::Enter);
    let notice = app.notice.clone().expect("a fix notice").text;
    assert!(notice.starts_with("Fix the recipient's ZIP:"), "{notice}");
    assert!(
        !notice.contains("r_zip") && !notice.contains("to zip"),
        "{notice}"
    );
    // Still wrong: the notice stays.
    typ(&mut app, "0");
    assert!(app.notice.is_some());
    // Valid: the old error leaves the bottom line.
    typ(&mut app, "8");
    assert_eq!(
        app.postage
            .form
            .text(PostageField::Address(Party::Recipient, AddressPart::Zip)),
        "02108"
    );
    assert!(app.notice.is_none(), "{:?}", app.notice);
    let text = screen_text(&render(&app, 120, 40));
    assert!(!text.contains("Fix the recipient"), "{text}");
}

// ---- issue 15: input as people type it ----

/// On the funds form with the amount typed; focus on the card number.
fn funds_card(app: &mut App) {
    press(app, KeyCode::F(4));
    assert_eq!(app.screen, Screen::Funds);
    press(app, KeyCode::Tab);
    typ(app, "25.00");
    press(app, KeyCode::Tab);
}

#[test]
fn a_card_number_typed_in_groups_is_accepted_and_sent_as_digits() {
    for typed in ["4242 4242 4242 4242", "4242-4242-4242-4242"] {
        let mut app = signed_in();
        funds_card(&mut app);
        typ(&mut app, typed);
        assert_eq!(
            app.funds.form.get(FundsField::Card).unwrap().error,
            None,
            "{typed:?} refused"
        );
        press(&mut app, KeyCode::Tab);
        typ(&mut app, "04/29");
        press(&mut app, KeyCode::Tab);
        typ(&mut app, "123");
        let cmds = press(&mut app, KeyCode::Enter);
        let [Command::Fund { method, .. }] = &cmds[..] else {
            panic!("{typed:?}: {cmds:?} {:?}", app.notice)
        };
        let FundMethod::Card { number, .. } = method else {
            panic!("{method:?}")
        };
        assert_eq!(number.expose(), "4242424242424242", "{typed:?}");
    }
    // The check digit is still checked, and letters are still refused.
    for (typed, says) in [
        ("4242 4242 4242 4241", "check digit"),
        ("4242 4242 4242 424x", "spaces and dashes are fine"),
    ] {
        let mut app = signed_in();
        funds_card(&mut app);
        typ(&mut app, typed);
        let e = app.funds.form.get(FundsField::Card).unwrap().error.clone();
        assert!(
            e.as_deref().is_some_and(|e| e.contains(says)),
            "{typed}: {e:?}"
        );
    }
}

/// The error the item form shows under `field`, if any.
fn item_error(app: &App, field: ItemField) -> Option<String> {
    app.item_form.form.get(field).unwrap().error.clone()
}

fn assert_in_the_past(e: Option<String>) {
    assert!(
        e.as_deref().is_some_and(|e| e.contains("in the past")),
        "{e:?}"
    );
}

/// Signed in, on the postage form filled, focus back on the weight with it emptied.
fn postage_at_weight(app: &mut App) -> Vec<Command> {
    ctrl(app, 'n');
    let mut cmds = fill_postage(app);
    press(app, KeyCode::BackTab);
    assert_eq!(
        app.postage.form.focused().unwrap().key,
        PostageField::Weight
    );
    for _ in 0..5 {
        cmds.extend(press(app, KeyCode::Backspace));
    }
    cmds
}

fn last_quote_weight(cmds: &[Command]) -> Option<u16> {
    cmds.iter().rev().find_map(|c| match c {
        Command::RequestQuote { weight_oz, .. } => Some(*weight_oz),
        _ => None,
    })
}

#[test]
fn a_weight_with_decimals_or_pounds_is_rounded_up_and_shown() {
    let mut app = signed_in();
    postage_at_weight(&mut app);
    let cmds = typ(&mut app, "3.5");
    assert_eq!(
        app.postage.form.get(PostageField::Weight).unwrap().error,
        None
    );
    assert_eq!(last_quote_weight(&cmds), Some(4), "quoted for 4 oz");
    let text = screen_text(&render(&app, 120, 40));
    assert!(text.contains("rounded up to 4 oz"), "{text}");
    let request = quote_request(&cmds).unwrap();
    answer_quote(&mut app, request, 540);
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Review, "{:?}", app.notice);
    let text = screen_text(&render(&app, 120, 40));
    assert!(text.contains("4 oz (rounded up from 3.5)"), "{text}");
    let cmds = press(&mut app, KeyCode::Enter);
    let [Command::Authorize { item, .. }] = &cmds[..] else {
        panic!("{cmds:?}")
    };
    assert!(matches!(**item, Item::Postage(ref p) if p.weight.get() == 4));

    let mut app = signed_in();
    postage_at_weight(&mut app);
    let cmds = typ(&mut app, "1 lb 4 oz");
    assert_eq!(last_quote_weight(&cmds), Some(20));
    let text = screen_text(&render(&app, 120, 40));
    assert!(text.contains("= 20 oz"), "{text}");
}

#[test]
fn mail_classes_are_shown_in_words() {
    let mut app = quoted();
    // The class is the field after the weight.
    press(&mut app, KeyCode::Right);
    press(&mut app, KeyCode::Right);
    let text = screen_text(&render(&app, 120, 40));
    assert!(text.contains("Priority Mail Express"), "{text}");
    assert!(!text.contains("priority-express"), "{text}");
}

fn day(y: i32, m: u8, d: u8) -> frank::indicium::kinds::Day {
    frank::indicium::kinds::Day::from_ymd("today", y, m, d).unwrap()
}

/// Signed in, on the coupon form with today set to 2026-04-10.
fn coupon_form() -> App {
    let mut app = signed_in();
    app.handle(Event::Today(day(2026, 4, 10)));
    for _ in 0..3 {
        press(&mut app, KeyCode::Down);
    }
    press(&mut app, KeyCode::Enter);
    assert_eq!(
        app.screen,
        Screen::ItemForm(frank::indicium::ItemKind::Coupon)
    );
    typ(&mut app, "Free coffee");
    press(&mut app, KeyCode::Tab);
    typ(&mut app, "5.00");
    press(&mut app, KeyCode::Tab);
    app
}

#[test]
fn dates_are_read_in_common_forms_and_shown_as_read() {
    for (typed, iso) in [
        ("2026-05-03", "2026-05-03"),
        ("05/03/2026", "2026-05-03"),
        ("5/3/2026", "2026-05-03"),
        ("03.05.2026", "2026-05-03"),
    ] {
        let mut app = coupon_form();
        typ(&mut app, typed);
        assert_eq!(
            app.item_form.form.get(ItemField::Expiry).unwrap().error,
            None,
            "{typed}"
        );
        let text = screen_text(&render(&app, 80, 24));
        assert!(text.contains("Sun 3 May 2026"), "{typed}: {text}");
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.screen, Screen::Review, "{typed}: {:?}", app.notice);
        let text = screen_text(&render(&app, 120, 40));
        assert!(text.contains(iso), "{typed}: {text}");
        let cmds = press(&mut app, KeyCode::Enter);
        let [Command::Authorize { item, .. }] = &cmds[..] else {
            panic!("{cmds:?}")
        };
        assert!(
            matches!(**item, Item::Coupon(ref c) if c.expiry == day(2026, 5, 3)),
            "{typed}"
        );
    }
}

#[test]
fn past_event_dates_and_expiries_are_refused_before_review() {
    let mut app = coupon_form();
    typ(&mut app, "04/09/2026");
    assert_in_the_past(item_error(&app, ItemField::Expiry));
    press(&mut app, KeyCode::Enter);
    assert_ne!(app.screen, Screen::Review);
    let notice = app.notice.clone().unwrap().text;
    assert!(notice.contains("today or later"), "{notice}");
    // Today itself is fine.
    for _ in 0..10 {
        press(&mut app, KeyCode::Backspace);
    }
    typ(&mut app, "04/10/2026");
    assert_eq!(
        app.item_form.form.get(ItemField::Expiry).unwrap().error,
        None
    );
    // A date that passes while the form is open is refused from then on.
    app.handle(Event::Today(day(2026, 4, 11)));
    assert!(
        app.item_form
            .form
            .get(ItemField::Expiry)
            .unwrap()
            .error
            .is_some()
    );

    // A ticket for an event that is over.
    let mut app = signed_in();
    app.handle(Event::Today(day(2026, 4, 10)));
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Enter);
    for v in ["Opera", "Hall", "A1", "2026-04-01", "20.00"] {
        typ(&mut app, v);
        press(&mut app, KeyCode::Tab);
    }
    press(&mut app, KeyCode::Enter);
    assert_ne!(app.screen, Screen::Review);
    let e = item_error(&app, ItemField::EventDay);
    assert!(
        e.as_deref().is_some_and(|e| e.contains("in the past")),
        "{e:?}"
    );
}

#[test]
fn the_item_value_limit_is_checked_as_the_amount_is_typed() {
    let mut app = signed_in();
    press(&mut app, KeyCode::Down); // Ticket
    press(&mut app, KeyCode::Down); // Check
    press(&mut app, KeyCode::Enter);
    typ(&mut app, "ACME Corp");
    press(&mut app, KeyCode::Tab);
    typ(&mut app, "1000.01");
    let e = item_error(&app, ItemField::Amount);
    assert!(
        e.as_deref().is_some_and(|e| e.contains("$1000.00")),
        "{e:?}"
    );
    let text = screen_text(&render(&app, 80, 24));
    assert!(text.contains("is over $1000.00"), "{text}");
    press(&mut app, KeyCode::Tab);
    typ(&mut app, "1001");
    let cmds = press(&mut app, KeyCode::Enter);
    assert!(cmds.is_empty(), "{cmds:?}");
    assert_ne!(app.screen, Screen::Review, "refused before review");
    // The limit itself is allowed.
    press(&mut app, KeyCode::BackTab);
    assert_eq!(app.item_form.form.focused().unwrap().key, ItemField::Amount);
    for _ in 0..7 {
        press(&mut app, KeyCode::Backspace);
    }
    typ(&mut app, "1000.00");
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Review, "{:?}", app.notice);
}

#[test]
fn a_quote_while_the_link_is_down_says_so_and_comes_when_it_is_back() {
    let mut app = signed_in();
    ctrl(&mut app, 'n');
    link(&mut app, LinkState::Lapsed);
    let cmds = fill_postage(&mut app);
    let first = quote_request(&cmds).unwrap();
    backend(
        &mut app,
        Backend::QuoteFailed {
            request: first,
            reason: "link lapsed".into(),
        },
    );
    let text = screen_text(&render(&app, 120, 40));
    assert!(
        text.contains("The link to the vendor is down; the quote will come when it is back."),
        "{text}"
    );
    assert!(!text.contains("Waiting for the vendor"), "{text}");
    press(&mut app, KeyCode::Enter);
    let notice = app.notice.clone().unwrap().text;
    assert!(notice.contains("link to the vendor is down"), "{notice}");
    // Back up: the quote is asked again by itself.
    let up = frank::link::driver::LinkStatus {
        state: LinkState::Up,
        ..app.link.clone().unwrap()
    };
    let cmds = backend(&mut app, Backend::LinkChanged(up));
    let again = quote_request(&cmds).expect("the quote is asked again when the link is up");
    assert_ne!(again, first);
    assert_eq!(app.postage.quote, QuoteState::Pending { request: again });
}

#[test]
fn the_chosen_theme_is_handed_to_the_shell_to_save() {
    let mut app = signed_in();
    assert_eq!(app.take_theme_to_save(), None);
    press(&mut app, KeyCode::F(5));
    assert_eq!(app.screen, Screen::Settings);
    press(&mut app, KeyCode::Right);
    assert_eq!(app.config.theme.name, "light");
    assert_eq!(app.take_theme_to_save().as_deref(), Some("light"));
    assert_eq!(app.take_theme_to_save(), None, "handed over once");
}

#[test]
fn the_light_theme_paints_its_own_background() {
    let mut app = quoted();
    with_theme(&mut app, "light", false);
    let t = render(&app, 80, 24);
    let buf = t.backend().buffer();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            let c = &buf[(x, y)];
            assert_ne!(
                c.bg,
                Color::Reset,
                "cell {x},{y} {:?} shows the terminal's background",
                c.symbol()
            );
            if c.symbol().trim().is_empty() {
                continue;
            }
            let (text, back) = if c.modifier.contains(Modifier::REVERSED) {
                (c.bg, c.fg)
            } else {
                (c.fg, c.bg)
            };
            let pale = matches!(text, Color::Reset | Color::White | Color::Gray);
            assert!(
                text != back && !(pale && back == Color::White),
                "cell {x},{y} {:?}: {text:?} text on {back:?}",
                c.symbol()
            );
        }
    }
}

/// Issue 15: the vendor forgot the session and the backend's own sign-in did not work. A
/// counter goes to its sign-in screen saying what to do; it does not stay on a screen that
/// looks usable with the link down for good.
#[test]
fn a_session_the_vendor_ended_sends_the_counter_to_sign_in_with_plain_words() {
    let mut app = signed_in();
    ctrl(&mut app, 'n');
    assert_eq!(app.screen, Screen::Postage);
    link(&mut app, LinkState::Closed);
    backend(
        &mut app,
        Backend::SessionEnded {
            reason: "The vendor no longer knows this counter's session, and signing in again did not work. Sign in again; if that fails too, call your supervisor.".into(),
        },
    );
    assert_eq!(app.screen, Screen::SignIn);
    assert_eq!(app.clerk, None);
    assert_eq!(app.balance, None);
    let notice = app.notice.clone().expect("the reason is on screen");
    assert!(notice.text.contains("Sign in again"), "{notice:?}");
    // Signing in works from there.
    typ(&mut app, "alice");
    press(&mut app, KeyCode::Tab);
    typ(&mut app, "correct horse");
    let cmds = press(&mut app, KeyCode::Enter);
    assert!(matches!(&cmds[..], [Command::SignIn { clerk, .. }] if clerk == "alice"));
}

/// Issue 15: a kiosk whose session ended (or whose sign-in failed) says it is out of service
/// instead of "Press Enter to start", and Enter starts nothing; a later sign-in brings the
/// welcome screen back.
#[test]
fn a_kiosk_without_a_session_is_out_of_service_not_welcoming() {
    let mut app = kiosk_app();
    backend(
        &mut app,
        Backend::SignedIn {
            office: "Main Street office".into(),
            clerk: "kiosk".into(),
            balance: cents(0),
        },
    );
    link(&mut app, LinkState::Up);
    backend(&mut app, Backend::PrinterStatus(PrinterStatus::Ready));
    let t = screen_text(&render(&app, 80, 24));
    assert!(t.contains("to start"), "{t}");

    press(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Postage);
    typ(&mut app, "Grace Hopper");
    link(&mut app, LinkState::Closed);
    backend(
        &mut app,
        Backend::SessionEnded {
            reason: "office words".into(),
        },
    );
    assert!(app.out_of_service);
    assert_eq!(app.screen, Screen::Welcome);
    let t = screen_text(&render(&app, 80, 24));
    assert!(t.contains("out of service"), "{t}");
    assert!(t.contains("ask staff"), "{t}");
    assert!(!t.contains("to start"), "{t}");
    assert!(!t.contains("Grace Hopper"), "{t}");
    assert!(!t.contains("office words"), "{t}");
    press(&mut app, KeyCode::Enter);
    assert_eq!(
        app.screen,
        Screen::Welcome,
        "Enter started a sale out of service"
    );

    // A kiosk whose own sign-in failed is out of service the same way.
    let mut fresh = kiosk_app();
    backend(
        &mut fresh,
        Backend::SignInFailed {
            reason: "wrong clerk name or password".into(),
        },
    );
    let t = screen_text(&render(&fresh, 80, 24));
    assert!(
        t.contains("out of service") && !t.contains("to start"),
        "{t}"
    );
    assert!(!t.contains("password"), "{t}");

    // Signed in again (a restarted kiosk): welcome again.
    backend(
        &mut app,
        Backend::SignedIn {
            office: "Main Street office".into(),
            clerk: "kiosk".into(),
            balance: cents(0),
        },
    );
    assert!(!app.out_of_service);
    link(&mut app, LinkState::Up);
    let t = screen_text(&render(&app, 80, 24));
    assert!(t.contains("to start"), "{t}");
}

/// Issue 15 item 6: a kiosk whose link is not up or whose printer is not ready shows the
/// out-of-service screen (not "Press Enter to start", Enter starts nothing); the reason in
/// the office's words shows only after the supervisor PIN, from where the quit key quits and
/// Esc hides it; back in service, the welcome returns and quitting asks the PIN again.
#[test]
fn kiosk_is_out_of_service_while_link_or_printer_is_not_ready_and_staff_see_why() {
    let mut app = kiosk_app();
    backend(
        &mut app,
        Backend::SignedIn {
            office: "Main Street office".into(),
            clerk: "kiosk".into(),
            balance: cents(0),
        },
    );
    link(&mut app, LinkState::Up);
    backend(&mut app, Backend::PrinterStatus(PrinterStatus::Ready));
    assert!(!app.kiosk_unavailable());
    let t = screen_text(&render(&app, 80, 24));
    assert!(
        t.contains("to start") && !t.contains("OUT OF SERVICE"),
        "{t}"
    );

    for (state, printer, why) in [
        (LinkState::Lapsed, PrinterStatus::Ready, "no keepalives"),
        (
            LinkState::Up,
            PrinterStatus::Fault(PrinterFault::PaperOut),
            "Fix the printer",
        ),
    ] {
        link(&mut app, state);
        backend(&mut app, Backend::PrinterStatus(printer));
        for (w, h) in [(80, 24), (120, 40)] {
            let t = screen_text(&render(&app, w, h));
            assert!(t.contains("OUT OF SERVICE"), "{t}");
            assert!(!t.contains("to start"), "{t}");
            assert!(
                !t.contains(why),
                "the staff reason shown to the public:\n{t}"
            );
        }
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.screen, Screen::Welcome, "Enter started a sale");

        // A wrong PIN shows nothing; the right one shows staff why, and does not quit.
        ctrl(&mut app, 'c');
        typ(&mut app, "1111");
        press(&mut app, KeyCode::Enter);
        ctrl(&mut app, 'c');
        press(&mut app, KeyCode::Esc);
        assert!(!screen_text(&render(&app, 80, 24)).contains(why));
        ctrl(&mut app, 'c');
        typ(&mut app, "2468");
        assert!(press(&mut app, KeyCode::Enter).is_empty());
        assert!(!app.quit);
        let t = screen_text(&render(&app, 120, 40));
        assert!(t.contains("For staff") && t.contains(why), "{t}");
        // Esc hides it again; the next look asks the PIN again.
        press(&mut app, KeyCode::Esc);
        assert!(!app.staff_view);
        assert!(!screen_text(&render(&app, 120, 40)).contains(why));
    }

    // Behind the PIN, the quit key quits at once.
    ctrl(&mut app, 'c');
    typ(&mut app, "2468");
    press(&mut app, KeyCode::Enter);
    assert!(app.staff_view);
    // Back in service: the staff view closes and quitting asks the PIN again.
    backend(&mut app, Backend::PrinterStatus(PrinterStatus::Ready));
    app.handle(Event::Tick { elapsed_ms: 100 });
    assert!(!app.staff_view);
    let t = screen_text(&render(&app, 80, 24));
    assert!(t.contains("to start"), "{t}");
    assert!(ctrl(&mut app, 'c').is_empty());
    assert!(
        app.pin_prompt.is_some(),
        "quit without the PIN after service resumed"
    );
    press(&mut app, KeyCode::Esc);
    link(&mut app, LinkState::Closed);
    ctrl(&mut app, 'c');
    typ(&mut app, "2468");
    press(&mut app, KeyCode::Enter);
    assert_eq!(ctrl(&mut app, 'c'), vec![Command::Quit]);
}

/// Issue 17: with a signed rate table the price shows at once from it; the vendor's own price
/// (which the authorization carries) replaces it, and when the two differ the clerk reads the
/// vendor's amount and the table's on the form and in the review before confirming.
#[test]
fn the_live_price_comes_from_the_signed_table_and_the_vendors_price_is_confirmed() {
    let mut app = signed_in();
    ctrl(&mut app, 'n');
    let cmds = fill_postage(&mut app);
    let request = quote_request(&cmds).unwrap();
    backend(
        &mut app,
        Backend::TablePrice {
            request,
            amount: cents(530),
            table: "rates 2".into(),
        },
    );
    assert!(
        matches!(&app.postage.quote, QuoteState::Table { amount, table, vendor_failed: None, .. }
            if *amount == cents(530) && table == "rates 2"),
        "{:?}",
        app.postage.quote
    );
    let text = screen_text(&render(&app, 120, 40));
    assert!(
        text.contains("Price: $5.30 (rate table rates 2); asking the vendor to confirm"),
        "{text}"
    );
    // Not reviewable on the table's price alone: the vendor's is the one charged.
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Postage);
    assert!(
        app.notice
            .as_ref()
            .is_some_and(|n| n.text.contains("rate table says $5.30")),
        "{:?}",
        app.notice
    );
    // The vendor's price differs: it replaces the table's, and says so.
    answer_quote(&mut app, request, 540);
    assert_eq!(
        app.postage.quote,
        QuoteState::Ready {
            request,
            amount: cents(540)
        }
    );
    let note = app.postage.price_note.clone().unwrap();
    assert!(note.differs);
    let text = screen_text(&render(&app, 160, 40));
    assert!(
        text.contains(
            "Quote: $5.40 — the vendor's price; this counter's rate table (rates 2) says $5.30"
        ),
        "{text}"
    );
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Review, "notice: {:?}", app.notice);
    let draft = app.review.draft.clone().unwrap();
    assert_eq!(draft.amount, cents(540), "the vendor's price is authorized");
    assert!(
        draft
            .summary
            .iter()
            .any(|(k, v)| k == "Price" && v.contains("rate table (rates 2) says $5.30")),
        "{:?}",
        draft.summary
    );
    let cmds = press(&mut app, KeyCode::Enter);
    assert!(
        matches!(&cmds[..], [Command::Authorize { amount, .. }] if *amount == cents(540)),
        "{cmds:?}"
    );
}

/// With the same price from both, the note says they agree; a stale table price is dropped;
/// a vendor that cannot answer leaves the table's price shown with the reason.
#[test]
fn a_table_price_agreeing_or_without_the_vendor_is_shown_for_what_it_is() {
    let mut app = signed_in();
    ctrl(&mut app, 'n');
    let cmds = fill_postage(&mut app);
    let request = quote_request(&cmds).unwrap();
    backend(
        &mut app,
        Backend::TablePrice {
            request: request + 100,
            amount: cents(1),
            table: "rates 2".into(),
        },
    );
    assert_eq!(app.postage.quote, QuoteState::Pending { request });
    backend(
        &mut app,
        Backend::TablePrice {
            request,
            amount: cents(540),
            table: "rates 2".into(),
        },
    );
    backend(
        &mut app,
        Backend::QuoteFailed {
            request,
            reason: "the vendor is busy".into(),
        },
    );
    assert!(
        matches!(&app.postage.quote, QuoteState::Table { vendor_failed: Some(r), .. } if r == "the vendor is busy"),
        "{:?}",
        app.postage.quote
    );
    // Asked again when the link comes back; this time the vendor agrees.
    link(&mut app, LinkState::Lapsed);
    let mut up = frank::link::driver::LinkStatus::down(7, std::time::Instant::now());
    up.state = LinkState::Up;
    let cmds = backend(&mut app, Backend::LinkChanged(up));
    let again = quote_request(&cmds).expect("the vendor's price is asked again");
    backend(
        &mut app,
        Backend::TablePrice {
            request: again,
            amount: cents(540),
            table: "rates 2".into(),
        },
    );
    answer_quote(&mut app, again, 540);
    let note = app.postage.price_note.clone().unwrap();
    assert!(!note.differs, "{note:?}");
    press(&mut app, KeyCode::Enter);
    let draft = app.review.draft.clone().unwrap();
    assert!(!draft.summary.iter().any(|(k, _)| k == "Price"));
}
