//! Validation: a resolved table → a [`Profile`], one [`FieldError`] per bad field (the
//! `Reader`), and the refusals of a profile that cannot print value.

use super::*;

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
            .choice("media.kind", MediaKind::NAMES, Some(MediaKind::Continuous))
            .unwrap_or(MediaKind::Continuous);
        let label_length_mm = v.float("media.label_length_mm", false, 5.0, 2000.0);
        let gap_mm = v
            .float("media.gap_mm", false, 0.5, 50.0)
            .unwrap_or(GAP_MM_DEFAULT);
        let label_commands = v
            .choice(
                "media.label_commands",
                LabelCommands::NAMES,
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
                .choice("serial.parity", Parity::NAMES, Some(Parity::None))
                .unwrap_or(Parity::None),
            stop_bits: v.uint("serial.stop_bits", false, 1, 2).unwrap_or(1) as u8,
            flow_control: v
                .choice("serial.flow_control", FlowControl::NAMES, None)
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
            .choice("cut.command", CutCommand::NAMES, None)
            .unwrap_or(CutCommand::None);
        let cut_feed_lines = v.uint("cut.feed_lines", false, 0, 255).unwrap_or(3) as u8;
        let language = v
            .choice("language", Language::NAMES, Some(Language::EscPos))
            .unwrap_or_default();
        let zpl_indicium = v
            .choice(
                "zpl.indicium",
                ZplIndicium::NAMES,
                Some(ZplIndicium::Native),
            )
            .unwrap_or_default();
        let clear_buffer = v
            .choice(
                "clear_buffer",
                ClearBuffer::NAMES,
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
}

/// Why a valid profile still cannot print an item of value (empty: it can). Frank refuses such a
/// profile wherever it is read — `profiles validate`, `profiles import`, the counter's start —
/// so nothing is reserved or signed for a printer that could not print it.
pub(super) fn value_refusals(
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
pub(super) struct Reader<'a> {
    pub(super) table: &'a toml::Table,
    pub(super) seen: Vec<String>,
    pub(super) errors: Vec<FieldError>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(table: &'a toml::Table) -> Self {
        Reader {
            table,
            seen: Vec::new(),
            errors: Vec::new(),
        }
    }

    pub(super) fn err(&mut self, field: &str, message: &str) {
        self.errors.push(FieldError {
            field: field.to_string(),
            message: message.to_string(),
        });
    }

    pub(super) fn get(&mut self, path: &str, required: bool) -> Option<&'a toml::Value> {
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

    pub(super) fn string(&mut self, path: &str, required: bool) -> Option<String> {
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

    pub(super) fn boolean(&mut self, path: &str, required: bool) -> Option<bool> {
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

    pub(super) fn uint(&mut self, path: &str, required: bool, min: u32, max: u32) -> Option<u32> {
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

    pub(super) fn float(&mut self, path: &str, required: bool, min: f64, max: f64) -> Option<f64> {
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

    pub(super) fn choice<T: Copy>(
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

    pub(super) fn fonts(&mut self) -> BTreeMap<u8, Font> {
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

    pub(super) fn code_pages(&mut self) -> BTreeMap<u8, String> {
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

    pub(super) fn features(&mut self) -> Features {
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
    pub(super) fn unknown_keys(&mut self) {
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
pub(super) fn is_open_table(path: &str) -> bool {
    matches!(path, "fonts" | "code_pages" | "features")
}

pub(super) fn walk_keys(t: &toml::Table, prefix: &str, f: &mut dyn FnMut(&str)) {
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
