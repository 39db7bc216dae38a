//! Printer profiles: what a printer model can do and how to talk to it.
//!
//! A profile file is TOML, a superset of escpos-printer-db's profile (name, vendor, notes, media,
//! fonts, code pages, feature flags, `inherits`) plus Frank's fields (media kind and label
//! length, native 2-D `cn` numbers, serial line settings, receive buffer, raster band limit,
//! throughput, status support, cut command, clear-buffer method). See docs/PRINTING.md.
//!
//! Loading is two steps: [`RawProfile`] is the parsed TOML table with `inherits` resolved by a
//! deep merge (tables merge key by key, so feature flags merge flag by flag); [`Profile::from_raw`]
//! validates every field and reports one [`FieldError`] per bad field, never stopping at the first.
//!
//! Files, one concern each: this one — the profile's types, each enum's names in one table
//! ([`Named`]) used both to read and to write them; `shipped` (the built-in set); `raw` (text →
//! table, `inherits`); `validate` (table → profile, refusals); `toml_out` (profile → TOML).

use std::collections::BTreeMap;
use std::fmt;

mod raw;
mod shipped;
mod toml_out;
mod validate;

pub use self::raw::*;
pub use self::shipped::*;

/// Deepest `inherits` chain followed before giving up (a loop or a mistake).
pub const INHERITS_DEPTH_MAX: usize = 8;

/// Longest profile id `inherits` may name, in bytes.
pub const PROFILE_ID_BYTES_MAX: usize = 64;

/// Largest receive buffer a profile may claim.
pub const RECEIVE_BUFFER_BYTES_MAX: u32 = 1 << 20;

/// Largest raster band a profile may claim (GS v 0 takes yL yH, so 65535 is the protocol bound).
pub const RASTER_BAND_HEIGHT_PX_MAX: u32 = 2400;

/// Engine speed bounds and the default for profiles that do not say (a slow receipt printer).
pub const ENGINE_SPEED_MM_PER_S_MIN: u32 = 10;

pub const ENGINE_SPEED_MM_PER_S_MAX: u32 = 1000;

pub const ENGINE_SPEED_MM_PER_S_DEFAULT: u32 = 50;

/// An enum whose values have names in profile files. The one table per enum ([`Named::NAMES`])
/// is what `validate` reads and `toml_out` writes, so a name is written once.
pub trait Named: Copy + PartialEq + 'static {
    /// Every value with its name.
    const NAMES: &'static [(&'static str, Self)];

    /// This value's name in a profile file (every value is in [`Named::NAMES`]: the tests check
    /// each table both ways).
    fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("", |(n, _)| n)
    }
}

/// How the paper is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaKind {
    /// Receipt roll: a label is as long as what is printed.
    Continuous,
    /// Die-cut labels separated by a gap.
    Gap,
    /// Labels marked by a black mark on the back.
    BlackMark,
}

/// Default gap between labels, in mm (die-cut label stock commonly has 2–3 mm).
pub const GAP_MM_DEFAULT: f64 = 3.0;

/// How a printer is told where labels are (docs/PRINTING.md §Media).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LabelCommands {
    /// None: the job feeds as on a roll (labels drift on gap and black-mark media).
    None,
    /// Epson `FS ( L`: fn 67 feeds to the label's print starting position before the label,
    /// fn 66 to the cutting position (in the gap) before the cut (TM-L90, TM-L100).
    EpsonFsL,
}

impl Profile {
    /// Dot rows of one label and of the gap after it, on gap or black-mark media.
    pub fn label_rows(&self) -> Option<(u32, u32)> {
        if self.media_kind == MediaKind::Continuous {
            return None;
        }
        let rows = |mm: f64| (mm * f64::from(self.dpi) / 25.4).round() as u32;
        Some((rows(self.label_length_mm?), rows(self.gap_mm).max(1)))
    }
}

/// The printer's command language (`language`, default `escpos`): it chooses the compiler,
/// the status reader, the cancel sequence and the emulator; the job book, the streamer's link
/// checks and pacing, the abort rules and the outcome are shared (docs/PRINTING.md §ZPL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Language {
    /// Epson ESC/POS (`compiler`, `DLE EOT`, `DLE DC4 fn 8`).
    #[default]
    EscPos,
    /// Zebra ZPL II (`zpl::compiler`, `~HS`, `~JA`): a label prints only once its `^XZ` arrived.
    Zpl,
}

/// How a ZPL profile prints the indicium (`zpl.indicium`, default `native`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ZplIndicium {
    /// `^BX` Data Matrix, ECC 200, drawn by the printer.
    #[default]
    Native,
    /// `^GF` graphic field: Frank's own rendering of the symbol.
    Graphic,
}

/// Serial flow control. `DtrDsr` is done by Frank watching DSR itself (serialport lacks it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlowControl {
    None,
    XonXoff,
    RtsCts,
    DtrDsr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Parity {
    None,
    Odd,
    Even,
}

/// The cut command a printer gets at the end of a label (`GS V m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CutCommand {
    /// No cutter: feed only.
    None,
    /// GS V 0.
    Full,
    /// GS V 1.
    Partial,
    /// GS V 65 n: feed n, then full cut.
    FeedFull,
    /// GS V 66 n: feed n, then partial cut.
    FeedPartial,
}

/// How to throw away what the printer has buffered when a job is aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClearBuffer {
    /// DLE DC4 fn 8 (10 14 08 01 03 14 01 06 02 08), then wait for 37 25 00.
    DleDc4,
    /// Finish the half-received command with NULs, then ESC @.
    NulInit,
}

impl Named for MediaKind {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("continuous", MediaKind::Continuous),
        ("gap", MediaKind::Gap),
        ("black_mark", MediaKind::BlackMark),
    ];
}

impl Named for LabelCommands {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("none", LabelCommands::None),
        ("fs_l", LabelCommands::EpsonFsL),
    ];
}

impl Named for Language {
    const NAMES: &'static [(&'static str, Self)] =
        &[("escpos", Language::EscPos), ("zpl", Language::Zpl)];
}

impl Named for ZplIndicium {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("native", ZplIndicium::Native),
        ("graphic", ZplIndicium::Graphic),
    ];
}

impl Named for FlowControl {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("none", FlowControl::None),
        ("xonxoff", FlowControl::XonXoff),
        ("rtscts", FlowControl::RtsCts),
        ("dtrdsr", FlowControl::DtrDsr),
    ];
}

impl Named for Parity {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("none", Parity::None),
        ("odd", Parity::Odd),
        ("even", Parity::Even),
    ];
}

impl Named for CutCommand {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("none", CutCommand::None),
        ("full", CutCommand::Full),
        ("partial", CutCommand::Partial),
        ("feed_full", CutCommand::FeedFull),
        ("feed_partial", CutCommand::FeedPartial),
    ];
}

impl Named for ClearBuffer {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("dle_dc4", ClearBuffer::DleDc4),
        ("nul_init", ClearBuffer::NulInit),
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Font {
    pub name: String,
    pub columns: u32,
}

/// escpos-printer-db's feature flags, resolved (missing = false).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    pub barcode_a: bool,
    pub barcode_b: bool,
    pub bit_image_raster: bool,
    pub bit_image_column: bool,
    pub graphics: bool,
    pub star_commands: bool,
    pub qr_code: bool,
    pub pdf417_code: bool,
    pub high_density: bool,
    pub pulse_standard: bool,
    pub pulse_bel: bool,
    pub paper_full_cut: bool,
    pub paper_part_cut: bool,
}

/// The db's flag names, in file order.
pub const FEATURE_NAMES: &[&str] = &[
    "barcodeA",
    "barcodeB",
    "bitImageRaster",
    "bitImageColumn",
    "graphics",
    "starCommands",
    "qrCode",
    "pdf417Code",
    "highDensity",
    "pulseStandard",
    "pulseBel",
    "paperFullCut",
    "paperPartCut",
];

impl Features {
    fn flag_mut(&mut self, name: &str) -> Option<&mut bool> {
        Some(match name {
            "barcodeA" => &mut self.barcode_a,
            "barcodeB" => &mut self.barcode_b,
            "bitImageRaster" => &mut self.bit_image_raster,
            "bitImageColumn" => &mut self.bit_image_column,
            "graphics" => &mut self.graphics,
            "starCommands" => &mut self.star_commands,
            "qrCode" => &mut self.qr_code,
            "pdf417Code" => &mut self.pdf417_code,
            "highDensity" => &mut self.high_density,
            "pulseStandard" => &mut self.pulse_standard,
            "pulseBel" => &mut self.pulse_bel,
            "paperFullCut" => &mut self.paper_full_cut,
            "paperPartCut" => &mut self.paper_part_cut,
            _ => return None,
        })
    }

    pub fn flag(&self, name: &str) -> Option<bool> {
        let mut c = *self;
        c.flag_mut(name).map(|b| *b)
    }
}

/// Native 2-D symbologies through `GS ( k`, each with this printer's `cn`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Native2d {
    pub pdf417_cn: Option<u8>,
    pub qr_cn: Option<u8>,
    pub data_matrix_cn: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serial {
    pub baud: u32,
    pub data_bits: u8,
    pub parity: Parity,
    pub stop_bits: u8,
    pub flow_control: FlowControl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusSupport {
    /// Real-time status `DLE EOT n`.
    pub dle_eot: bool,
    /// Automatic status back `GS a n`.
    pub asb: bool,
    /// `GS ( H` fn 48 process ID responses: the printer answers `37 22 d1..d4 00` once the
    /// data before the ID has printed (Epson TM-L90, TM-L100, TM-T88IV–VII, TM-T20 …).
    pub process_id: bool,
}

/// A validated printer profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub id: String,
    pub name: String,
    pub vendor: String,
    pub notes: String,
    pub media_width_mm: Option<f64>,
    pub media_width_px: u32,
    pub dpi: u32,
    pub media_kind: MediaKind,
    pub label_length_mm: Option<f64>,
    /// Gap (or black mark) between labels, in mm (`media.gap_mm`, default [`GAP_MM_DEFAULT`]).
    pub gap_mm: f64,
    /// How labels are positioned on gap and black-mark media (`media.label_commands`).
    pub label_commands: LabelCommands,
    pub fonts: BTreeMap<u8, Font>,
    pub code_pages: BTreeMap<u8, String>,
    pub features: Features,
    pub native_2d: Native2d,
    pub serial: Serial,
    pub receive_buffer_bytes: u32,
    pub raster_band_height_px_max: u32,
    pub throughput_bytes_per_s: u32,
    /// Paper speed of the print engine in mm/s, as the spec sheet gives it (`[engine]`).
    pub engine_speed_mm_per_s: u32,
    pub status: StatusSupport,
    pub cut: CutCommand,
    pub cut_feed_lines: u8,
    pub clear_buffer: ClearBuffer,
    /// Whether an aborted job ends with a VOID label (docs/PRINTING.md §VOID).
    pub void_on_abort: bool,
    /// Whether the printer has ESC/POS page mode (`ESC L`, `ESC W`, `ESC T`, `ESC $`, `GS $`,
    /// `FF`): a postage label's top band — the indicium with its human-readable block beside it —
    /// is composed there and printed at once (docs/PRINTING.md §Top band). Default false.
    pub page_mode: bool,
    /// The command language (`language`).
    pub language: Language,
    /// ZPL profiles: native `^BX` or a `^GF` graphic for the indicium (`zpl.indicium`).
    pub zpl_indicium: ZplIndicium,
}

impl Profile {
    /// Bytes per second the line itself carries (start + data + parity + stop bits per byte).
    pub fn line_bytes_per_s(&self) -> u32 {
        let bits = 1
            + u32::from(self.serial.data_bits)
            + u32::from(self.serial.parity != Parity::None)
            + u32::from(self.serial.stop_bits);
        (self.serial.baud / bits).max(1)
    }

    /// What the printer can take in per second: the slower of line and print engine.
    pub fn sustained_bytes_per_s(&self) -> u32 {
        self.line_bytes_per_s()
            .min(self.throughput_bytes_per_s)
            .max(1)
    }

    /// Dot rows the engine prints per second: speed × dpi / 25.4.
    pub fn engine_rows_per_s(&self) -> f64 {
        f64::from(self.engine_speed_mm_per_s) * f64::from(self.dpi.max(1)) / 25.4
    }
}

/// Modules a side of the largest indicium symbol with its quiet zone: 174 bytes fit 52 × 52
/// (docs/INDICIUM.md §Symbol), plus 2 quiet modules each way.
pub const INDICIUM_SIDE_MODULES_MAX: u32 = 52 + 2 * crate::indicium::render::QUIET_MODULES;

#[cfg(test)]
mod tests;
