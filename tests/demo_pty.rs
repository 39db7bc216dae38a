//! `frank demo` in a real pseudo-terminal: the screen names the demo clerk's credentials and
//! the label folder; signing in with them and printing a postage label leaves a PNG there
//! whose indicium verifies with the fingerprint the screen shows.
//!
//! Set `FRANK_SCREEN_CAPTURE=FILE` to also write the screens as text (README's capture).

mod pty_support;

use frank::indicium::verify::{VendorKeys, payload_from_png, verify_payload};
use pty_support::{Screen, fill_postage, wait_for_png};
use std::time::Duration;

/// The word after `label` on the screen line that has it.
fn after<'a>(screen: &'a str, label: &str) -> &'a str {
    let i = screen
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} not on screen:\n{screen}"));
    screen[i + label.len()..]
        .split_whitespace()
        .next()
        .unwrap_or("")
}

#[test]
fn demo_shows_credentials_prints_a_label_and_the_png_verifies() {
    let home = tempfile::tempdir().unwrap();
    let labels = home.path().join("labels");
    let args: Vec<String> = vec![
        "demo".into(),
        "--labels".into(),
        labels.display().to_string(),
        "--duration-s".into(),
        "120".into(),
    ];
    let mut s = Screen::spawn(&args, home.path());
    let first = s.wait_for("Demo clerk:");
    let clerk = after(&first, "Demo clerk:").to_string();
    let password = after(&first, "password:").to_string();
    let fingerprint = after(&first, "Vendor key:").to_string();
    assert!(first.contains(&labels.display().to_string()), "{first}");
    // The verify command is short enough to copy whole; its key file is beside the labels.
    assert!(
        first.contains("frank verify --vendor-key vendor-key.txt FILE.png"),
        "{first}"
    );
    // Issue 15: at 80×24 the "Verify one:" line cut the vendor key, so the command could not
    // be copied. In a real 80×24 terminal the command and the key are whole.
    s.resize(24, 80);
    // Redrawn for 80 columns: the frame's right border is in the last column.
    let small = s.wait("the sign-in redrawn at 80x24", |t| {
        t.lines()
            .nth(1)
            .is_some_and(|l| l.trim_end().ends_with('┐'))
            && t.contains("To verify a label")
    });
    for whole in [
        "frank verify --vendor-key vendor-key.txt FILE.png",
        fingerprint.as_str(),
        labels.display().to_string().as_str(),
    ] {
        assert!(small.contains(whole), "{whole:?} cut at 80x24:\n{small}");
    }
    s.resize(pty_support::ROWS, pty_support::COLS);
    s.wait("the sign-in redrawn at full size", |t| {
        t.lines().any(|l| l.chars().count() > 80) || t.contains("Demo clerk:")
    });
    let key_file = std::fs::read_to_string(labels.join("vendor-key.txt")).unwrap();
    assert_eq!(key_file.trim(), fingerprint);
    let mut captures = vec![first.clone()];
    s.typ(&clerk);
    s.send("\t");
    s.typ(&password);
    s.send("\r");
    let home_screen = s.wait("home with the demo funds", |t| {
        t.contains("Recent items") && t.contains("balance $100.00") && t.contains("LINK UP")
    });
    captures.push(home_screen);
    s.send("\x0e"); // Ctrl-N: a postage label
    captures.push(fill_postage(&mut s));
    s.send("\r");
    s.wait_for("Review");
    s.send("\r");
    let done = s.wait("the print outcome", |t| {
        t.contains("Printed postage") && t.contains("charged.")
    });
    captures.push(done);
    let png = wait_for_png(&labels);
    let mut keys = VendorKeys::new();
    keys.add_text(&fingerprint).unwrap();
    let payload = payload_from_png(&std::fs::read(&png).unwrap()).unwrap();
    verify_payload(&payload, &keys).expect("the demo's label verifies with the shown key");
    if let Ok(path) = std::env::var("FRANK_SCREEN_CAPTURE") {
        std::fs::write(path, captures.join("\n----\n")).unwrap();
    }
    // Quit (Ctrl-Q, asked, then Ctrl-Q again): the demo ends and restores the terminal.
    s.send("\x11");
    s.wait_for("Quit the counter?");
    s.send("\x11");
    assert_eq!(
        s.exited_within(Duration::from_secs(10)),
        Some(true),
        "demo did not exit cleanly"
    );
}
