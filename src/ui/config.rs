//! The UI part of the counter's config file: theme name, theme overrides and key bindings.
//!
//! ```toml
//! theme = "light"            # dark (default), light, high-contrast, monochrome
//! [colors]                   # overrides only the keys set
//! alert_error = "bold yellow on red"
//! [keys]                     # overrides only the actions named
//! quit = ["ctrl-x"]
//! ```

use super::keys::KeyBindings;
use super::theme::Theme;

/// Parses the UI sections of a config file. `no_color` comes from the caller (NO_COLOR is read
/// by the shell, never while drawing). Unknown top-level keys are left to other sections.
pub fn load(toml_text: &str, no_color: bool) -> Result<(Theme, KeyBindings), String> {
    let table: toml::Table = toml::from_str(toml_text).map_err(|e| format!("config: {e}"))?;
    let name = match table.get("theme") {
        None => "dark",
        Some(toml::Value::String(s)) => s.as_str(),
        Some(other) => return Err(format!("config: theme must be a name, got {other}")),
    };
    let section = |key: &str| -> Result<Option<String>, String> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::Table(t)) => toml::to_string(t)
                .map(Some)
                .map_err(|e| format!("config [{key}]: {e}")),
            Some(_) => Err(format!("config: [{key}] must be a table")),
        }
    };
    let theme = Theme::with_overrides(name, section("colors")?.as_deref(), no_color)?;
    let keys = match section("keys")? {
        Some(text) => KeyBindings::with_overrides(&text)?,
        None => KeyBindings::default(),
    };
    Ok((theme, keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::keys::Action;
    use crate::ui::theme::Role;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use ratatui::style::Color;

    #[test]
    fn config_sets_theme_colours_and_keys() {
        let (theme, keys) = load(
            "theme = \"light\"\nvendor = \"x\"\n[colors]\nalert_error = \"bold yellow on red\"\n[keys]\nquit = [\"ctrl-x\"]\n",
            false,
        )
        .unwrap();
        assert_eq!(theme.name, "light");
        assert_eq!(theme.style(Role::AlertError).fg, Some(Color::Yellow));
        assert_eq!(
            theme.style(Role::Title).fg,
            Some(Color::Blue),
            "light's own title kept"
        );
        let ctrl_x = KeyEvent::new(KeyCode::Char('x'), KeyModifiers::CONTROL);
        assert_eq!(keys.action(&ctrl_x), Some(Action::Quit));
        assert!(
            load("theme = \"neon\"", false)
                .unwrap_err()
                .contains("not built in")
        );
    }
}
