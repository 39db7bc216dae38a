//! Unit tests of profiles (moved out of `mod.rs`).

use super::*;

#[test]
fn every_shipped_profile_validates() {
    for id in all_shipped_ids() {
        let p = shipped(id).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(p.id, id);
        assert!(p.media_width_px > 0);
    }
}

#[test]
fn known_geometry() {
    let t88v = shipped("epson-tm-t88v").unwrap();
    assert_eq!((t88v.media_width_px, t88v.dpi), (512, 180));
    let l90 = shipped("epson-tm-l90").unwrap();
    assert_eq!((l90.media_width_px, l90.dpi), (576, 203));
    assert_eq!(l90.media_kind, MediaKind::Gap);
}

#[test]
fn inherits_merges_features_flag_by_flag() {
    let child = r#"
        inherits = "epson-tm-t88v"
        name = "Child"
        [features]
        qrCode = false
    "#;
    let p = Profile::from_toml("child", child).unwrap();
    let parent = shipped("epson-tm-t88v").unwrap();
    assert!(!p.features.qr_code);
    assert_eq!(
        p.features.bit_image_raster,
        parent.features.bit_image_raster
    );
    assert!(p.features.bit_image_raster);
    assert_eq!(p.serial, parent.serial);
    assert_eq!(p.name, "Child");
}

#[test]
fn one_error_per_bad_field() {
    let bad = r#"
        inherits = "generic-80mm"
        name = ""
        [media]
        dpi = 5000
        width_px = 577
        [serial]
        flow_control = "dsr"
        baud = "fast"
        [features]
        warpDrive = true
        [buffer]
        recieve_bytes = 4
    "#;
    let Err(ProfileError::Invalid(errs)) = Profile::from_toml("bad", bad) else {
        panic!("expected field errors");
    };
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    for f in [
        "name",
        "media.dpi",
        "media.width_px",
        "serial.flow_control",
        "serial.baud",
        "features.warpDrive",
        "buffer.recieve_bytes",
    ] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }
}

#[test]
fn inherits_names_an_id_never_a_path() {
    let lookup = |_: &str| Some("name = \"parent\"".to_string());
    for bad in [
        "../../x",
        "/etc/passwd",
        "..",
        "sub/dir",
        "x.toml",
        "",
        "a\\b",
        &"a".repeat(PROFILE_ID_BYTES_MAX + 1),
    ] {
        let src = format!("inherits = {}", toml::Value::String(bad.to_string()));
        let err = RawProfile::parse("mine", &src, &lookup).unwrap_err();
        assert!(
            matches!(err, ProfileError::InheritsNotAnId { .. }),
            "{bad:?}: {err}"
        );
        assert!(err.to_string().contains("never a path"), "{err}");
    }
    for good in ["epson-tm-t88v", "generic_80mm", "X1"] {
        let src = format!("inherits = \"{good}\"");
        assert!(RawProfile::parse("mine", &src, &lookup).is_ok(), "{good}");
    }
}

#[test]
fn inherits_loop_is_refused() {
    let looped = r#"inherits = "looped""#;
    let r = RawProfile::parse("looped", looped, &|_| Some(looped.to_string()));
    assert!(matches!(r, Err(ProfileError::InheritsTooDeep { .. })));
}

fn refused(src: &str) -> Vec<FieldError> {
    match Profile::from_toml("x", src) {
        Err(ProfileError::Invalid(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn profiles_that_cannot_print_value_are_refused() {
    let base = "inherits = \"generic-80mm\"\n";
    let no_image = format!(
        "{base}name = \"Text only\"\n[features]\nbitImageRaster = false\nbitImageColumn = false\n"
    );
    let e = refused(&no_image);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].field, "features.bitImageRaster");
    assert!(
        e[0].message.contains("cannot print an indicium"),
        "{}",
        e[0]
    );
    let column = format!("{base}name = \"Column\"\n[features]\nbitImageRaster = false\n");
    let e = refused(&column);
    assert!(e[0].message.contains("columns (ESC *)"), "{}", e[0]);
    let star = format!("{base}name = \"TSP100\"\n[features]\nstarCommands = true\n");
    let e = refused(&star);
    assert_eq!(e[0].field, "features.starCommands");
    assert!(e[0].message.contains("Star"), "{}", e[0]);
    let display = format!("{base}name = \"OCD-300 Customer Display\"\n");
    let e = refused(&display);
    assert_eq!(e[0].field, "name");
    assert!(e[0].message.contains("customer display"), "{}", e[0]);
    let narrow = format!("{base}name = \"Narrow\"\n[media]\nwidth_mm = 25.0\nwidth_px = 160\n");
    let e = refused(&narrow);
    assert_eq!(e[0].field, "media.width_px");
    // Native Data Matrix alone is enough.
    let native = format!(
        "{base}name = \"Native\"\n[features]\nbitImageRaster = false\n[native_2d]\ndata_matrix_cn = 54\n"
    );
    assert!(Profile::from_toml("n", &native).is_ok());
}

#[test]
fn toml_round_trip() {
    for id in all_shipped_ids() {
        let p = shipped(id).unwrap();
        let again = Profile::from_toml(id, &p.to_toml()).unwrap();
        assert_eq!(p, again, "{id}");
    }
}

/// Each enum's one table covers every value once and reads back what it writes.
fn table_round_trips<T: Named + std::fmt::Debug>(all: &[T]) {
    assert_eq!(T::NAMES.len(), all.len(), "{all:?}");
    for v in all {
        let name = v.name();
        assert!(!name.is_empty(), "{v:?} has no name");
        assert_eq!(
            T::NAMES.iter().filter(|(n, _)| *n == name).count(),
            1,
            "{name}"
        );
        assert_eq!(
            T::NAMES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t),
            Some(*v)
        );
    }
}

#[test]
fn every_enum_name_is_written_once_and_reads_back() {
    table_round_trips(&[MediaKind::Continuous, MediaKind::Gap, MediaKind::BlackMark]);
    table_round_trips(&[LabelCommands::None, LabelCommands::EpsonFsL]);
    table_round_trips(&[Language::EscPos, Language::Zpl]);
    table_round_trips(&[ZplIndicium::Native, ZplIndicium::Graphic]);
    table_round_trips(&[
        FlowControl::None,
        FlowControl::XonXoff,
        FlowControl::RtsCts,
        FlowControl::DtrDsr,
    ]);
    table_round_trips(&[Parity::None, Parity::Odd, Parity::Even]);
    table_round_trips(&[
        CutCommand::None,
        CutCommand::Full,
        CutCommand::Partial,
        CutCommand::FeedFull,
        CutCommand::FeedPartial,
    ]);
    table_round_trips(&[ClearBuffer::DleDc4, ClearBuffer::NulInit]);
}
