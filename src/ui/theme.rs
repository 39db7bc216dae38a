//! Themes: styles named by meaning, loaded from TOML.
//!
//! Built-in themes are embedded with `include_str!`; a user file overrides only the keys it
//! sets. A style is written as words: modifiers (`bold`, `dim`, `italic`, `underlined`,
//! `reversed`), a foreground colour, and `on <colour>` for the background, e.g.
//! `alert_error = "bold white on red"`. With NO_COLOR every colour is dropped and only
//! modifiers remain; selection is always shown by a marker and reverse video as well.

use ratatui::style::{Color, Modifier, Style};
use std::collections::BTreeMap;

/// The meanings a theme styles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Text,
    Muted,
    Title,
    Border,
    Selection,
    Input,
    InputFocus,
    AlertError,
    AlertWarn,
    Ok,
    StatusBar,
    Gauge,
}

impl Role {
    pub const ALL: [Role; 12] = [
        Role::Text,
        Role::Muted,
        Role::Title,
        Role::Border,
        Role::Selection,
        Role::Input,
        Role::InputFocus,
        Role::AlertError,
        Role::AlertWarn,
        Role::Ok,
        Role::StatusBar,
        Role::Gauge,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Role::Text => "text",
            Role::Muted => "muted",
            Role::Title => "title",
            Role::Border => "border",
            Role::Selection => "selection",
            Role::Input => "input",
            Role::InputFocus => "input_focus",
            Role::AlertError => "alert_error",
            Role::AlertWarn => "alert_warn",
            Role::Ok => "ok",
            Role::StatusBar => "status_bar",
            Role::Gauge => "gauge",
        }
    }
}

/// Names of the built-in themes, default first.
pub const BUILTIN: [&str; 4] = ["dark", "light", "high-contrast", "monochrome"];

fn builtin_text(name: &str) -> Option<&'static str> {
    match name {
        "dark" => Some(include_str!("../../themes/dark.toml")),
        "light" => Some(include_str!("../../themes/light.toml")),
        "high-contrast" => Some(include_str!("../../themes/high-contrast.toml")),
        "monochrome" => Some(include_str!("../../themes/monochrome.toml")),
        _ => None,
    }
}

/// A resolved theme.
#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub name: String,
    styles: BTreeMap<Role, Style>,
    pub no_color: bool,
}

fn parse_color(word: &str) -> Option<Color> {
    let c = match word {
        "black" => Color::Black,
        "red" => Color::Red,
        "green" => Color::Green,
        "yellow" => Color::Yellow,
        "blue" => Color::Blue,
        "magenta" => Color::Magenta,
        "cyan" => Color::Cyan,
        "gray" | "grey" => Color::Gray,
        "darkgray" | "darkgrey" => Color::DarkGray,
        "lightred" => Color::LightRed,
        "lightgreen" => Color::LightGreen,
        "lightyellow" => Color::LightYellow,
        "lightblue" => Color::LightBlue,
        "lightmagenta" => Color::LightMagenta,
        "lightcyan" => Color::LightCyan,
        "white" => Color::White,
        "reset" | "default" => Color::Reset,
        hex if hex.starts_with('#') && hex.len() == 7 => {
            let v = u32::from_str_radix(&hex[1..], 16).ok()?;
            Color::Rgb((v >> 16) as u8, (v >> 8) as u8, v as u8)
        }
        _ => return None,
    };
    Some(c)
}

/// Parses `"bold white on red"`.
pub fn parse_style(key: &str, text: &str) -> Result<Style, String> {
    let mut style = Style::default();
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        let w = w.to_ascii_lowercase();
        let m = match w.as_str() {
            "bold" => Some(Modifier::BOLD),
            "dim" => Some(Modifier::DIM),
            "italic" => Some(Modifier::ITALIC),
            "underlined" => Some(Modifier::UNDERLINED),
            "reversed" => Some(Modifier::REVERSED),
            _ => None,
        };
        if let Some(m) = m {
            style = style.add_modifier(m);
        } else if w == "on" {
            let bg = words.next().unwrap_or("");
            let c = parse_color(&bg.to_ascii_lowercase())
                .ok_or_else(|| format!("theme key {key}: {bg:?} is not a colour"))?;
            style = style.bg(c);
        } else {
            let c = parse_color(&w).ok_or_else(|| {
                format!("theme key {key}: {w:?} is neither a modifier (bold, dim, italic, underlined, reversed) nor a colour")
            })?;
            style = style.fg(c);
        }
    }
    Ok(style)
}

fn apply(styles: &mut BTreeMap<Role, Style>, toml_text: &str, origin: &str) -> Result<(), String> {
    let table: BTreeMap<String, String> =
        toml::from_str(toml_text).map_err(|e| format!("theme {origin}: {e}"))?;
    for (k, v) in table {
        if k == "name" {
            continue;
        }
        let role = Role::ALL
            .into_iter()
            .find(|r| r.key() == k)
            .ok_or_else(|| {
                let keys: Vec<_> = Role::ALL.iter().map(|r| r.key()).collect();
                format!(
                    "theme {origin}: unknown key {k:?}; use one of {}",
                    keys.join(", ")
                )
            })?;
        styles.insert(role, parse_style(&k, &v)?);
    }
    Ok(())
}

impl Theme {
    /// A built-in theme by name (`dark`, `light`, `high-contrast`, `monochrome`).
    pub fn builtin(name: &str, no_color: bool) -> Result<Theme, String> {
        Theme::with_overrides(name, None, no_color)
    }

    /// A built-in theme with a user file's keys laid over it.
    pub fn with_overrides(
        name: &str,
        user_toml: Option<&str>,
        no_color: bool,
    ) -> Result<Theme, String> {
        let text = builtin_text(name).ok_or_else(|| {
            format!(
                "theme {name:?} is not built in; use one of {}",
                BUILTIN.join(", ")
            )
        })?;
        let mut styles = BTreeMap::new();
        // Every theme starts from dark so that a sparse file still styles every role.
        apply(&mut styles, include_str!("../../themes/dark.toml"), "dark")?;
        apply(&mut styles, text, name)?;
        if let Some(user) = user_toml {
            apply(&mut styles, user, "user file")?;
        }
        Ok(Theme {
            name: name.to_string(),
            styles,
            no_color,
        })
    }

    /// The style for a meaning. Selection always carries reverse video and bold, so it is
    /// visible without colour; NO_COLOR strips every colour.
    pub fn style(&self, role: Role) -> Style {
        let mut s = self.styles.get(&role).copied().unwrap_or_default();
        if role == Role::Selection {
            s = s.add_modifier(Modifier::REVERSED | Modifier::BOLD);
        }
        if role == Role::AlertError {
            s = s.add_modifier(Modifier::BOLD);
        }
        if self.no_color {
            s.fg = None;
            s.bg = None;
            s.underline_color = None;
        }
        s
    }
}

impl Default for Theme {
    /// The built-in dark theme. Its embedded file is checked by the tests; should it ever fail
    /// to parse, an unstyled theme is used rather than panicking.
    fn default() -> Self {
        Theme::builtin("dark", false).unwrap_or_else(|_| Theme {
            name: "dark".into(),
            styles: BTreeMap::new(),
            no_color: false,
        })
    }
}
