//! Golden bytes of the job compiler for every shipped profile (insta snapshots of hex).

mod printer_support;

use frank::printer::compiler::{
    CompileOptions, Element, Indicium, Label, Layout, TextLine, compile, compile_with, hex_dump,
};
use frank::printer::profile::{shipped, shipped_ids};
use printer_support::reference_label;

#[test]
fn golden_bytes_per_profile() {
    for id in shipped_ids() {
        let profile = shipped(id).unwrap();
        let job = compile(&reference_label(), &profile, 256).unwrap();
        let r = job.indicium.clone().unwrap();
        let head = format!(
            "profile: {id}\nbytes: {}\nchunks: {}\nindicium: {}..{} native={} marks_at={}\n",
            job.bytes.len(),
            job.chunks.len(),
            r.start,
            r.end,
            job.indicium_native,
            job.indicium_marks_at.unwrap()
        );
        insta::assert_snapshot!(format!("compile_{id}"), head + &hex_dump(&job.bytes));
    }
}

fn top_band_label() -> Label {
    let line = |t: &str| TextLine::plain(t);
    Label {
        elements: vec![
            Element::IndiciumBlock {
                symbol: Indicium::DataMatrix {
                    data: vec![0xa5; 142],
                    module_px: 3,
                },
                lines: vec![
                    TextLine {
                        bold: true,
                        ..line("US POSTAGE")
                    },
                    line("$0.73"),
                    line("2027-03-01"),
                    line("FROM ZIP 20500"),
                    line("FIRST-CLASS MAIL"),
                    line("1 OZ"),
                    line("FRK10000001 #9"),
                ],
            },
            Element::Address {
                heading: Some("TO:".into()),
                lines: vec!["JANE DOE".into()],
            },
        ],
        cut: true,
    }
}

/// The postage top band per profile (page mode, or the fallback under the symbol), rotated as
/// the counter prints it, and its VOID label.
#[test]
fn golden_top_band_and_void_label_per_profile() {
    for id in shipped_ids() {
        let profile = shipped(id).unwrap();
        let opts = CompileOptions {
            layout: Layout::Rotated180,
            ..CompileOptions::default()
        };
        let job = compile_with(&top_band_label(), &profile, &opts).unwrap();
        let r = job.indicium.clone().unwrap();
        let head = format!(
            "profile: {id}\npage_mode: {}\nbytes: {}\nindicium: {}..{} native={} marks_at={}\n",
            profile.page_mode,
            job.bytes.len(),
            r.start,
            r.end,
            job.indicium_native,
            job.indicium_marks_at.unwrap()
        );
        let body = format!(
            "{head}{}void label:\n{}",
            hex_dump(&job.bytes),
            hex_dump(&job.void_label)
        );
        insta::assert_snapshot!(format!("top_band_{id}"), body);
    }
}

/// Issue 16: at 9,600 baud a printer with a 1 KB receive buffer takes a 2.6 KB raster symbol
/// far slower (960 bytes/s) than its engine prints it, so between two bands it stops — inside
/// the symbol if the symbol is banded. Frank sends the symbol so that the printer holds all of
/// it before it prints a row of it: one command within the receive buffer (quadruple density)
/// in standard mode, or a page-mode band printed at once by `FF`. Then no stop can fall inside
/// the symbol, whatever the baud.
#[test]
fn no_mid_symbol_stall_at_9600_baud_on_1kb_printers() {
    let band = |b: &[u8]| b.windows(3).filter(|w| *w == [0x1d, 0x76, 0x30]).count();
    for id in shipped_ids() {
        let profile = shipped(id).unwrap();
        let job = compile(&top_band_label(), &profile, 256).unwrap();
        let r = job.indicium.clone().unwrap();
        let ind = &job.bytes[r.clone()];
        if profile.page_mode {
            // Nothing of the band prints before its last byte, FF.
            assert_eq!(job.indicium_marks_at, Some(r.end - 1), "{id}");
            assert_eq!(job.bytes[r.end - 1], 0x0c, "{id}");
            assert_eq!(&ind[..2], &[0x1b, 0x4c], "{id}: ESC L opens the band");
            continue;
        }
        if job.indicium_native {
            continue; // a 142-byte GS ( k store: no raster at all
        }
        // Standard mode: the symbol is one raster command within the buffer.
        assert_eq!(band(ind), 1, "{id}: {} raster commands", band(ind));
        let at = ind
            .windows(3)
            .position(|w| w == [0x1d, 0x76, 0x30])
            .unwrap();
        let x = usize::from(ind[at + 4]) | usize::from(ind[at + 5]) << 8;
        let y = usize::from(ind[at + 6]) | usize::from(ind[at + 7]) << 8;
        assert!(
            8 + x * y <= profile.receive_buffer_bytes as usize,
            "{id}: a {}-byte symbol command, buffer {}",
            8 + x * y,
            profile.receive_buffer_bytes
        );
        if profile.receive_buffer_bytes <= 1024 {
            assert_eq!(profile.serial.baud, 9600, "{id}");
            assert_eq!(ind[at + 3], 3, "{id}: quadruple density");
        }
    }
    // The generic profiles are the 1 KB, 9,600-baud ones this is about.
    for id in ["generic-58mm", "generic-80mm"] {
        let p = shipped(id).unwrap();
        assert_eq!(
            (p.receive_buffer_bytes, p.serial.baud),
            (1024, 9600),
            "{id}"
        );
    }
}
