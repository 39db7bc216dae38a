//! The plain mode (`--plain`): a postage label from sign-in to printed, driven through the
//! plain runner loop with keys and backend reports, asserting the lines it writes — one plain
//! line per change, no box drawing, no spinner, the prompt from the key table.

mod ui_support;

use crossterm::event::{KeyCode, KeyModifiers};
use frank::counter::jobbook::Settlement;
use frank::printer::streamer::{IndiciumPaper, JobOutcome, Progress};
use frank::ui::event::{
    Backend, COMMANDS_QUEUE_MAX, Command, EVENTS_QUEUE_MAX, Event, SettlePhase,
};
use frank::ui::plain::Plain;
use frank::ui::runner::drive_plain;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use ui_support::*;

/// A writer the test can read while the loop runs.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
    /// Waits (bounded) until the output holds `needle`; returns the output.
    async fn wait_for(&self, needle: &str) -> String {
        for _ in 0..200 {
            let t = self.text();
            if t.contains(needle) {
                return t;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("{needle:?} never written; output:\n{}", self.text());
    }
}

fn keys_of(text: &str) -> Vec<Event> {
    text.chars()
        .map(|c| key_ev(KeyCode::Char(c), KeyModifiers::NONE))
        .collect()
}

const BOX_AND_SPINNERS: &[char] = &[
    '│', '─', '┌', '┐', '└', '┘', '█', '▀', '▄', '⠋', '⠙', '⠹', '◐', '◓', '▶', '◀',
];

#[tokio::test]
async fn a_postage_label_end_to_end_in_plain_lines() {
    let (key_tx, keys) = mpsc::channel(EVENTS_QUEUE_MAX);
    let (be_tx, be_rx) = mpsc::channel(EVENTS_QUEUE_MAX);
    let (cmd_tx, mut cmds) = mpsc::channel(COMMANDS_QUEUE_MAX);
    let out = Shared::default();
    let task = tokio::spawn(drive_plain(
        out.clone(),
        clerk_app(),
        keys,
        be_rx,
        cmd_tx,
        std::future::pending(),
        None,
    ));
    let t = out.wait_for("Keys: Enter sign in").await;
    assert!(t.contains("Screen: Sign in.\r\n"), "{t}");
    assert!(t.contains("Field 1 of 2: Clerk, empty.\r\n"), "{t}");
    let send = |evs: Vec<Event>| {
        let key_tx = key_tx.clone();
        async move {
            for e in evs {
                key_tx.send(e).await.unwrap();
            }
        }
    };
    send(keys_of("alice")).await;
    send(vec![key_ev(KeyCode::Tab, KeyModifiers::NONE)]).await;
    // Typed characters are echoed; a password only as its mask.
    let t = out.wait_for("Field 2 of 2: Password, empty.").await;
    assert!(t.contains("alice\r\nField 2 of 2"), "{t}");
    send(keys_of("pw")).await;
    send(vec![key_ev(KeyCode::Enter, KeyModifiers::NONE)]).await;
    assert!(matches!(cmds.recv().await, Some(Command::SignIn { .. })));
    assert!(!out.text().contains("pw"), "the password is never written");
    be_tx
        .send(Backend::SignedIn {
            office: "Main Street office".into(),
            clerk: "alice".into(),
            balance: cents(10_000),
        })
        .await
        .unwrap();
    let mut up = frank::link::driver::LinkStatus::down(7, std::time::Instant::now());
    up.state = frank::link::LinkState::Up;
    be_tx.send(Backend::LinkChanged(up)).await.unwrap();
    be_tx
        .send(Backend::PrinterStatus(
            frank::ui::event::PrinterStatus::Ready,
        ))
        .await
        .unwrap();
    let t = out.wait_for("Status: link up, printer ready.").await;
    assert!(
        t.contains("Screen: Home.\r\nBalance $100.00.\r\nMenu item 1 of 12: Postage label."),
        "{t}"
    );
    send(vec![key_ev(KeyCode::Enter, KeyModifiers::NONE)]).await;
    out.wait_for("Screen: Postage label.").await;
    out.wait_for("Field 1 of 14: Name, empty.").await;
    // Fill the form as the flow tests do; a bad state is said once the field is left.
    for (i, v) in [
        "Ada Lovelace",
        "12 Analytical Way",
        "",
        "San Francisco",
        "CX",
    ]
    .into_iter()
    .enumerate()
    {
        send(keys_of(v)).await;
        send(vec![key_ev(KeyCode::Tab, KeyModifiers::NONE)]).await;
        out.wait_for(&format!("Field {} of 14:", i + 2)).await;
    }
    let t = out.wait_for("Problem: State:").await;
    assert!(t.contains("Field 6 of 14: ZIP, empty."), "{t}");
    send(vec![key_ev(KeyCode::BackTab, KeyModifiers::NONE)]).await;
    send(vec![
        key_ev(KeyCode::Backspace, KeyModifiers::NONE),
        key_ev(KeyCode::Char('A'), KeyModifiers::NONE),
        key_ev(KeyCode::Tab, KeyModifiers::NONE),
    ])
    .await;
    for v in &ui_support::POSTAGE_FORM_VALUES[5..] {
        send(keys_of(v)).await;
        send(vec![key_ev(KeyCode::Tab, KeyModifiers::NONE)]).await;
    }
    let request = loop {
        match cmds.recv().await {
            Some(Command::RequestQuote { request, .. }) => break request,
            Some(_) => continue,
            None => panic!("no quote asked"),
        }
    };
    out.wait_for("Quote: asking the vendor.").await;
    be_tx
        .send(Backend::Quote {
            request,
            amount: cents(540),
        })
        .await
        .unwrap();
    out.wait_for("Quote: $5.40.").await;
    send(vec![key_ev(KeyCode::Enter, KeyModifiers::NONE)]).await;
    let t = out.wait_for("Screen: Review and confirm.").await;
    let t = if t.contains("Keys: Enter confirm & print") {
        t
    } else {
        out.wait_for("Keys: Enter confirm & print").await
    };
    assert!(t.contains("Total: $5.40."), "{t}");
    assert!(
        t.contains("To: Charles Babbage, Boston, MA 02108-1234."),
        "{t}"
    );
    send(vec![key_ev(KeyCode::Enter, KeyModifiers::NONE)]).await;
    let job = loop {
        match cmds.recv().await {
            Some(Command::Authorize { job, .. }) => break job,
            Some(_) => continue,
            None => panic!("no authorize"),
        }
    };
    out.wait_for("asking the vendor to sign it.").await;
    be_tx.send(Backend::Authorized { job }).await.unwrap();
    for sent in [512, 1024, 2048] {
        be_tx
            .send(Backend::PrintProgress {
                job,
                progress: Progress {
                    bytes_sent: sent,
                    bytes_total: 2048,
                },
            })
            .await
            .unwrap();
    }
    be_tx
        .send(Backend::PrintOutcome {
            job,
            outcome: JobOutcome::Completed {
                bytes_sent: 2048,
                indicium: IndiciumPaper::Printed,
            },
        })
        .await
        .unwrap();
    be_tx
        .send(Backend::Settlement {
            job,
            piece: Some(1),
            assumed_on_paper: false,
            amount: cents(540),
            settlement: Settlement::Commit,
            phase: SettlePhase::Done,
        })
        .await
        .unwrap();
    let t = out.wait_for("$5.40 charged").await;
    // One "printing" line, however many progress reports: no spinner, no gauge.
    assert_eq!(t.matches(": printing.").count(), 1, "{t}");
    out.wait_for("Keys: Ctrl-N new item, Ctrl-R refund, Esc home")
        .await;
    drop(be_tx);
    let _ = task.await.unwrap().unwrap();
    let t = out.text();
    for c in BOX_AND_SPINNERS {
        assert!(!t.contains(*c), "{c:?} in plain output:\n{t}");
    }
    assert!(!t.contains("\x1b"), "no escape sequences:\n{t}");
    for line in t.split("\r\n") {
        assert!(!line.contains('\n'), "{line:?}");
    }
}

#[test]
fn a_change_is_said_once_and_nothing_is_repeated() {
    let mut app = signed_in();
    let mut plain = Plain::new();
    let first = plain.lines(&app);
    assert!(first.contains(&"Screen: Home.".to_string()), "{first:?}");
    assert!(plain.lines(&app).is_empty(), "nothing changed");
    press(&mut app, KeyCode::Down);
    assert_eq!(
        plain.lines(&app),
        vec!["Menu item 2 of 12: Ticket.".to_string()]
    );
    ctrl(&mut app, 'q');
    let l = plain.lines(&app);
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].starts_with("Warning: Quit the counter?"), "{l:?}");
}
