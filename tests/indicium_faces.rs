//! Item faces (issue 16): every kind printed through the compiler and the virtual printer's
//! engine; the page's PNG decoded and verified, and the fields the printer recorded as printed
//! text read back (`face::parse_fields`) to the indicium's kind digest; `frank verify --fields`.

mod indicium_support;

use frank::indicium::face::{Addresses, face, parse_fields};
use frank::indicium::layout::{Indicium, Subject};
use frank::indicium::signer::{KeySigner, Signer, build_and_sign};
use frank::indicium::verify::{VendorKeys, payload_from_png, verify_payload};
use frank::indicium::{Item, ItemKind};
use frank::printer::compiler::{CompileOptions, Label, Layout, compile_with};
use frank::printer::emulator::parser::Parser;
use frank::printer::emulator::render::{RenderedJob, Renderer};
use frank::printer::profile::{Profile, shipped};
use indicium_support::*;

/// Prints `label` on `profile`'s engine (rotated 180° as the counter does) and returns the page,
/// its text in reading order (top of the turned label first).
pub fn print(label: &Label, profile: &Profile) -> (RenderedJob, Vec<String>) {
    let opts = CompileOptions {
        layout: Layout::Rotated180,
        ..CompileOptions::default()
    };
    let job = compile_with(label, profile, &opts).unwrap();
    let mut parser = Parser::new();
    let mut r = Renderer::new(profile);
    for b in &job.bytes {
        if let Some(c) = parser.push(*b) {
            r.apply_and_print(c);
        }
    }
    let mut pages = r.take_jobs();
    if pages.is_empty() && profile.cut == frank::printer::profile::CutCommand::None {
        // No cutter: the clerk tears the label off.
        r.tear_off();
        pages = r.take_jobs();
    }
    assert_eq!(pages.len(), 1);
    let page = pages.remove(0);
    let mut text = page.text.clone();
    text.reverse();
    (page, text)
}

fn signed(item: &Item, amount: frank::money::Cents, signer: &KeySigner) -> Indicium {
    build_and_sign(&facts(item.clone(), amount, 77), signer).unwrap()
}

fn keys(signer: &KeySigner) -> VendorKeys {
    let mut k = VendorKeys::new();
    k.add(&signer.public_key()).unwrap();
    k
}

#[test]
fn every_kind_prints_its_fields_and_they_digest_to_the_indicium() {
    let signer = KeySigner::from_seed(&TEST_SEED);
    for id in ["virtual", "generic-80mm", "generic-58mm", "epson-tm-t88vi"] {
        let profile = shipped(id).unwrap();
        for (item, amount) in every_kind() {
            if item.kind() == ItemKind::Postage {
                continue;
            }
            let ind = signed(&item, amount, &signer);
            let label = face(&ind, Some(&item), &Addresses::default(), &profile);
            let (page, text) = print(&label, &profile);
            // The symbol on the page decodes and verifies.
            let png = page.image.to_png().unwrap();
            let payload = payload_from_png(&png).unwrap_or_else(|e| panic!("{id}: {e}"));
            let v = verify_payload(&payload, &keys(&signer)).unwrap();
            let Subject::Item(d) = v.indicium.body.subject else {
                panic!("not an item")
            };
            // What the printer printed as text, read back, digests to the indicium's digest.
            let joined = text.join("\n");
            let back = parse_fields(item.kind(), &joined)
                .unwrap_or_else(|e| panic!("{id} {}: {e}\n{joined}", item.kind()));
            assert_eq!(
                &back.digest(),
                d.digest(),
                "{id} {}:\n{joined}",
                item.kind()
            );
            assert_eq!(back, item);
            // The piece's one number (meter and serial) is on the face.
            let serial = v.indicium.body.number().to_string();
            assert!(text.iter().any(|l| l.contains(&serial)), "{id}: {text:?}");
            match &item {
                Item::Check(_) => assert!(
                    joined
                        .replace("\n  ", " ")
                        .contains("\nONE HUNDRED TWENTY-THREE AND 45/100 DOLLARS\n"),
                    "{id}: {text:?}"
                ),
                Item::GiftCertificate(_) => {
                    assert!(text.iter().any(|l| l.starts_with("REDEEM AT")), "{text:?}")
                }
                _ => {}
            }
        }
    }
}

#[test]
fn long_fields_wrap_on_a_58mm_printer_and_read_back() {
    let signer = KeySigner::from_seed(&TEST_SEED);
    let profile = shipped("generic-58mm").unwrap();
    let item = Item::Ticket(frank::indicium::kinds::Ticket {
        event: text("The Annual Spring Gala of the Philharmonic Society 2027"),
        venue: text("Grand-Hall-of-the-Old-Town-Municipal-Building"),
        seat: text("Row 12  Seat 4"),
        event_day: day("2027-04-01"),
        price: cents(12_050),
    });
    let ind = signed(&item, cents(12_050), &signer);
    let (_, text) = print(
        &face(&ind, Some(&item), &Addresses::default(), &profile),
        &profile,
    );
    assert!(text.iter().all(|l| l.chars().count() <= 32), "{text:?}");
    assert!(
        text.iter().any(|l| l.starts_with("  ")),
        "wrapped: {text:?}"
    );
    let back = parse_fields(ItemKind::Ticket, &text.join("\n")).unwrap();
    assert_eq!(back, item);
}

fn frank() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_frank"))
}

#[test]
fn verify_fields_says_whether_the_paper_matches() {
    let signer = KeySigner::from_seed(&TEST_SEED);
    let profile = shipped("virtual").unwrap();
    let (item, amount) = every_kind().remove(2); // the check
    let ind = signed(&item, amount, &signer);
    let (page, text) = print(
        &face(&ind, Some(&item), &Addresses::default(), &profile),
        &profile,
    );
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("check.png");
    std::fs::write(&png, page.image.to_png().unwrap()).unwrap();
    let fields = dir.path().join("fields.txt");
    std::fs::write(&fields, text.join("\n")).unwrap();
    let key = hex::encode(signer.public_key());
    let run = |f: &std::path::Path| {
        frank()
            .arg("verify")
            .arg(&png)
            .args(["--vendor-key", &key, "--fields"])
            .arg(f)
            .output()
            .unwrap()
    };
    let out = run(&fields);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("fields: MATCH"), "{stdout}");
    assert!(stdout.contains("field PAYEE: Ada Lovelace"), "{stdout}");
    // One cent more on the paper than was signed.
    let forged = text
        .join("\n")
        .replace("AMOUNT: $123.45", "AMOUNT: $123.46");
    std::fs::write(&fields, forged).unwrap();
    let out = run(&fields);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("fields: MISMATCH"), "{stdout}");
    assert!(
        stdout.contains("result: INVALID (fields mismatch)"),
        "{stdout}"
    );
}

#[test]
fn a_postage_label_a_clerk_recognises_on_58mm_and_4_inch_media() {
    let signer = KeySigner::from_seed(&TEST_SEED);
    let (item, amount) = every_kind().remove(0);
    let ind = signed(&item, amount, &signer);
    let from = vec![
        "FRANK COUNTER 7".to_string(),
        "12 POST RD".to_string(),
        "WASHINGTON DC 20500".to_string(),
    ];
    let to = vec![
        "JANE DOE".to_string(),
        "1 MARKET STREET SUITE 3100 SOUTH TOWER".to_string(),
        "SAN FRANCISCO CA 94105-1234".to_string(),
    ];
    for id in ["generic-58mm", "virtual", "epson-tm-l90"] {
        let profile = shipped(id).unwrap();
        let label = face(
            &ind,
            Some(&item),
            &Addresses {
                from: &from,
                to: &to,
            },
            &profile,
        );
        let (page, text) = print(&label, &profile);
        let png = page.image.to_png().unwrap();
        let payload = payload_from_png(&png).unwrap_or_else(|e| panic!("{id}: {e}"));
        verify_payload(&payload, &keys(&signer)).unwrap();
        // Reading order: the legend, the indicium's block, FROM, TO.
        let pos = |s: &str| {
            text.iter()
                .position(|l| l.trim() == s)
                .unwrap_or_else(|| panic!("{id}: {s:?} not in {text:?}"))
        };
        let b = &ind.body;
        let order = [
            pos("US POSTAGE"),
            pos(&b.amount.to_string()),
            pos(&b.date.to_string()),
            pos(&format!("FROM ZIP {}", b.origin)),
            pos("FIRST-CLASS MAIL"),
            pos("1 OZ"),
            pos(&b.number().to_string()),
            pos("FROM:"),
            pos("TO:"),
        ];
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{id}: {text:?}");
        assert!(
            text.iter().any(|l| l.contains("SOUTH TOWER")),
            "{id}: {text:?}"
        );
    }
}
