//! Unit tests of the compiler (moved out of `mod.rs` to keep it one concern wide).

use super::*;
use crate::printer::profile::shipped;

fn label() -> Label {
    Label {
        elements: vec![
            Element::Text(TextLine {
                text: "PRIORITY".into(),
                bold: true,
                width_mul: 2,
                height_mul: 2,
                align: Align::Center,
            }),
            Element::Indicium(Indicium::DataMatrix {
                data: b"FRANK-TEST-0001".to_vec(),
                module_px: 4,
            }),
            Element::Address {
                heading: Some("TO:".into()),
                lines: vec!["JANE DOE".into(), "1 MAIN ST".into()],
            },
        ],
        cut: true,
    }
}

#[test]
fn only_the_print_command_of_a_native_symbol_marks_paper() {
    for id in crate::printer::profile::shipped_ids() {
        let p = shipped(id).unwrap();
        let job = compile(&label(), &p, 64).unwrap();
        let r = job.indicium.clone().unwrap();
        let at = job.indicium_marks_at.unwrap();
        assert!(
            job.chunks.iter().any(|c| c.start == at),
            "{id}: a chunk starts at marks_at"
        );
        match p.native_2d.data_matrix_cn {
            Some(cn) => {
                // The 8-byte print command ends the indicium; the store before it prints
                // nothing; the symbol memory is emptied after it.
                assert_eq!(&job.bytes[at..r.end], &[0x1d, 0x28, 0x6b, 3, 0, cn, 81, 48]);
                assert_eq!(r.end - at, 8);
                assert!(job.chunks.iter().any(|c| c.start == at && c.end == r.end));
                let erase = symbol_store_erase(cn);
                let tail = &job.bytes[r.end..];
                assert!(
                    tail.windows(erase.len()).any(|w| w == erase.as_slice()),
                    "{id}: symbol memory emptied after the print"
                );
                assert!(!job.indicium_started(at) && job.indicium_started(at + 1));
            }
            None => assert_eq!(at, r.start, "{id}: a raster band marks paper at once"),
        }
    }
}

#[test]
fn partial_cut_is_feed_partial_not_escpos_full() {
    let p = shipped("virtual").unwrap();
    // 3 lines at 203 dpi: GS V 66 n feeds n dots, 3 × 34.
    assert_eq!(cut_bytes(&p), vec![0x1d, 0x56, 66, 102]);
    let g = shipped("generic-58mm").unwrap();
    // ESC d n counts lines.
    assert_eq!(cut_bytes(&g), vec![0x1b, 0x64, 4]);
}

#[test]
fn data_matrix_type_is_fn_66() {
    let cmds = data_matrix_native(54, b"X", 3).unwrap();
    assert_eq!(cmds[0], vec![0x1d, 0x28, 0x6b, 5, 0, 54, 66, 0, 0, 0]);
    assert_eq!(cmds[1], vec![0x1d, 0x28, 0x6b, 3, 0, 54, 67, 3]);
    assert_eq!(&cmds[2][5..8], &[54, 80, 48]);
    assert_eq!(cmds[3], vec![0x1d, 0x28, 0x6b, 3, 0, 54, 81, 48]);
}

#[test]
fn quiet_zone_is_two_modules() {
    let (_, w, h) = crate::indicium::render::symbol_modules(b"FRANK").unwrap();
    let b = render_data_matrix(b"FRANK", 3).unwrap();
    assert_eq!(
        (b.width_px(), b.height_px()),
        ((w as u32 + 4) * 3, (h as u32 + 4) * 3)
    );
    for y in 0..b.height_px() {
        for x in 0..b.width_px() {
            let inside = (6..b.width_px() - 6).contains(&x) && (6..b.height_px() - 6).contains(&y);
            assert!(
                inside || !b.get(x, y),
                "dark dot at {x},{y} in the quiet zone"
            );
        }
    }
    // Natively, two modules are fed above and below the symbol.
    let p = shipped("virtual").unwrap();
    let job = compile(&label(), &p, 256).unwrap();
    let r = job.indicium.clone().unwrap();
    assert_eq!(&job.bytes[r.start..r.start + 3], &[0x1b, 0x4a, 8]);
    let after = job.indicium_pid.unwrap().offset + PROCESS_ID_COMMAND_BYTES + 8;
    assert_eq!(&job.bytes[after..after + 3], &[0x1b, 0x4a, 8]);
}

#[test]
fn no_command_exceeds_the_receive_buffer() {
    let big = Label {
        elements: vec![
            Element::Text(TextLine::plain("X")),
            Element::Indicium(Indicium::Image(Bitmap::new(576, 900))),
        ],
        cut: true,
    };
    for id in crate::printer::profile::shipped_ids() {
        let p = shipped(id).unwrap();
        let mut l = big.clone();
        if let Element::Indicium(Indicium::Image(b)) = &mut l.elements[1] {
            *b = Bitmap::new(p.media_width_px, 900);
        }
        for label in [l, label()] {
            let job = compile(&label, &p, 256).unwrap();
            let mut ends = job.boundaries.clone();
            ends.push(job.bytes.len());
            for w in ends.windows(2) {
                assert!(
                    w[1] - w[0] <= p.receive_buffer_bytes as usize,
                    "{id}: a {}-byte command",
                    w[1] - w[0]
                );
            }
        }
    }
}

#[test]
fn a_symbol_that_fits_the_buffer_is_one_raster_command() {
    // The largest indicium (174 bytes, 52 × 52 modules + quiet zone) at 3 dots a module.
    let p = shipped("epson-tm-l90").unwrap();
    let l = Label {
        elements: vec![Element::Indicium(Indicium::DataMatrix {
            data: vec![0xa5; 174],
            module_px: 3,
        })],
        cut: false,
    };
    let job = compile(&l, &p, 256).unwrap();
    let r = job.indicium.clone().unwrap();
    let bands = job.bytes[r.clone()]
        .windows(4)
        .filter(|w| *w == [0x1d, 0x76, 0x30, 0])
        .count();
    assert_eq!(bands, 1);
    // Flush right with GS L, no padding bytes.
    assert_eq!(&job.bytes[r.start..r.start + 4], &left_margin(576 - 168));
}

#[test]
fn label_stock_is_positioned_with_fs_l() {
    let p = shipped("epson-tm-l90").unwrap();
    assert!(label_positioning(&p));
    let job = compile(&label(), &p, 256).unwrap();
    assert_eq!(&job.bytes[5..12], &LABEL_TO_PRINT_START);
    let at = job
        .bytes
        .windows(7)
        .position(|w| w == LABEL_TO_CUT)
        .unwrap();
    assert_eq!(&job.bytes[at + 7..at + 10], &[0x1d, 0x56, 0]);
    // Continuous media: no label commands.
    let v = shipped("virtual").unwrap();
    let job = compile(&label(), &v, 256).unwrap();
    assert!(!job.bytes.windows(3).any(|w| w == [0x1c, 0x28, 0x4c]));
}

#[test]
fn asb_is_enabled_where_the_profile_has_it() {
    for id in crate::printer::profile::shipped_ids() {
        let p = shipped(id).unwrap();
        let job = compile(&label(), &p, 256).unwrap();
        let has = job.bytes.windows(3).any(|w| w == ASB_ENABLE);
        assert_eq!(has, p.status.asb, "{id}");
        if has {
            assert_eq!(&job.bytes[2..5], &ASB_ENABLE, "{id}: right after ESC @");
        }
    }
}

#[test]
fn chunks_cover_job_and_respect_max() {
    for id in crate::printer::profile::shipped_ids() {
        let p = shipped(id).unwrap();
        let job = compile(&label(), &p, 64).unwrap();
        let mut at = 0;
        for c in &job.chunks {
            assert_eq!(c.start, at);
            assert!(c.end - c.start <= 64 && c.end > c.start);
            assert_eq!(c.at_command_boundary, job.is_boundary(c.end), "{id}");
            at = c.end;
        }
        assert_eq!(at, job.bytes.len());
        let r = job.indicium.clone().unwrap();
        assert!(job.is_boundary(r.start) && job.is_boundary(r.end));
        assert!(job.chunks.iter().any(|c| c.end == r.end));
        assert!(job.chunks.iter().any(|c| c.start == r.start));
        assert!(!job.indicium_complete(r.end - 1) && job.indicium_complete(r.end));
        assert_eq!(job.indicium_native, p.native_2d.data_matrix_cn.is_some());
    }
}

#[test]
fn native_data_matrix_uses_profile_cn() {
    let p = shipped("bixolon-srp-350iii").unwrap();
    let job = compile(&label(), &p, 256).unwrap();
    let r = job.indicium.unwrap();
    // The quiet zone's feed (ESC J, 2 modules of 4 dots), then fn 66 with cn 51.
    assert_eq!(
        &job.bytes[r.start..r.start + 10],
        &[0x1b, 0x4a, 8, 0x1d, 0x28, 0x6b, 5, 0, 51, 66]
    );
}

#[test]
fn raster_bands_within_limits() {
    let p = shipped("generic-80mm").unwrap();
    let big = Bitmap::new(576, 300);
    let l = Label {
        elements: vec![Element::Indicium(Indicium::Image(big))],
        cut: false,
    };
    let job = compile(&l, &p, 256).unwrap();
    let r = job.indicium.unwrap();
    let mut at = r.start;
    let mut rows = 0;
    while at < r.end {
        let b = &job.bytes[at..];
        assert_eq!(&b[..4], &[0x1d, 0x76, 0x30, 0]);
        let x = usize::from(b[4]) | usize::from(b[5]) << 8;
        let y = usize::from(b[6]) | usize::from(b[7]) << 8;
        assert!(
            y as u32 <= p.raster_band_height_px_max && 8 + x * y <= p.receive_buffer_bytes as usize
        );
        rows += y;
        at += 8 + x * y;
    }
    assert_eq!(rows, 300);
}

#[test]
fn too_long_line_names_the_limit() {
    let p = shipped("generic-58mm").unwrap();
    let l = Label {
        elements: vec![Element::Text(TextLine::plain(&"x".repeat(40)))],
        cut: false,
    };
    let err = compile(&l, &p, 256).unwrap_err();
    assert!(
        matches!(err, CompileError::LineTooLong { limit: 32, .. }),
        "{err}"
    );
}

#[test]
fn process_ids_follow_the_indicium_and_end_the_job() {
    for id in crate::printer::profile::shipped_ids() {
        let p = shipped(id).unwrap();
        let opts = CompileOptions {
            job_seq: 21,
            ..CompileOptions::default()
        };
        let job = compile_with(&label(), &p, &opts).unwrap();
        let has = |id: ProcessId| job.bytes.windows(11).any(|w| w == id.command());
        let (ind_id, end_id) = job_process_ids(21);
        assert_eq!(
            (ind_id.to_string(), end_id.to_string()),
            ("0042".into(), "0043".into())
        );
        if !p.status.process_id {
            assert!(job.indicium_pid.is_none() && job.end_pid.is_none(), "{id}");
            assert!(
                !job.bytes.windows(3).any(|w| w == [0x1d, 0x28, 0x48]),
                "{id}"
            );
            continue;
        }
        let r = job.indicium.clone().unwrap();
        let ind = job.indicium_pid.unwrap();
        assert_eq!((ind.offset, ind.id), (r.end, ind_id), "{id}");
        assert_eq!(&job.bytes[ind.offset..ind.offset + 11], &ind_id.command());
        let end = job.end_pid.unwrap();
        assert_eq!(end.id, end_id);
        assert_eq!(
            end.offset + PROCESS_ID_COMMAND_BYTES,
            job.bytes.len(),
            "{id}"
        );
        assert!(job.is_boundary(ind.offset) && job.is_boundary(end.offset));
        assert!(has(ind_id) && has(end_id));
        // The end ID comes after the cut (on label stock: after FS ( L to the cutting
        // position and a cut there).
        let cut = if label_positioning(&p) {
            [LABEL_TO_CUT.to_vec(), cut_here_bytes(&p)].concat()
        } else {
            cut_bytes(&p)
        };
        assert_eq!(&job.bytes[end.offset - cut.len()..end.offset], &cut[..]);
    }
}

#[test]
fn raster_indicium_has_its_id_after_every_band() {
    let p = shipped("epson-tm-l90").unwrap(); // process IDs, no native Data Matrix
    let l = Label {
        elements: vec![Element::Indicium(Indicium::Image(Bitmap::new(320, 600)))],
        cut: true,
    };
    let job = compile(&l, &p, 256).unwrap();
    let r = job.indicium.clone().unwrap();
    let id = job.indicium_pid.unwrap().id;
    let bands = job.bytes[r.clone()]
        .windows(4)
        .filter(|w| *w == [0x1d, 0x76, 0x30, 0])
        .count();
    let marks = job.bytes[r.start..r.end + PROCESS_ID_COMMAND_BYTES]
        .windows(11)
        .filter(|w| *w == id.command())
        .count();
    assert!(bands > 1);
    assert_eq!(marks, bands);
}

#[test]
fn rotated_layout_prints_last_element_first() {
    let p = shipped("virtual").unwrap();
    let opts = CompileOptions {
        layout: Layout::Rotated180,
        ..CompileOptions::default()
    };
    let job = compile_with(&label(), &p, &opts).unwrap();
    assert_eq!(&job.bytes[..2], &[0x1b, 0x40]);
    assert_eq!(&job.bytes[5..8], &[0x1b, 0x7b, 1]);
    let at = |s: &[u8]| job.bytes.windows(s.len()).position(|w| w == s).unwrap();
    // Address last line first, then the indicium, then the heading text.
    assert!(at(b"1 MAIN ST") < at(b"JANE DOE") && at(b"JANE DOE") < at(b"TO:"));
    let r = job.indicium.clone().unwrap();
    assert!(at(b"TO:") < r.start && r.end < at(b"PRIORITY"));
    // At the print area's left, the turned label's right: no justification.
    assert_ne!(&job.bytes[r.start - 3..r.start], &[0x1b, 0x61, 2]);
    assert_eq!(&job.bytes[r.start..r.start + 3], &[0x1b, 0x4a, 8]);
    assert_eq!(job.indicium_pid.unwrap().offset, r.end);
    // A raster indicium is turned by 180°.
    let img = {
        let mut b = Bitmap::new(64, 8);
        b.set(0, 0, true);
        b
    };
    let l = Label {
        elements: vec![Element::Indicium(Indicium::Image(img))],
        cut: false,
    };
    let g = shipped("generic-80mm").unwrap();
    let job = compile_with(&l, &g, &opts).unwrap();
    let r = job.indicium.unwrap();
    let data = &job.bytes[r.start + 8..r.end];
    let stride = data.len() / 8;
    assert_eq!(
        data[..data.len() - 1].iter().filter(|b| **b != 0).count(),
        0
    );
    assert_eq!(data[data.len() - 1], 0x01, "stride {stride}");
}

#[test]
fn nul_init_cancel_finishes_the_command() {
    let p = shipped("generic-80mm").unwrap();
    let job = compile(&label(), &p, 256).unwrap();
    let r = job.indicium.clone().unwrap();
    let c = cancel_bytes(&p, &job, r.start + 20);
    assert_eq!(c.len(), job.remaining_in_command(r.start + 20) + 2);
    assert!(c.len() > 2);
    assert_eq!(&c[c.len() - 2..], &INIT);
}

#[test]
fn band_plan_on_the_generic_profiles_is_78_22_4_rows_and_stall_free() {
    for id in ["generic-58mm", "generic-80mm"] {
        let p = shipped(id).unwrap();
        // The 52 × 52 symbol in quadruple density at 2 image dots a module: 13 bytes a row.
        let plan = band_plan(&p, 13, 104, 2, 0);
        assert_eq!(plan.rows, vec![78, 22, 4], "{id}");
        assert!(plan.stall_free, "{id}");
        // A symbol that fits the buffer is one command.
        assert_eq!(band_plan(&p, 11, 88, 2, 0).rows, vec![88], "{id}");
    }
}

#[test]
fn band_plan_says_when_the_line_cannot_keep_up() {
    let mut p = shipped("generic-80mm").unwrap();
    p.engine_speed_mm_per_s = 400;
    let plan = band_plan(&p, 13, 104, 2, 0);
    assert!(!plan.stall_free);
    assert_eq!(plan.rows.iter().sum::<u32>(), 104);
    for rows in &plan.rows {
        assert!(13 * *rows as usize + RASTER_HEADER_BYTES <= 1024);
    }
}

#[test]
fn the_52_module_symbol_goes_in_the_rules_bands_on_1kb_printers() {
    let p = shipped("generic-80mm").unwrap();
    let data: Vec<u8> = (0..190u32).map(|i| b'A' + (i % 26) as u8).collect();
    let label = Label {
        elements: vec![Element::Indicium(Indicium::DataMatrix {
            data,
            module_px: 3,
        })],
        cut: false,
    };
    let job = compile(&label, &p, 256).unwrap();
    let r = job.indicium.clone().unwrap();
    let heights: Vec<usize> = job.bytes[r]
        .windows(8)
        .filter(|w| w[..4] == [0x1d, 0x76, 0x30, RASTER_QUADRUPLE])
        .map(|w| usize::from(w[6]) | usize::from(w[7]) << 8)
        .collect();
    assert_eq!(heights, vec![78, 22, 4]);
}

#[test]
fn gs_k_refuses_a_body_longer_than_its_length_field() {
    assert_eq!(
        gs_k(&[49, 81, 48]).unwrap(),
        vec![0x1d, 0x28, 0x6b, 3, 0, 49, 81, 48]
    );
    assert_eq!(
        gs_k(&vec![0; 70_000]),
        Err(CompileError::Native2dTooLong(70_000))
    );
    let qr = qr_native(49, b"FRANK QR TEST", 4).unwrap();
    assert_eq!(qr.len(), 5);
    assert_eq!(&qr[3][..8], &[0x1d, 0x28, 0x6b, 16, 0, 49, 80, 48]);
}
