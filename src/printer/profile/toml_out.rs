//! A profile rendered back as TOML (resolved: no `inherits`).

use super::*;

impl Profile {
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
        media.insert("kind".into(), s(self.media_kind.name()));
        if let Some(l) = self.label_length_mm {
            media.insert("label_length_mm".into(), toml::Value::Float(l));
        }
        media.insert("gap_mm".into(), toml::Value::Float(self.gap_mm));
        media.insert("label_commands".into(), s(self.label_commands.name()));
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
        ser.insert("parity".into(), s(self.serial.parity.name()));
        ser.insert("stop_bits".into(), i(u32::from(self.serial.stop_bits)));
        ser.insert("flow_control".into(), s(self.serial.flow_control.name()));
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
        cut.insert("command".into(), s(self.cut.name()));
        cut.insert("feed_lines".into(), i(u32::from(self.cut_feed_lines)));
        t.insert("cut".into(), toml::Value::Table(cut));
        t.insert("clear_buffer".into(), s(self.clear_buffer.name()));
        t.insert(
            "void_on_abort".into(),
            toml::Value::Boolean(self.void_on_abort),
        );
        t.insert("page_mode".into(), toml::Value::Boolean(self.page_mode));
        if self.language == Language::Zpl {
            t.insert("language".into(), s(self.language.name()));
            let mut z = toml::Table::new();
            z.insert("indicium".into(), s(self.zpl_indicium.name()));
            t.insert("zpl".into(), toml::Value::Table(z));
        }
        // Serialising a table of strings, numbers, booleans and tables cannot fail.
        toml::to_string_pretty(&t).unwrap_or_default()
    }
}
