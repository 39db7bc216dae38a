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

use std::collections::BTreeMap;
use std::fmt;

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

/// Profiles shipped inside the binary, by id (the file stem).
const SHIPPED: &[(&str, &str)] = &[
    (
        "epson-tm-t88v",
        include_str!("../../printer-profiles/epson-tm-t88v.toml"),
    ),
    (
        "epson-tm-t88vi",
        include_str!("../../printer-profiles/epson-tm-t88vi.toml"),
    ),
    (
        "epson-tm-l90",
        include_str!("../../printer-profiles/epson-tm-l90.toml"),
    ),
    (
        "epson-tm-l100",
        include_str!("../../printer-profiles/epson-tm-l100.toml"),
    ),
    (
        "bixolon-srp-350iii",
        include_str!("../../printer-profiles/bixolon-srp-350iii.toml"),
    ),
    (
        "generic-58mm",
        include_str!("../../printer-profiles/generic-58mm.toml"),
    ),
    (
        "generic-80mm",
        include_str!("../../printer-profiles/generic-80mm.toml"),
    ),
    (
        "virtual",
        include_str!("../../printer-profiles/virtual.toml"),
    ),
    (
        "virtual-58mm",
        include_str!("../../printer-profiles/virtual-58mm.toml"),
    ),
];

/// Shipped ZPL profiles (`language = "zpl"`), by id (docs/PRINTING.md §ZPL).
const SHIPPED_ZPL: &[(&str, &str)] = &[
    (
        "zebra-zd421-203",
        include_str!("../../printer-profiles/zebra-zd421-203.toml"),
    ),
    (
        "zebra-zd421-300",
        include_str!("../../printer-profiles/zebra-zd421-300.toml"),
    ),
    (
        "zebra-zd621-203",
        include_str!("../../printer-profiles/zebra-zd621-203.toml"),
    ),
    (
        "zebra-zd621-300",
        include_str!("../../printer-profiles/zebra-zd621-300.toml"),
    ),
    (
        "zebra-gk420d",
        include_str!("../../printer-profiles/zebra-gk420d.toml"),
    ),
    (
        "zebra-generic-2in",
        include_str!("../../printer-profiles/zebra-generic-2in.toml"),
    ),
    (
        "zebra-virtual",
        include_str!("../../printer-profiles/zebra-virtual.toml"),
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

/// A profile file's problems.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    #[error("no profile named {0:?} (see `frank printer profiles list`)")]
    UnknownProfile(String),
    #[error("profile {id}: not valid TOML: {message}")]
    Toml { id: String, message: String },
    #[error("profile {id}: inherits {parent:?}, which is neither shipped nor next to it")]
    UnknownParent { id: String, parent: String },
    #[error("profile {id}: `inherits` chain deeper than {INHERITS_DEPTH_MAX} (a loop?)")]
    InheritsTooDeep { id: String },
    #[error(
        "profile {id}: `inherits` must name a profile id (letters, digits, '-' and '_', at most {PROFILE_ID_BYTES_MAX}, like \"epson-tm-t88v\"), never a path"
    )]
    InheritsNotAnId { id: String },
    #[error("{}", FieldErrors(.0))]
    Invalid(Vec<FieldError>),
}

/// One bad field: its dotted path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

struct FieldErrors<'a>(&'a [FieldError]);

impl fmt::Display for FieldErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} bad field(s):", self.0.len())?;
        for e in self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// A parsed profile table with `inherits` resolved, not yet validated.
#[derive(Debug, Clone)]
pub struct RawProfile {
    pub table: toml::Table,
}

impl RawProfile {
    /// Parse `src`; `lookup` returns the TOML text of a parent profile by id.
    pub fn parse(
        id: &str,
        src: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ProfileError> {
        let mut table = parse_table(id, src)?;
        let mut chain = vec![id.to_string()];
        while let Some(parent) = take_inherits(&mut table) {
            if !is_profile_id(&parent) {
                return Err(ProfileError::InheritsNotAnId { id: id.to_string() });
            }
            if chain.len() > INHERITS_DEPTH_MAX || chain.contains(&parent) {
                return Err(ProfileError::InheritsTooDeep { id: id.to_string() });
            }
            let psrc = lookup(&parent).ok_or_else(|| ProfileError::UnknownParent {
                id: id.to_string(),
                parent: parent.clone(),
            })?;
            let mut base = parse_table(&parent, &psrc)?;
            let grand = take_inherits(&mut base);
            merge(&mut base, table);
            table = base;
            if let Some(g) = grand {
                table.insert("inherits".into(), toml::Value::String(g));
            }
            chain.push(parent);
        }
        Ok(RawProfile { table })
    }
}

/// Whether `text` is a profile id: 1..=[`PROFILE_ID_BYTES_MAX`] ASCII letters, digits, '-' and
/// '_' (so never `..`, `/` or an absolute path: a lookup by id stays in its directory).
pub fn is_profile_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= PROFILE_ID_BYTES_MAX
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn parse_table(id: &str, src: &str) -> Result<toml::Table, ProfileError> {
    src.parse::<toml::Table>().map_err(|e| ProfileError::Toml {
        id: id.to_string(),
        message: e.to_string(),
    })
}

fn take_inherits(t: &mut toml::Table) -> Option<String> {
    match t.remove("inherits") {
        Some(toml::Value::String(s)) => Some(s),
        _ => None,
    }
}

/// Deep merge: `over`'s keys win; tables merge key by key (feature flags merge flag by flag).
pub fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
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
    /// Parse and validate a profile file's text; parents come from the shipped set.
    pub fn from_toml(id: &str, src: &str) -> Result<Profile, ProfileError> {
        let raw = RawProfile::parse(id, src, &|p| shipped_source(p).map(str::to_string))?;
        Profile::from_raw(id, &raw).map_err(ProfileError::Invalid)
    }

    /// Validate a resolved table; one error per bad field.
    pub fn from_raw(id: &str, raw: &RawProfile) -> Result<Profile, Vec<FieldError>> {
        let mut v = Reader::new(&raw.table);
        let name = v.string("name", true).unwrap_or_default();
        let vendor = v.string("vendor", false).unwrap_or_default();
        let notes = v.string("notes", false).unwrap_or_default();
        let media_width_mm = v.float("media.width_mm", false, 10.0, 300.0);
        let media_width_px = v.uint("media.width_px", true, 8, 4096).unwrap_or(0);
        let dpi = v.uint("media.dpi", true, 100, 600).unwrap_or(0);
        let media_kind = v
            .choice(
                "media.kind",
                &[
                    ("continuous", MediaKind::Continuous),
                    ("gap", MediaKind::Gap),
                    ("black_mark", MediaKind::BlackMark),
                ],
                Some(MediaKind::Continuous),
            )
            .unwrap_or(MediaKind::Continuous);
        let label_length_mm = v.float("media.label_length_mm", false, 5.0, 2000.0);
        let gap_mm = v
            .float("media.gap_mm", false, 0.5, 50.0)
            .unwrap_or(GAP_MM_DEFAULT);
        let label_commands = v
            .choice(
                "media.label_commands",
                &[
                    ("none", LabelCommands::None),
                    ("fs_l", LabelCommands::EpsonFsL),
                ],
                Some(LabelCommands::None),
            )
            .unwrap_or(LabelCommands::None);
        if media_kind != MediaKind::Continuous && label_length_mm.is_none() {
            v.err(
                "media.label_length_mm",
                "required when media.kind is gap or black_mark",
            );
        }
        let fonts = v.fonts();
        let code_pages = v.code_pages();
        let features = v.features();
        let native_2d = Native2d {
            pdf417_cn: v
                .uint("native_2d.pdf417_cn", false, 0, 255)
                .map(|n| n as u8),
            qr_cn: v.uint("native_2d.qr_cn", false, 0, 255).map(|n| n as u8),
            data_matrix_cn: v
                .uint("native_2d.data_matrix_cn", false, 0, 255)
                .map(|n| n as u8),
        };
        let serial = Serial {
            baud: v.uint("serial.baud", true, 300, 4_000_000).unwrap_or(9600),
            data_bits: v.uint("serial.data_bits", false, 7, 8).unwrap_or(8) as u8,
            parity: v
                .choice(
                    "serial.parity",
                    &[
                        ("none", Parity::None),
                        ("odd", Parity::Odd),
                        ("even", Parity::Even),
                    ],
                    Some(Parity::None),
                )
                .unwrap_or(Parity::None),
            stop_bits: v.uint("serial.stop_bits", false, 1, 2).unwrap_or(1) as u8,
            flow_control: v
                .choice(
                    "serial.flow_control",
                    &[
                        ("none", FlowControl::None),
                        ("xonxoff", FlowControl::XonXoff),
                        ("rtscts", FlowControl::RtsCts),
                        ("dtrdsr", FlowControl::DtrDsr),
                    ],
                    None,
                )
                .unwrap_or(FlowControl::None),
        };
        let receive_buffer_bytes = v
            .uint("buffer.receive_bytes", true, 64, RECEIVE_BUFFER_BYTES_MAX)
            .unwrap_or(0);
        let raster_band_height_px_max = v
            .uint(
                "buffer.raster_band_height_px_max",
                true,
                8,
                RASTER_BAND_HEIGHT_PX_MAX,
            )
            .unwrap_or(0);
        let throughput_bytes_per_s = v
            .uint("buffer.throughput_bytes_per_s", true, 10, 1_000_000)
            .unwrap_or(0);
        let status = StatusSupport {
            dle_eot: v.boolean("status.dle_eot", false).unwrap_or(false),
            asb: v.boolean("status.asb", false).unwrap_or(false),
            process_id: v.boolean("status.process_id", false).unwrap_or(false),
        };
        let engine_speed_mm_per_s = v
            .uint(
                "engine.speed_mm_per_s",
                false,
                ENGINE_SPEED_MM_PER_S_MIN,
                ENGINE_SPEED_MM_PER_S_MAX,
            )
            .unwrap_or(ENGINE_SPEED_MM_PER_S_DEFAULT);
        let cut = v
            .choice(
                "cut.command",
                &[
                    ("none", CutCommand::None),
                    ("full", CutCommand::Full),
                    ("partial", CutCommand::Partial),
                    ("feed_full", CutCommand::FeedFull),
                    ("feed_partial", CutCommand::FeedPartial),
                ],
                None,
            )
            .unwrap_or(CutCommand::None);
        let cut_feed_lines = v.uint("cut.feed_lines", false, 0, 255).unwrap_or(3) as u8;
        let language = v
            .choice(
                "language",
                &[("escpos", Language::EscPos), ("zpl", Language::Zpl)],
                Some(Language::EscPos),
            )
            .unwrap_or_default();
        let zpl_indicium = v
            .choice(
                "zpl.indicium",
                &[
                    ("native", ZplIndicium::Native),
                    ("graphic", ZplIndicium::Graphic),
                ],
                Some(ZplIndicium::Native),
            )
            .unwrap_or_default();
        let clear_buffer = v
            .choice(
                "clear_buffer",
                &[
                    ("dle_dc4", ClearBuffer::DleDc4),
                    ("nul_init", ClearBuffer::NulInit),
                ],
                // ZPL cancels with `~JA`; the ESC/POS clear does not apply.
                (language == Language::Zpl).then_some(ClearBuffer::NulInit),
            )
            .unwrap_or(ClearBuffer::NulInit);
        let void_on_abort = v.boolean("void_on_abort", false).unwrap_or(false);
        let page_mode = v.boolean("page_mode", false).unwrap_or(false);
        if !media_width_px.is_multiple_of(8) {
            v.err("media.width_px", "must be a multiple of 8 (raster bytes)");
        }
        if let (Some(mm), true) = (media_width_mm, dpi > 0) {
            let px = mm / 25.4 * f64::from(dpi);
            if f64::from(media_width_px) > px * 1.05 {
                v.err(
                    "media.width_px",
                    &format!("{media_width_px} px is wider than {mm} mm at {dpi} dpi"),
                );
            }
        }
        v.unknown_keys();
        if v.errors.is_empty() {
            v.errors.extend(value_refusals(
                &name,
                &notes,
                &features,
                &native_2d,
                media_width_px,
                dpi,
                language,
            ));
        }
        if !v.errors.is_empty() {
            return Err(v.errors);
        }
        Ok(Profile {
            id: id.to_string(),
            name,
            vendor,
            notes,
            media_width_mm,
            media_width_px,
            dpi,
            media_kind,
            label_length_mm,
            gap_mm,
            label_commands,
            fonts,
            code_pages,
            features,
            native_2d,
            serial,
            receive_buffer_bytes,
            raster_band_height_px_max,
            throughput_bytes_per_s,
            engine_speed_mm_per_s,
            status,
            cut,
            cut_feed_lines,
            clear_buffer,
            void_on_abort,
            page_mode,
            language,
            zpl_indicium,
        })
    }

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

    /// Render back as TOML (resolved: no `inherits`).
    pub fn to_toml(&self) -> String {
        let mut t = toml::Table::new();
        let s = |x: &str| toml::Value::String(x.to_string());
        let i = |x: u32| toml::Value::Integer(i64::from(x));
        t.insert("name".into(), s(&self.name));
        t.insert("vendor".into(), s(&self.vendor));
        t.insert("notes".into(), s(&self.notes));
        let mut media = toml::Table::new();
        if let Some(mm) = self.media_width_mm {
            media.insert("width_mm".into(), toml::Value::Float(mm));
        }
        media.insert("width_px".into(), i(self.media_width_px));
        media.insert("dpi".into(), i(self.dpi));
        media.insert(
            "kind".into(),
            s(match self.media_kind {
                MediaKind::Continuous => "continuous",
                MediaKind::Gap => "gap",
                MediaKind::BlackMark => "black_mark",
            }),
        );
        if let Some(l) = self.label_length_mm {
            media.insert("label_length_mm".into(), toml::Value::Float(l));
        }
        media.insert("gap_mm".into(), toml::Value::Float(self.gap_mm));
        media.insert(
            "label_commands".into(),
            s(match self.label_commands {
                LabelCommands::None => "none",
                LabelCommands::EpsonFsL => "fs_l",
            }),
        );
        t.insert("media".into(), toml::Value::Table(media));
        let mut fonts = toml::Table::new();
        for (k, f) in &self.fonts {
            let mut ft = toml::Table::new();
            ft.insert("name".into(), s(&f.name));
            ft.insert("columns".into(), i(f.columns));
            fonts.insert(k.to_string(), toml::Value::Table(ft));
        }
        t.insert("fonts".into(), toml::Value::Table(fonts));
        let cps = self
            .code_pages
            .iter()
            .map(|(k, v)| (k.to_string(), s(v)))
            .collect();
        t.insert("code_pages".into(), toml::Value::Table(cps));
        let feats = FEATURE_NAMES
            .iter()
            .map(|n| {
                (
                    (*n).to_string(),
                    toml::Value::Boolean(self.features.flag(n).unwrap_or(false)),
                )
            })
            .collect();
        t.insert("features".into(), toml::Value::Table(feats));
        let mut n2 = toml::Table::new();
        for (k, v) in [
            ("pdf417_cn", self.native_2d.pdf417_cn),
            ("qr_cn", self.native_2d.qr_cn),
            ("data_matrix_cn", self.native_2d.data_matrix_cn),
        ] {
            if let Some(cn) = v {
                n2.insert(k.into(), i(u32::from(cn)));
            }
        }
        t.insert("native_2d".into(), toml::Value::Table(n2));
        let mut ser = toml::Table::new();
        ser.insert("baud".into(), i(self.serial.baud));
        ser.insert("data_bits".into(), i(u32::from(self.serial.data_bits)));
        ser.insert(
            "parity".into(),
            s(match self.serial.parity {
                Parity::None => "none",
                Parity::Odd => "odd",
                Parity::Even => "even",
            }),
        );
        ser.insert("stop_bits".into(), i(u32::from(self.serial.stop_bits)));
        ser.insert(
            "flow_control".into(),
            s(match self.serial.flow_control {
                FlowControl::None => "none",
                FlowControl::XonXoff => "xonxoff",
                FlowControl::RtsCts => "rtscts",
                FlowControl::DtrDsr => "dtrdsr",
            }),
        );
        t.insert("serial".into(), toml::Value::Table(ser));
        let mut buf = toml::Table::new();
        buf.insert("receive_bytes".into(), i(self.receive_buffer_bytes));
        buf.insert(
            "raster_band_height_px_max".into(),
            i(self.raster_band_height_px_max),
        );
        buf.insert(
            "throughput_bytes_per_s".into(),
            i(self.throughput_bytes_per_s),
        );
        t.insert("buffer".into(), toml::Value::Table(buf));
        let mut engine = toml::Table::new();
        engine.insert("speed_mm_per_s".into(), i(self.engine_speed_mm_per_s));
        t.insert("engine".into(), toml::Value::Table(engine));
        let mut st = toml::Table::new();
        st.insert("dle_eot".into(), toml::Value::Boolean(self.status.dle_eot));
        st.insert("asb".into(), toml::Value::Boolean(self.status.asb));
        st.insert(
            "process_id".into(),
            toml::Value::Boolean(self.status.process_id),
        );
        t.insert("status".into(), toml::Value::Table(st));
        let mut cut = toml::Table::new();
        cut.insert(
            "command".into(),
            s(match self.cut {
                CutCommand::None => "none",
                CutCommand::Full => "full",
                CutCommand::Partial => "partial",
                CutCommand::FeedFull => "feed_full",
                CutCommand::FeedPartial => "feed_partial",
            }),
        );
        cut.insert("feed_lines".into(), i(u32::from(self.cut_feed_lines)));
        t.insert("cut".into(), toml::Value::Table(cut));
        t.insert(
            "clear_buffer".into(),
            s(match self.clear_buffer {
                ClearBuffer::DleDc4 => "dle_dc4",
                ClearBuffer::NulInit => "nul_init",
            }),
        );
        t.insert(
            "void_on_abort".into(),
            toml::Value::Boolean(self.void_on_abort),
        );
        t.insert("page_mode".into(), toml::Value::Boolean(self.page_mode));
        if self.language == Language::Zpl {
            t.insert("language".into(), s("zpl"));
            let mut z = toml::Table::new();
            z.insert(
                "indicium".into(),
                s(match self.zpl_indicium {
                    ZplIndicium::Native => "native",
                    ZplIndicium::Graphic => "graphic",
                }),
            );
            t.insert("zpl".into(), toml::Value::Table(z));
        }
        // Serialising a table of strings, numbers, booleans and tables cannot fail.
        toml::to_string_pretty(&t).unwrap_or_default()
    }
}

/// Modules a side of the largest indicium symbol with its quiet zone: 174 bytes fit 52 × 52
/// (docs/INDICIUM.md §Symbol), plus 2 quiet modules each way.
pub const INDICIUM_SIDE_MODULES_MAX: u32 = 52 + 2 * crate::indicium::render::QUIET_MODULES;

/// Why a valid profile still cannot print an item of value (empty: it can). Frank refuses such a
/// profile wherever it is read — `profiles validate`, `profiles import`, the counter's start —
/// so nothing is reserved or signed for a printer that could not print it.
fn value_refusals(
    name: &str,
    notes: &str,
    features: &Features,
    native_2d: &Native2d,
    width_px: u32,
    dpi: u32,
    language: Language,
) -> Vec<FieldError> {
    let mut out = Vec::new();
    let mut refuse = |field: &str, message: String| {
        out.push(FieldError {
            field: field.to_string(),
            message,
        })
    };
    let lower = |t: &str| t.to_ascii_lowercase();
    if lower(name).contains("display") || lower(notes).contains("customer display") {
        refuse(
            "name",
            "a customer display, not a printer: it cannot print an item".into(),
        );
    }
    if features.star_commands {
        refuse(
            "features.starCommands",
            "a Star printer (Star Line Mode commands): Frank sends ESC/POS only, so it cannot drive it"
                .into(),
        );
    }
    // Every ZPL printer has `^GF` graphics and `^BX` Data Matrix (ZPL II Programming Guide).
    if language == Language::EscPos
        && !features.bit_image_raster
        && native_2d.data_matrix_cn.is_none()
    {
        let message = if features.bit_image_column {
            "prints images only in columns (ESC *): an indicium needs raster images              (features.bitImageRaster, GS v 0) or native Data Matrix (native_2d.data_matrix_cn)"
        } else {
            "neither raster images (features.bitImageRaster) nor native Data Matrix              (native_2d.data_matrix_cn): it cannot print an indicium"
        };
        refuse("features.bitImageRaster", message.into());
    }
    let need_px = INDICIUM_SIDE_MODULES_MAX * crate::indicium::render::module_dots(dpi);
    if width_px > 0 && width_px < need_px {
        refuse(
            "media.width_px",
            format!("{width_px} px cannot hold the largest indicium ({need_px} px at {dpi} dpi)"),
        );
    }
    out
}

/// Reads fields out of a table, remembering which keys it saw and every error.
struct Reader<'a> {
    table: &'a toml::Table,
    seen: Vec<String>,
    errors: Vec<FieldError>,
}

impl<'a> Reader<'a> {
    fn new(table: &'a toml::Table) -> Self {
        Reader {
            table,
            seen: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn err(&mut self, field: &str, message: &str) {
        self.errors.push(FieldError {
            field: field.to_string(),
            message: message.to_string(),
        });
    }

    fn get(&mut self, path: &str, required: bool) -> Option<&'a toml::Value> {
        self.seen.push(path.to_string());
        let mut parts = path.split('.');
        let first = parts.next()?;
        let mut cur = self.table.get(first);
        for p in parts {
            cur = cur.and_then(|v| v.as_table()).and_then(|t| t.get(p));
        }
        if cur.is_none() && required {
            self.err(path, "missing (required)");
        }
        cur
    }

    fn string(&mut self, path: &str, required: bool) -> Option<String> {
        match self.get(path, required)? {
            toml::Value::String(s) if required && s.trim().is_empty() => {
                self.err(path, "must not be empty");
                None
            }
            toml::Value::String(s) => Some(s.clone()),
            other => {
                self.err(
                    path,
                    &format!("must be a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn boolean(&mut self, path: &str, required: bool) -> Option<bool> {
        match self.get(path, required)? {
            toml::Value::Boolean(b) => Some(*b),
            other => {
                self.err(
                    path,
                    &format!("must be true or false, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn uint(&mut self, path: &str, required: bool, min: u32, max: u32) -> Option<u32> {
        match self.get(path, required)? {
            toml::Value::Integer(n) if (i64::from(min)..=i64::from(max)).contains(n) => {
                u32::try_from(*n).ok()
            }
            toml::Value::Integer(n) => {
                self.err(path, &format!("{n} is outside {min}..={max}"));
                None
            }
            other => {
                self.err(
                    path,
                    &format!("must be a whole number, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn float(&mut self, path: &str, required: bool, min: f64, max: f64) -> Option<f64> {
        let x = match self.get(path, required)? {
            toml::Value::Float(f) => *f,
            toml::Value::Integer(n) => *n as f64,
            other => {
                self.err(
                    path,
                    &format!("must be a number, found {}", other.type_str()),
                );
                return None;
            }
        };
        if !(min..=max).contains(&x) {
            self.err(path, &format!("{x} is outside {min}..={max}"));
            return None;
        }
        Some(x)
    }

    fn choice<T: Copy>(
        &mut self,
        path: &str,
        options: &[(&str, T)],
        default: Option<T>,
    ) -> Option<T> {
        let Some(v) = self.get(path, default.is_none()) else {
            return default;
        };
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        match v
            .as_str()
            .and_then(|s| options.iter().find(|(n, _)| *n == s))
        {
            Some((_, t)) => Some(*t),
            None => {
                self.err(path, &format!("must be one of {}", names.join(", ")));
                None
            }
        }
    }

    fn fonts(&mut self) -> BTreeMap<u8, Font> {
        let mut out = BTreeMap::new();
        let Some(v) = self.get("fonts", false) else {
            return out;
        };
        let Some(t) = v.as_table() else {
            self.err("fonts", "must be a table of index = { name, columns }");
            return out;
        };
        for (k, _) in t {
            let Ok(idx) = k.parse::<u8>() else {
                self.err(&format!("fonts.{k}"), "key must be a font index 0..=255");
                continue;
            };
            let name = self.string(&format!("fonts.{k}.name"), true);
            let columns = self.uint(&format!("fonts.{k}.columns"), true, 1, 400);
            if let (Some(name), Some(columns)) = (name, columns) {
                out.insert(idx, Font { name, columns });
            }
        }
        out
    }

    fn code_pages(&mut self) -> BTreeMap<u8, String> {
        let mut out = BTreeMap::new();
        let Some(v) = self.get("code_pages", false) else {
            return out;
        };
        let Some(t) = v.as_table() else {
            self.err("code_pages", "must be a table of ESC t index = encoding");
            return out;
        };
        for (k, _) in t {
            let Ok(idx) = k.parse::<u8>() else {
                self.err(
                    &format!("code_pages.{k}"),
                    "key must be an ESC t index 0..=255",
                );
                continue;
            };
            if let Some(s) = self.string(&format!("code_pages.{k}"), true) {
                out.insert(idx, s);
            }
        }
        out
    }

    fn features(&mut self) -> Features {
        let mut f = Features::default();
        let Some(v) = self.get("features", false) else {
            return f;
        };
        let Some(t) = v.as_table() else {
            self.err("features", "must be a table of flag = true/false");
            return f;
        };
        for (k, _) in t {
            let path = format!("features.{k}");
            if !FEATURE_NAMES.contains(&k.as_str()) {
                self.err(
                    &path,
                    &format!("unknown feature flag (known: {})", FEATURE_NAMES.join(", ")),
                );
                self.seen.push(path);
                continue;
            }
            if let (Some(b), Some(slot)) = (self.boolean(&path, true), f.flag_mut(k)) {
                *slot = b;
            }
        }
        f
    }

    /// Every key not read by a field accessor is reported (a typo would otherwise be ignored).
    fn unknown_keys(&mut self) {
        let mut unknown = Vec::new();
        walk_keys(self.table, "", &mut |path| {
            let known = self
                .seen
                .iter()
                .any(|s| s == path || path.starts_with(&format!("{s}.")) && is_open_table(s));
            if !known {
                unknown.push(path.to_string());
            }
        });
        for path in unknown {
            self.err(&path, "unknown field (typo?)");
        }
    }
}

/// Tables whose own keys are data (indices, flags), checked by their own readers.
fn is_open_table(path: &str) -> bool {
    matches!(path, "fonts" | "code_pages" | "features")
}

fn walk_keys(t: &toml::Table, prefix: &str, f: &mut dyn FnMut(&str)) {
    for (k, v) in t {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(sub) if !is_open_table(&path) => walk_keys(sub, &path, f),
            _ => f(&path),
        }
    }
}

#[cfg(test)]
mod tests {
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
}
