//! The runner loop over a TestBackend: keys and backend reports in, commands out, redraws.

mod ui_support;

use crossterm::event::{KeyCode, KeyModifiers};
use frank::ui::Screen;
use frank::ui::event::{Backend, COMMANDS_QUEUE_MAX, Command, EVENTS_QUEUE_MAX};
use frank::ui::runner::drive;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokio::sync::mpsc;
use ui_support::*;

fn term() -> Terminal<TestBackend> {
    Terminal::new(TestBackend::new(80, 24)).unwrap()
}

#[tokio::test]
async fn runner_forwards_commands_and_applies_reports() {
    let (key_tx, keys) = mpsc::channel(EVENTS_QUEUE_MAX);
    let (be_tx, be_rx) = mpsc::channel(EVENTS_QUEUE_MAX);
    let (cmd_tx, mut cmds) = mpsc::channel(COMMANDS_QUEUE_MAX);
    let task = tokio::spawn(drive(
        term(),
        clerk_app(),
        keys,
        be_rx,
        cmd_tx,
        std::future::pending(),
    ));
    let mut keys_in = Vec::new();
    keys_in.extend(
        "carol"
            .chars()
            .map(|c| key_ev(KeyCode::Char(c), KeyModifiers::NONE)),
    );
    keys_in.push(key_ev(KeyCode::Tab, KeyModifiers::NONE));
    keys_in.extend(
        "pw".chars()
            .map(|c| key_ev(KeyCode::Char(c), KeyModifiers::NONE)),
    );
    keys_in.push(key_ev(KeyCode::Enter, KeyModifiers::NONE));
    for k in keys_in {
        key_tx.send(k).await.unwrap();
    }
    match cmds.recv().await.unwrap() {
        Command::SignIn { clerk, password } => {
            assert_eq!(clerk, "carol");
            assert_eq!(password.expose(), "pw");
        }
        other => panic!("{other:?}"),
    }
    be_tx
        .send(Backend::SignedIn {
            office: "Main Street office".into(),
            clerk: "carol".into(),
            balance: cents(1234),
        })
        .await
        .unwrap();
    // Closing the report channel ends the runner after the queued reports are applied.
    drop(be_tx);
    let app = task.await.unwrap().unwrap();
    assert_eq!(app.screen, Screen::Home);
    assert_eq!(app.balance, Some(cents(1234)));
}

#[tokio::test]
async fn runner_quits_on_the_quit_key() {
    let (key_tx, keys) = mpsc::channel(EVENTS_QUEUE_MAX);
    let (_be_tx, be_rx) = mpsc::channel::<Backend>(EVENTS_QUEUE_MAX);
    let (cmd_tx, mut cmds) = mpsc::channel(COMMANDS_QUEUE_MAX);
    // Ctrl-Q asks; a second Ctrl-Q quits.
    for _ in 0..2 {
        key_tx
            .send(key_ev(KeyCode::Char('q'), KeyModifiers::CONTROL))
            .await
            .unwrap();
    }
    let app = drive(
        term(),
        signed_in(),
        keys,
        be_rx,
        cmd_tx,
        std::future::pending(),
    )
    .await
    .unwrap();
    assert!(app.quit);
    assert_eq!(cmds.recv().await, Some(Command::Quit));
}

#[tokio::test]
async fn a_full_command_queue_is_reported_not_blocked_on() {
    let (key_tx, keys) = mpsc::channel(EVENTS_QUEUE_MAX);
    let (_be_tx, be_rx) = mpsc::channel::<Backend>(EVENTS_QUEUE_MAX);
    let (cmd_tx, _cmds) = mpsc::channel(1);
    cmd_tx.try_send(Command::LoadHistory).unwrap(); // the one slot is taken
    let mut app = signed_in();
    press(&mut app, KeyCode::F(5));
    key_tx
        .send(key_ev(KeyCode::Down, KeyModifiers::NONE))
        .await
        .unwrap();
    key_tx
        .send(key_ev(KeyCode::Enter, KeyModifiers::NONE))
        .await
        .unwrap();
    drop(key_tx);
    let app = drive(term(), app, keys, be_rx, cmd_tx, std::future::ready(()))
        .await
        .unwrap();
    let notice = app.notice.unwrap().text;
    assert!(
        notice.starts_with("Not sent: the backend is busy"),
        "{notice}"
    );
}
