//! The profiles shipped inside the binary (`printer-profiles/*.toml`), by id.

use super::*;

/// Profiles shipped inside the binary, by id (the file stem).
pub(super) const SHIPPED: &[(&str, &str)] = &[
    (
        "epson-tm-t88v",
        include_str!("../../../printer-profiles/epson-tm-t88v.toml"),
    ),
    (
        "epson-tm-t88vi",
        include_str!("../../../printer-profiles/epson-tm-t88vi.toml"),
    ),
    (
        "epson-tm-l90",
        include_str!("../../../printer-profiles/epson-tm-l90.toml"),
    ),
    (
        "epson-tm-l100",
        include_str!("../../../printer-profiles/epson-tm-l100.toml"),
    ),
    (
        "bixolon-srp-350iii",
        include_str!("../../../printer-profiles/bixolon-srp-350iii.toml"),
    ),
    (
        "generic-58mm",
        include_str!("../../../printer-profiles/generic-58mm.toml"),
    ),
    (
        "generic-80mm",
        include_str!("../../../printer-profiles/generic-80mm.toml"),
    ),
    (
        "virtual",
        include_str!("../../../printer-profiles/virtual.toml"),
    ),
    (
        "virtual-58mm",
        include_str!("../../../printer-profiles/virtual-58mm.toml"),
    ),
];

/// Shipped ZPL profiles (`language = "zpl"`), by id (docs/PRINTING.md §ZPL).
pub(super) const SHIPPED_ZPL: &[(&str, &str)] = &[
    (
        "zebra-zd421-203",
        include_str!("../../../printer-profiles/zebra-zd421-203.toml"),
    ),
    (
        "zebra-zd421-300",
        include_str!("../../../printer-profiles/zebra-zd421-300.toml"),
    ),
    (
        "zebra-zd621-203",
        include_str!("../../../printer-profiles/zebra-zd621-203.toml"),
    ),
    (
        "zebra-zd621-300",
        include_str!("../../../printer-profiles/zebra-zd621-300.toml"),
    ),
    (
        "zebra-gk420d",
        include_str!("../../../printer-profiles/zebra-gk420d.toml"),
    ),
    (
        "zebra-generic-2in",
        include_str!("../../../printer-profiles/zebra-generic-2in.toml"),
    ),
    (
        "zebra-virtual",
        include_str!("../../../printer-profiles/zebra-virtual.toml"),
    ),
];

/// Ids of the shipped ESC/POS profiles, in a stable order.
pub fn shipped_ids() -> impl Iterator<Item = &'static str> {
    SHIPPED.iter().map(|(id, _)| *id)
}

/// Ids of the shipped ZPL profiles, in a stable order.
pub fn shipped_zpl_ids() -> impl Iterator<Item = &'static str> {
    SHIPPED_ZPL.iter().map(|(id, _)| *id)
}

/// Ids of every shipped profile, ESC/POS first.
pub fn all_shipped_ids() -> impl Iterator<Item = &'static str> {
    shipped_ids().chain(shipped_zpl_ids())
}

/// The TOML text of a shipped profile.
pub fn shipped_source(id: &str) -> Option<&'static str> {
    SHIPPED
        .iter()
        .chain(SHIPPED_ZPL)
        .find(|(i, _)| *i == id)
        .map(|(_, s)| *s)
}

/// Load and validate a shipped profile by id.
pub fn shipped(id: &str) -> Result<Profile, ProfileError> {
    let src = shipped_source(id).ok_or_else(|| ProfileError::UnknownProfile(id.to_string()))?;
    let raw = RawProfile::parse(id, src, &|parent| {
        shipped_source(parent).map(str::to_string)
    })?;
    Profile::from_raw(id, &raw).map_err(ProfileError::Invalid)
}
