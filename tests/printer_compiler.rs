//! Golden bytes of the job compiler for every shipped profile (insta snapshots of hex).

use frank::printer::compiler::{Align, Element, Indicium, Label, TextLine, compile, hex_dump};
use frank::printer::profile::{shipped, shipped_ids};

fn reference_label() -> Label {
    Label {
        elements: vec![
            Element::Text(TextLine {
                text: "USPS PRIORITY MAIL".into(),
                bold: true,
                width_mul: 1,
                height_mul: 2,
                align: Align::Center,
            }),
            Element::Address {
                heading: Some("FROM:".into()),
                lines: vec!["FRANK COUNTER 7".into(), "12 POST RD".into()],
            },
            Element::Indicium(Indicium::DataMatrix {
                data: b"FRANK-IBI-0001".to_vec(),
                module_px: 3,
            }),
            Element::Address {
                heading: Some("TO:".into()),
                lines: vec![
                    "JANE DOE".into(),
                    "1 MAIN ST".into(),
                    "SPRINGFIELD IL 62701".into(),
                ],
            },
            Element::Barcode {
                data: "9400100000000000000000".into(),
                height_dots: 80,
            },
            Element::Feed(1),
        ],
        cut: true,
    }
}

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
