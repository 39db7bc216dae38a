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
