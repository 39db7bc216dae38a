//! Import escpos-printer-db's collated `capabilities.json` as Frank profiles.
//!
//! The db's values are messy: numbers may be `"Unknown"`, widths are float mm, pixels or dpi may
//! be missing. Each imported profile carries the guesses made for it as warnings, and Frank's own
//! fields (serial settings, buffer, status, cut, clear method) get conservative defaults that a
//! technician confirms with `frank printer probe`.

use super::profile::{
    ClearBuffer, CutCommand, FEATURE_NAMES, FieldError, FlowControl, MediaKind, Named, Parity,
    Profile, merge,
};

/// Most profiles read from one file (the real db has a few hundred).
pub const IMPORT_PROFILES_MAX: usize = 2000;
/// Deepest `inherits` chain followed inside the file.
pub const IMPORT_INHERITS_DEPTH_MAX: usize = 8;
/// Printable width is the paper width less this margin when pixels must be guessed.
pub const GUESS_MARGIN_MM: f64 = 8.0;
/// dpi assumed when the db says nothing usable.
pub const GUESS_DPI: u32 = 203;

/// One profile converted from the db.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The id Frank will use (slug of the db key).
    pub id: String,
    /// The db's key.
    pub db_key: String,
    /// The profile as TOML, ready to write to `printer-profiles/<id>.toml`.
    pub toml: String,
    pub profile: Profile,
    /// Guesses made; the technician should check each.
    pub warnings: Vec<String>,
}

/// A db profile that could not become a Frank profile.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub db_key: String,
    pub reasons: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    #[error("capabilities.json is not JSON: {0}")]
    Json(String),
    #[error("capabilities.json has no \"profiles\" object at the top level")]
    NoProfiles,
    #[error("capabilities.json has {0} profiles, more than {IMPORT_PROFILES_MAX}")]
    TooMany(usize),
}

/// Convert every profile in a capabilities.json text.
pub fn import_capabilities(json: &str) -> Result<(Vec<Imported>, Vec<Skipped>), ImportError> {
    let root: serde_json::Value =
        serde_json::from_str(json).map_err(|e| ImportError::Json(e.to_string()))?;
    let profiles = root
        .get("profiles")
        .and_then(|p| p.as_object())
        .ok_or(ImportError::NoProfiles)?;
    if profiles.len() > IMPORT_PROFILES_MAX {
        return Err(ImportError::TooMany(profiles.len()));
    }
    let mut ok = Vec::new();
    let mut skipped = Vec::new();
    for key in profiles.keys() {
        match resolve(profiles, key).and_then(|p| convert(key, &p)) {
            Ok(i) => ok.push(i),
            Err(reasons) => skipped.push(Skipped {
                db_key: key.clone(),
                reasons,
            }),
        }
    }
    Ok((ok, skipped))
}

/// A lowercase id made of `a-z0-9-`.
pub fn slug(key: &str) -> String {
    let mut s = String::new();
    for c in key.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') {
            s.push('-');
        }
    }
    s.trim_matches('-').to_string()
}

fn resolve(
    all: &serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<toml::Table, Vec<String>> {
    let mut chain = vec![key.to_string()];
    let mut table = json_to_toml_table(&all[key]);
    while let Some(toml::Value::String(parent)) = table.remove("inherits") {
        if chain.len() > IMPORT_INHERITS_DEPTH_MAX || chain.contains(&parent) {
            return Err(vec![format!(
                "inherits chain loops or is deeper than {IMPORT_INHERITS_DEPTH_MAX}"
            )]);
        }
        let Some(p) = all.get(&parent) else {
            return Err(vec![format!(
                "inherits {parent:?}, which is not in the file"
            )]);
        };
        let mut base = json_to_toml_table(p);
        let grand = base.remove("inherits");
        merge(&mut base, table);
        table = base;
        if let Some(g) = grand {
            table.insert("inherits".into(), g);
        }
        chain.push(parent);
    }
    Ok(table)
}

fn json_to_toml_table(v: &serde_json::Value) -> toml::Table {
    match json_to_toml(v) {
        Some(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    }
}

fn json_to_toml(v: &serde_json::Value) -> Option<toml::Value> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => return None,
        J::Bool(b) => toml::Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        J::String(s) => toml::Value::String(s.clone()),
        J::Array(a) => toml::Value::Array(a.iter().filter_map(json_to_toml).collect()),
        J::Object(o) => toml::Value::Table(
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), json_to_toml(v)?)))
                .collect(),
        ),
    })
}

/// A usable positive number, or None for "Unknown", missing, zero or text.
fn number(t: &toml::Table, path: &[&str]) -> Option<f64> {
    let mut cur = t.get(path[0])?;
    for p in &path[1..] {
        cur = cur.as_table()?.get(*p)?;
    }
    let x = match cur {
        toml::Value::Integer(i) => *i as f64,
        toml::Value::Float(f) => *f,
        toml::Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (x.is_finite() && x > 0.0).then_some(x)
}

fn text(t: &toml::Table, key: &str) -> String {
    t.get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

fn convert(key: &str, db: &toml::Table) -> Result<Imported, Vec<String>> {
    let mut warnings = Vec::new();
    let vendor = text(db, "vendor");
    let epson = vendor.eq_ignore_ascii_case("epson");
    let mm = number(db, &["media", "width", "mm"]);
    let dpi = match number(db, &["media", "dpi"]) {
        Some(d) => d.round() as u32,
        None => {
            warnings.push(format!("media.dpi unknown in the db; guessed {GUESS_DPI}"));
            GUESS_DPI
        }
    };
    let px = match (number(db, &["media", "width", "pixels"]), mm) {
        (Some(p), _) => (p as u32) / 8 * 8,
        (None, Some(mm)) => {
            let p = ((mm - GUESS_MARGIN_MM).max(8.0) / 25.4 * f64::from(dpi)) as u32 / 8 * 8;
            warnings.push(format!(
                "media.width_px unknown in the db; guessed {p} from {mm} mm less {GUESS_MARGIN_MM} mm margin at {dpi} dpi"
            ));
            p
        }
        (None, None) => {
            return Err(vec![
                "media width unknown: the db has neither pixels nor mm".to_string(),
            ]);
        }
    };
    let mut t = toml::Table::new();
    let s = |x: &str| toml::Value::String(x.to_string());
    let name = match text(db, "name") {
        n if n.trim().is_empty() => key.to_string(),
        n => n,
    };
    t.insert("name".into(), s(&name));
    t.insert("vendor".into(), s(&vendor));
    t.insert(
        "notes".into(),
        s(&format!(
            "Imported from escpos-printer-db key {key:?}. {} Frank fields are defaults: confirm with `frank printer probe`.",
            text(db, "notes")
        )),
    );
    t.insert(
        "clear_buffer".into(),
        s(if epson {
            ClearBuffer::DleDc4
        } else {
            ClearBuffer::NulInit
        }
        .name()),
    );
    t.insert("void_on_abort".into(), toml::Value::Boolean(true));
    let mut media = toml::Table::new();
    if let Some(mm) = mm.filter(|m| (10.0..=300.0).contains(m)) {
        media.insert("width_mm".into(), toml::Value::Float(mm));
    }
    media.insert("width_px".into(), toml::Value::Integer(i64::from(px)));
    media.insert("dpi".into(), toml::Value::Integer(i64::from(dpi)));
    media.insert("kind".into(), s(MediaKind::Continuous.name()));
    t.insert("media".into(), toml::Value::Table(media));
    t.insert("fonts".into(), toml::Value::Table(fonts(db, &mut warnings)));
    let cps = db
        .get("codePages")
        .and_then(|v| v.as_table())
        .map(|cp| {
            cp.iter()
                .filter(|(k, v)| k.parse::<u8>().is_ok() && v.is_str())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    t.insert("code_pages".into(), toml::Value::Table(cps));
    let feats: toml::Table = FEATURE_NAMES
        .iter()
        .map(|n| {
            let on = db
                .get("features")
                .and_then(|f| f.get(*n))
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            ((*n).to_string(), toml::Value::Boolean(on))
        })
        .collect();
    let flag = |n: &str| feats.get(n).and_then(|v| v.as_bool()).unwrap_or(false);
    let mut n2 = toml::Table::new();
    if flag("qrCode") {
        n2.insert("qr_cn".into(), toml::Value::Integer(49));
    }
    if flag("pdf417Code") {
        n2.insert("pdf417_cn".into(), toml::Value::Integer(48));
    }
    let cut = if flag("paperPartCut") {
        CutCommand::FeedPartial
    } else if flag("paperFullCut") {
        CutCommand::FeedFull
    } else {
        CutCommand::None
    };
    t.insert("features".into(), toml::Value::Table(feats));
    t.insert("native_2d".into(), toml::Value::Table(n2));
    let mut serial = toml::Table::new();
    serial.insert("baud".into(), toml::Value::Integer(9600));
    serial.insert("data_bits".into(), toml::Value::Integer(8));
    serial.insert("parity".into(), s(Parity::None.name()));
    serial.insert("stop_bits".into(), toml::Value::Integer(1));
    serial.insert(
        "flow_control".into(),
        s(if epson {
            FlowControl::DtrDsr
        } else {
            FlowControl::None
        }
        .name()),
    );
    t.insert("serial".into(), toml::Value::Table(serial));
    let mut buf = toml::Table::new();
    buf.insert("receive_bytes".into(), toml::Value::Integer(1024));
    buf.insert("raster_band_height_px_max".into(), toml::Value::Integer(64));
    buf.insert("throughput_bytes_per_s".into(), toml::Value::Integer(5000));
    t.insert("buffer".into(), toml::Value::Table(buf));
    let mut st = toml::Table::new();
    st.insert("dle_eot".into(), toml::Value::Boolean(epson));
    st.insert("asb".into(), toml::Value::Boolean(false));
    t.insert("status".into(), toml::Value::Table(st));
    let mut c = toml::Table::new();
    c.insert("command".into(), s(cut.name()));
    c.insert("feed_lines".into(), toml::Value::Integer(3));
    t.insert("cut".into(), toml::Value::Table(c));
    let toml_text = toml::to_string_pretty(&t).map_err(|e| vec![e.to_string()])?;
    let id = slug(key);
    let profile = Profile::from_toml(&id, &toml_text).map_err(|e| match e {
        super::profile::ProfileError::Invalid(errs) => {
            errs.iter().map(FieldError::to_string).collect()
        }
        other => vec![other.to_string()],
    })?;
    Ok(Imported {
        id,
        db_key: key.to_string(),
        toml: toml_text,
        profile,
        warnings,
    })
}

fn fonts(db: &toml::Table, warnings: &mut Vec<String>) -> toml::Table {
    let mut out = toml::Table::new();
    let Some(f) = db.get("fonts").and_then(|v| v.as_table()) else {
        return out;
    };
    for (k, v) in f {
        let cols = v.as_table().and_then(|t| number(t, &["columns"]));
        let name = v.get("name").and_then(|n| n.as_str()).unwrap_or("");
        match (k.parse::<u8>(), cols) {
            (Ok(_), Some(c)) if !name.is_empty() => {
                let mut ft = toml::Table::new();
                ft.insert("name".into(), toml::Value::String(name.to_string()));
                ft.insert("columns".into(), toml::Value::Integer(c as i64));
                out.insert(k.clone(), toml::Value::Table(ft));
            }
            _ => warnings.push(format!(
                "fonts.{k} dropped: name or columns unknown in the db"
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("TM-T88V"), "tm-t88v");
        assert_eq!(slug("ZJ 5870 (v2)"), "zj-5870-v2");
    }
}
