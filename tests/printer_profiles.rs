//! Profiles: the importer on a hand-written sample of escpos-printer-db's capabilities.json.

use frank::printer::import::import_capabilities;
use frank::printer::profile::CutCommand;

const SAMPLE: &str = include_str!("fixtures/capabilities-sample.json");

#[test]
fn imports_messy_capabilities() {
    let (ok, skipped) = import_capabilities(SAMPLE).unwrap();
    let ids: Vec<&str> = ok.iter().map(|i| i.id.as_str()).collect();
    assert!(ids.contains(&"default") && ids.contains(&"tm-l90") && ids.contains(&"zj-5870"));

    let l90 = ok.iter().find(|i| i.id == "tm-l90").unwrap();
    assert_eq!(l90.profile.media_width_mm, Some(79.5));
    assert_eq!((l90.profile.media_width_px, l90.profile.dpi), (576, 203));
    assert_eq!(l90.profile.cut, CutCommand::FeedFull);
    assert!(l90.warnings.is_empty(), "{:?}", l90.warnings);

    // "Unknown" dpi and pixels: guessed, and said so.
    let zj = ok.iter().find(|i| i.id == "zj-5870").unwrap();
    assert_eq!(zj.profile.dpi, 203);
    assert_eq!(zj.profile.media_width_px, 392);
    assert_eq!(zj.warnings.len(), 2, "{:?}", zj.warnings);

    // inherits inside the file merges feature flags one by one.
    let child = ok.iter().find(|i| i.id == "child").unwrap();
    assert!(child.profile.features.qr_code);
    assert!(child.profile.features.bit_image_raster);
    assert!(!child.profile.features.paper_part_cut);
    assert_eq!(child.profile.media_width_px, 576);

    // No width at all: skipped with a reason.
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].db_key, "OCD-300");
    assert!(skipped[0].reasons[0].contains("width"));

    // The TOML written out reads back to the same profile.
    for i in &ok {
        let again = frank::printer::profile::Profile::from_toml(&i.id, &i.toml).unwrap();
        assert_eq!(again, i.profile);
    }
}

#[test]
fn not_json_and_no_profiles_are_errors() {
    assert!(import_capabilities("{").is_err());
    assert!(import_capabilities("{\"encodings\":{}}").is_err());
}

/// escpos-printer-db entries Frank cannot print value with: a customer display, a column-image
/// printer, a Star printer, a printer with no image command at all; and one it can.
const REFUSED_SAMPLE: &str = r#"{
  "profiles": {
    "OCD-100": {"name": "OCD-100 Customer Display", "vendor": "Aures",
      "features": {"bitImageRaster": true},
      "media": {"dpi": 203, "width": {"mm": 80, "pixels": 576}}},
    "SP2000": {"name": "SP2000 Series", "vendor": "Citizen",
      "features": {"bitImageColumn": true, "bitImageRaster": false},
      "media": {"dpi": 203, "width": {"mm": 80, "pixels": 576}}},
    "TSP600": {"name": "TSP600", "vendor": "Star Micronics",
      "features": {"bitImageRaster": true, "starCommands": true},
      "media": {"dpi": 203, "width": {"mm": 80, "pixels": 576}}},
    "TEXT-ONLY": {"name": "Text only", "vendor": "Generic",
      "features": {},
      "media": {"dpi": 203, "width": {"mm": 80, "pixels": 576}}},
    "GOOD": {"name": "Good", "vendor": "Generic",
      "features": {"bitImageRaster": true},
      "media": {"dpi": 203, "width": {"mm": 80, "pixels": 576}}}
  }
}"#;

#[test]
fn import_refuses_printers_that_cannot_print_value_with_the_reason() {
    let (ok, skipped) = import_capabilities(REFUSED_SAMPLE).unwrap();
    let ids: Vec<&str> = ok.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, vec!["good"]);
    let reason = |key: &str| {
        skipped
            .iter()
            .find(|s| s.db_key == key)
            .unwrap_or_else(|| panic!("{key} not skipped"))
            .reasons
            .join("; ")
    };
    assert!(reason("OCD-100").contains("customer display"));
    assert!(reason("SP2000").contains("columns (ESC *)"));
    assert!(reason("TSP600").contains("Star"));
    assert!(reason("TEXT-ONLY").contains("cannot print an indicium"));
}

fn frank() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_frank"))
}

#[test]
fn validate_and_the_counter_refuse_a_star_profile_before_anything_happens() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("star.toml");
    std::fs::write(
        &file,
        "inherits = \"generic-80mm\"\nname = \"TSP100\"\n[features]\nstarCommands = true\n",
    )
    .unwrap();
    let out = frank()
        .args(["printer", "profiles", "validate"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("features.starCommands") && text.contains("ESC/POS only"),
        "{text}"
    );

    // The counter stops at its settings: no data directory made, no vendor asked.
    let data = tmp.path().join("terminal");
    let out = frank()
        .args(["counter", "--vendor", "127.0.0.1:9", "--pin"])
        .arg("03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8")
        .arg("--data")
        .arg(&data)
        .args(["--printer", "/dev/null", "--profile"])
        .arg(&file)
        .env("XDG_CONFIG_HOME", tmp.path())
        .env("XDG_STATE_HOME", tmp.path())
        .env("XDG_DATA_HOME", tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Star"), "{err}");
    assert!(
        !data.exists(),
        "the counter made its data directory before refusing"
    );
}
