//! Key bindings: a table from key chords to [`Action`]s, overridable from TOML; the help
//! overlay is generated from the same table.
//!
//! Printable characters always go to the focused text field, so bindings use keys that do not
//! type: function keys, arrows, Enter, Esc, Tab and Ctrl chords.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::collections::BTreeMap;
use std::fmt;

/// Most chords one action may have.
pub const CHORDS_PER_ACTION_MAX: usize = 4;

/// What a key means, independent of which key it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Help,
    Quit,
    Back,
    Submit,
    NextField,
    PrevField,
    RowUp,
    RowDown,
    ChoiceNext,
    ChoicePrev,
    Home,
    History,
    Funds,
    Settings,
    RequestRefund,
    NewItem,
    SignOut,
    AddToBasket,
    RemoveItem,
    Approve,
    Reject,
    Print,
}

impl Action {
    pub const ALL: [Action; 22] = [
        Action::Help,
        Action::Quit,
        Action::Back,
        Action::Submit,
        Action::NextField,
        Action::PrevField,
        Action::RowUp,
        Action::RowDown,
        Action::ChoiceNext,
        Action::ChoicePrev,
        Action::Home,
        Action::History,
        Action::Funds,
        Action::Settings,
        Action::RequestRefund,
        Action::NewItem,
        Action::SignOut,
        Action::AddToBasket,
        Action::RemoveItem,
        Action::Approve,
        Action::Reject,
        Action::Print,
    ];

    /// Name used in TOML (`[keys] quit = ["ctrl-q"]`).
    pub fn name(self) -> &'static str {
        match self {
            Action::Help => "help",
            Action::Quit => "quit",
            Action::Back => "back",
            Action::Submit => "submit",
            Action::NextField => "next_field",
            Action::PrevField => "prev_field",
            Action::RowUp => "row_up",
            Action::RowDown => "row_down",
            Action::ChoiceNext => "choice_next",
            Action::ChoicePrev => "choice_prev",
            Action::Home => "home",
            Action::History => "history",
            Action::Funds => "funds",
            Action::Settings => "settings",
            Action::RequestRefund => "request_refund",
            Action::NewItem => "new_item",
            Action::SignOut => "sign_out",
            Action::AddToBasket => "add_to_basket",
            Action::RemoveItem => "remove_item",
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::Print => "print",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Action::Help => "show or hide this help",
            Action::Quit => "quit (kiosk: needs the supervisor PIN)",
            Action::Back => "go back / cancel",
            Action::Submit => "confirm, open, or go on",
            Action::NextField => "next field",
            Action::PrevField => "previous field",
            Action::RowUp => "previous row (fields on forms)",
            Action::RowDown => "next row (fields on forms)",
            Action::ChoiceNext => "next choice (class, theme, filter)",
            Action::ChoicePrev => "previous choice",
            Action::Home => "home screen",
            Action::History => "history of issued items",
            Action::Funds => "add funds",
            Action::Settings => "settings",
            Action::RequestRefund => "request a refund for the item",
            Action::NewItem => "start a new item",
            Action::SignOut => "sign out",
            Action::AddToBasket => "add the reviewed item to the basket",
            Action::RemoveItem => "remove an item from the basket",
            Action::Approve => "approve the chosen refund request (supervisor)",
            Action::Reject => "reject the chosen refund request (supervisor)",
            Action::Print => {
                "print the receipt or the end-of-day report (history: reprint the item's receipt)"
            }
        }
    }
}

/// A key with its modifiers, as written in TOML: `ctrl-q`, `f1`, `enter`, `shift-tab`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Chord {
    pub code: KeyCodeOrd,
    pub ctrl: bool,
    pub alt: bool,
}

/// The subset of key codes bindings may use, ordered for stable help output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyCodeOrd {
    F(u8),
    Char(char),
    Enter,
    Esc,
    Tab,
    BackTab,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Backspace,
}

impl Chord {
    pub fn parse(text: &str) -> Result<Chord, String> {
        let t = text.trim().to_ascii_lowercase();
        let mut ctrl = false;
        let mut alt = false;
        let mut rest = t.as_str();
        loop {
            if let Some(r) = rest.strip_prefix("ctrl-") {
                ctrl = true;
                rest = r;
            } else if let Some(r) = rest.strip_prefix("alt-") {
                alt = true;
                rest = r;
            } else {
                break;
            }
        }
        let code = match rest {
            "enter" => KeyCodeOrd::Enter,
            "esc" => KeyCodeOrd::Esc,
            "tab" => KeyCodeOrd::Tab,
            "backtab" | "shift-tab" => KeyCodeOrd::BackTab,
            "up" => KeyCodeOrd::Up,
            "down" => KeyCodeOrd::Down,
            "left" => KeyCodeOrd::Left,
            "right" => KeyCodeOrd::Right,
            "pageup" => KeyCodeOrd::PageUp,
            "pagedown" => KeyCodeOrd::PageDown,
            "backspace" => KeyCodeOrd::Backspace,
            f if f.starts_with('f') && f.len() > 1 => {
                let n: u8 = f[1..]
                    .parse()
                    .map_err(|_| format!("key {text:?}: {f:?} is not a function key (f1..f12)"))?;
                if !(1..=12).contains(&n) {
                    return Err(format!("key {text:?}: function keys are f1..f12"));
                }
                KeyCodeOrd::F(n)
            }
            c if c.chars().count() == 1 && (ctrl || alt) => {
                // A single character only with a modifier: bare characters type into fields.
                KeyCodeOrd::Char(c.chars().next().unwrap_or(' '))
            }
            _ => {
                return Err(format!(
                    "key {text:?} not understood; use e.g. ctrl-q, f1, enter, esc, tab, up (bare letters type into fields)"
                ));
            }
        };
        Ok(Chord { code, ctrl, alt })
    }

    pub fn from_key(key: &KeyEvent) -> Option<Chord> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        let code = match key.code {
            KeyCode::F(n) => KeyCodeOrd::F(n),
            KeyCode::Char(c) if ctrl || alt => KeyCodeOrd::Char(c.to_ascii_lowercase()),
            KeyCode::Enter => KeyCodeOrd::Enter,
            KeyCode::Esc => KeyCodeOrd::Esc,
            KeyCode::Tab => KeyCodeOrd::Tab,
            KeyCode::BackTab => KeyCodeOrd::BackTab,
            KeyCode::Up => KeyCodeOrd::Up,
            KeyCode::Down => KeyCodeOrd::Down,
            KeyCode::Left => KeyCodeOrd::Left,
            KeyCode::Right => KeyCodeOrd::Right,
            KeyCode::PageUp => KeyCodeOrd::PageUp,
            KeyCode::PageDown => KeyCodeOrd::PageDown,
            _ => return None,
        };
        Some(Chord { code, ctrl, alt })
    }
}

impl fmt::Display for Chord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ctrl {
            f.write_str("Ctrl-")?;
        }
        if self.alt {
            f.write_str("Alt-")?;
        }
        match self.code {
            KeyCodeOrd::F(n) => write!(f, "F{n}"),
            KeyCodeOrd::Char(c) => write!(f, "{}", c.to_ascii_uppercase()),
            KeyCodeOrd::Enter => f.write_str("Enter"),
            KeyCodeOrd::Esc => f.write_str("Esc"),
            KeyCodeOrd::Tab => f.write_str("Tab"),
            KeyCodeOrd::BackTab => f.write_str("Shift-Tab"),
            KeyCodeOrd::Up => f.write_str("↑"),
            KeyCodeOrd::Down => f.write_str("↓"),
            KeyCodeOrd::Left => f.write_str("←"),
            KeyCodeOrd::Right => f.write_str("→"),
            KeyCodeOrd::PageUp => f.write_str("PgUp"),
            KeyCodeOrd::PageDown => f.write_str("PgDn"),
            KeyCodeOrd::Backspace => f.write_str("Backspace"),
        }
    }
}

/// The binding table.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyBindings {
    by_action: BTreeMap<Action, Vec<Chord>>,
}

const DEFAULTS: &[(Action, &[&str])] = &[
    (Action::Help, &["f1"]),
    (Action::Quit, &["ctrl-q", "ctrl-c"]),
    (Action::Back, &["esc"]),
    (Action::Submit, &["enter"]),
    (Action::NextField, &["tab"]),
    (Action::PrevField, &["backtab"]),
    (Action::RowUp, &["up"]),
    (Action::RowDown, &["down"]),
    (Action::ChoiceNext, &["right"]),
    (Action::ChoicePrev, &["left"]),
    (Action::Home, &["f2"]),
    (Action::History, &["f3"]),
    (Action::Funds, &["f4"]),
    (Action::Settings, &["f5"]),
    (Action::RequestRefund, &["ctrl-r"]),
    (Action::NewItem, &["ctrl-n"]),
    (Action::SignOut, &["ctrl-o"]),
    (Action::AddToBasket, &["ctrl-b"]),
    (Action::RemoveItem, &["ctrl-d"]),
    (Action::Approve, &["f7"]),
    (Action::Reject, &["f8"]),
    (Action::Print, &["ctrl-p"]),
];

impl Default for KeyBindings {
    fn default() -> Self {
        let mut by_action = BTreeMap::new();
        for (action, chords) in DEFAULTS {
            let parsed = chords.iter().filter_map(|c| Chord::parse(c).ok()).collect();
            by_action.insert(*action, parsed);
        }
        KeyBindings { by_action }
    }
}

impl KeyBindings {
    /// Defaults overridden by a TOML table `{ action = ["chord", ...] }` (the `[keys]` table of
    /// the counter config). Actions not named keep their defaults.
    pub fn with_overrides(toml_text: &str) -> Result<KeyBindings, String> {
        let table: BTreeMap<String, Vec<String>> =
            toml::from_str(toml_text).map_err(|e| format!("key bindings: {e}"))?;
        let mut kb = KeyBindings::default();
        for (name, chords) in table {
            let action = Action::ALL
                .into_iter()
                .find(|a| a.name() == name)
                .ok_or_else(|| {
                    let names: Vec<_> = Action::ALL.iter().map(|a| a.name()).collect();
                    format!(
                        "key bindings: unknown action {name:?}; use one of {}",
                        names.join(", ")
                    )
                })?;
            if chords.len() > CHORDS_PER_ACTION_MAX {
                return Err(format!(
                    "key bindings: {name} has {} keys; at most {CHORDS_PER_ACTION_MAX}",
                    chords.len()
                ));
            }
            let parsed = chords
                .iter()
                .map(|c| Chord::parse(c))
                .collect::<Result<Vec<_>, _>>()?;
            kb.by_action.insert(action, parsed);
        }
        Ok(kb)
    }

    /// The action bound to a pressed key. Releases and repeats are ignored.
    pub fn action(&self, key: &KeyEvent) -> Option<Action> {
        if key.kind != KeyEventKind::Press {
            return None;
        }
        let chord = Chord::from_key(key)?;
        self.by_action
            .iter()
            .find(|(_, chords)| chords.contains(&chord))
            .map(|(a, _)| *a)
    }

    pub fn chords(&self, action: Action) -> &[Chord] {
        self.by_action
            .get(&action)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// First chord of an action as text, for hints ("F1").
    pub fn hint(&self, action: Action) -> String {
        self.chords(action)
            .first()
            .map(ToString::to_string)
            .unwrap_or_else(|| "unbound".into())
    }

    /// Rows of the help overlay: keys, action description.
    pub fn help_rows(&self) -> Vec<(String, &'static str)> {
        Action::ALL
            .iter()
            .map(|a| {
                let keys: Vec<String> = self.chords(*a).iter().map(ToString::to_string).collect();
                (keys.join(", "), a.describe())
            })
            .collect()
    }
}
