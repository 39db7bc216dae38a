//! Item faces (issue 16): every kind printed through the compiler and the virtual printer's
//! engine; the page's PNG decoded and verified, and the fields the printer recorded as printed
//! text read back (`face::parse_fields`) to the indicium's kind digest; `frank verify --fields`.

mod indicium_support;

use frank::indicium::face::{Addresses, face, parse_fields};
use frank::indicium::layout::{Indicium, Subject};
use frank::indicium::signer::{KeySigner, Signer, build_and_sign};
use frank::indicium::verify::{VendorKeys, payload_from_png, verify_payload};
use frank::indicium::{Item, ItemKind};
use frank::printer::compiler::{CompileOptions, Label, Layout, VOID_BAR_MODULES, compile_with};
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
    for id in [
        "generic-58mm",
        "virtual",
        "virtual-58mm",
        "epson-tm-l90",
        "epson-tm-t88vi",
    ] {
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
        // The paper as a person holds it (the counter prints it turned by 180°).
        let paper = page.image.rotated_180();
        if let Ok(dir) = std::env::var("FRANK_FACE_PNG_DIR") {
            std::fs::write(format!("{dir}/postage-{id}.png"), paper.to_png().unwrap()).unwrap();
        }
        let w = paper.width_px();
        let first_ink =
            |x0: u32, x1: u32| (0..paper.height_px()).find(|&y| (x0..x1).any(|x| paper.get(x, y)));
        let rows_with_ink = |x0: u32, x1: u32, y0: u32, y1: u32| {
            (y0..y1)
                .filter(|&y| (x0..x1).any(|x| paper.get(x, y)))
                .count() as u32
        };
        // 44 × 44 modules at 3 dots (4 on a 1 KB printer, where the symbol goes as one
        // quadruple-density image), 2 modules of quiet zone each side.
        let module = if profile.receive_buffer_bytes < 2048 {
            4
        } else {
            3
        };
        let symbol_px = 44 * module;
        let quiet_px = 2 * module;
        let sym_x0 = w - quiet_px - symbol_px;
        let top = first_ink(0, w).unwrap();
        let sym_top = first_ink(sym_x0, w).unwrap();
        let text_top = first_ink(0, sym_x0 - 4).unwrap();
        // The symbol is at the top right: nothing is printed above it, and its right edge is
        // the quiet zone's width from the paper's right edge.
        assert!(
            sym_top <= top + quiet_px,
            "{id}: the symbol starts at row {sym_top}, the label at {top}"
        );
        assert!(
            (sym_top..sym_top + symbol_px).any(|y| paper.get(w - quiet_px - 1, y)),
            "{id}: symbol not flush with the right quiet zone"
        );
        if profile.page_mode {
            // Beside it: the block's lines share the symbol's rows.
            assert!(text_top <= sym_top + 6, "{id}: block starts at {text_top}");
            let beside = rows_with_ink(0, sym_x0 - 4, sym_top, sym_top + symbol_px);
            assert!(
                beside >= 4 * 24,
                "{id}: only {beside} rows of text beside the symbol"
            );
        } else {
            // The fallback stated for printers without page mode: the block under the symbol.
            assert!(text_top >= sym_top + symbol_px, "{id}: text at {text_top}");
        }
    }
}

#[test]
fn a_void_label_shows_a_crossed_symbol_that_does_not_decode() {
    let signer = KeySigner::from_seed(&TEST_SEED);
    let (item, amount) = every_kind().remove(0);
    let ind = signed(&item, amount, &signer);
    let payload = ind.to_bytes();
    // The control: the symbol at the VOID label's size (2 dots a module) decodes uncrossed,
    // and does not once crossed, so it is the bars that make it unreadable.
    let plain = frank::indicium::render::symbol_image(&payload, 2).unwrap();
    assert_eq!(payload_from_png(&plain.to_png().unwrap()).unwrap(), payload);
    let mut crossed = plain.clone();
    frank::indicium::render::cross_out(&mut crossed, 2, 2, VOID_BAR_MODULES);
    assert!(payload_from_png(&crossed.to_png().unwrap()).is_err());
    for id in [
        "virtual",
        "virtual-58mm",
        "generic-58mm",
        "generic-80mm",
        "epson-tm-t88v",
    ] {
        let profile = shipped(id).unwrap();
        let label = face(&ind, Some(&item), &Addresses::default(), &profile);
        let opts = CompileOptions {
            layout: Layout::Rotated180,
            ..CompileOptions::default()
        };
        let job = compile_with(&label, &profile, &opts).unwrap();
        assert!(
            job.void_label.len() <= profile.receive_buffer_bytes as usize,
            "{id}: a {}-byte VOID label",
            job.void_label.len()
        );
        let mut parser = Parser::new();
        let mut r = Renderer::new(&profile);
        for b in &job.void_label {
            if let Some(c) = parser.push(*b) {
                r.apply_and_print(c);
            }
        }
        let mut pages = r.take_jobs();
        if pages.is_empty() {
            r.tear_off();
            pages = r.take_jobs();
        }
        assert_eq!(pages.len(), 1, "{id}");
        let page = &pages[0];
        if let Ok(dir) = std::env::var("FRANK_FACE_PNG_DIR") {
            std::fs::write(format!("{dir}/void-{id}.png"), page.image.to_png().unwrap()).unwrap();
        }
        assert_eq!(page.raster_bands, 1, "{id}: the crossed symbol is printed");
        assert!(page.image.black_count() > 2000, "{id}");
        let err = payload_from_png(&page.image.to_png().unwrap());
        assert!(err.is_err(), "{id}: the VOID label's symbol decoded");
        assert_eq!(page.text.first().map(String::as_str), Some("VOID"), "{id}");
        let number = ind.body.number().to_string();
        assert!(
            page.text.iter().any(|l| l.trim() == number),
            "{id}: {:?}",
            page.text
        );
        assert!(!page.text.iter().any(|l| l.contains("US POSTAGE")), "{id}");
    }
}
