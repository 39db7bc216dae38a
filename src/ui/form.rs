//! Form fields: plain text, secrets and choices, with per-field errors. A form's fields are
//! named by a typed id (each screen has its own enum: `PostageField`, `FundsField`, …), never
//! by strings, so a misspelt field is a compile error.

use super::event::Secret;
use std::fmt::Debug;

/// What names a field: a screen's own field enum.
pub trait FieldKey: Copy + Eq + Debug {}
impl<T: Copy + Eq + Debug> FieldKey for T {}

/// Longest value any field accepts, in characters.
pub const FIELD_CHARS_MAX: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    /// Never displayed in full: see [`Field::display`].
    Secret {
        secret: Secret,
        shown_tail_chars: usize,
    },
    /// One of fixed options, changed with left/right.
    Choice {
        options: Vec<&'static str>,
        index: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field<K> {
    pub key: K,
    pub label: &'static str,
    pub value: Value,
    pub chars_max: usize,
    /// Edited or left at least once: only then are its errors shown.
    pub touched: bool,
    pub error: Option<String>,
    /// What the value was read as, when that differs from what was typed (e.g. a date in
    /// words, a weight rounded up): shown beside the ✓.
    pub note: Option<String>,
    pub hidden: bool,
}

impl<K: FieldKey> Field<K> {
    pub fn text(key: K, label: &'static str, chars_max: usize) -> Self {
        Field {
            key,
            label,
            value: Value::Text(String::new()),
            chars_max: chars_max.min(FIELD_CHARS_MAX),
            touched: false,
            error: None,
            note: None,
            hidden: false,
        }
    }

    pub fn secret(key: K, label: &'static str, chars_max: usize, shown_tail_chars: usize) -> Self {
        Field {
            value: Value::Secret {
                secret: Secret::default(),
                shown_tail_chars,
            },
            ..Field::text(key, label, chars_max)
        }
    }

    pub fn choice(key: K, label: &'static str, options: Vec<&'static str>) -> Self {
        Field {
            value: Value::Choice { options, index: 0 },
            ..Field::text(key, label, FIELD_CHARS_MAX)
        }
    }

    /// What the screen shows: text as typed, secrets masked, the chosen option.
    pub fn display(&self) -> String {
        match &self.value {
            Value::Text(t) => t.clone(),
            Value::Secret {
                secret,
                shown_tail_chars,
            } => secret.masked(*shown_tail_chars),
            Value::Choice { options, index } => {
                format!("◀ {} ▶", options.get(*index).copied().unwrap_or(""))
            }
        }
    }

    /// Plain text or chosen option; empty for secrets.
    pub fn text_value(&self) -> &str {
        match &self.value {
            Value::Text(t) => t,
            Value::Secret { .. } => "",
            Value::Choice { options, index } => options.get(*index).copied().unwrap_or(""),
        }
    }

    pub fn secret_value(&self) -> Option<&Secret> {
        match &self.value {
            Value::Secret { secret, .. } => Some(secret),
            _ => None,
        }
    }

    pub fn choice_index(&self) -> usize {
        match &self.value {
            Value::Choice { index, .. } => *index,
            _ => 0,
        }
    }

    fn len_chars(&self) -> usize {
        match &self.value {
            Value::Text(t) => t.chars().count(),
            Value::Secret { secret, .. } => secret.len_chars(),
            Value::Choice { .. } => 0,
        }
    }

    /// Types a character; returns whether the value changed.
    pub fn type_char(&mut self, c: char) -> bool {
        if c.is_control() || self.len_chars() >= self.chars_max {
            return false;
        }
        match &mut self.value {
            Value::Text(t) => t.push(c),
            Value::Secret { secret, .. } => secret.push(c),
            Value::Choice { .. } => return false,
        }
        self.touched = true;
        true
    }

    pub fn backspace(&mut self) -> bool {
        let changed = self.len_chars() > 0;
        match &mut self.value {
            Value::Text(t) => {
                t.pop();
            }
            Value::Secret { secret, .. } => secret.pop(),
            Value::Choice { .. } => return false,
        }
        self.touched = true;
        changed
    }

    /// Moves a choice by `delta` (wrapping); returns whether it changed.
    pub fn cycle(&mut self, forward: bool) -> bool {
        if let Value::Choice { options, index } = &mut self.value {
            let n = options.len();
            if n < 2 {
                return false;
            }
            *index = if forward {
                (*index + 1) % n
            } else {
                (*index + n - 1) % n
            };
            self.touched = true;
            return true;
        }
        false
    }

    pub fn set_choice(&mut self, i: usize) {
        if let Value::Choice { options, index } = &mut self.value
            && i < options.len()
        {
            *index = i;
        }
    }

    pub fn clear(&mut self) {
        match &mut self.value {
            Value::Text(t) => t.clear(),
            Value::Secret { secret, .. } => secret.clear(),
            Value::Choice { index, .. } => *index = 0,
        }
        self.touched = false;
        self.error = None;
        self.note = None;
    }

    /// The error to show now (only for touched fields).
    pub fn shown_error(&self) -> Option<&str> {
        if self.touched {
            self.error.as_deref()
        } else {
            None
        }
    }
}

/// An ordered set of fields with one focused.
#[derive(Debug, Clone, PartialEq)]
pub struct Form<K> {
    pub fields: Vec<Field<K>>,
    pub focus: usize,
}

impl<K: FieldKey> Form<K> {
    pub fn new(fields: Vec<Field<K>>) -> Self {
        Form { fields, focus: 0 }
    }

    pub fn focused(&self) -> Option<&Field<K>> {
        self.fields.get(self.focus)
    }

    pub fn focused_mut(&mut self) -> Option<&mut Field<K>> {
        self.fields.get_mut(self.focus)
    }

    fn step(&mut self, forward: bool) {
        let n = self.fields.len();
        if n == 0 {
            return;
        }
        if let Some(f) = self.fields.get_mut(self.focus) {
            f.touched = true;
        }
        // Bounded: at most n steps to find a visible field.
        for _ in 0..n {
            self.focus = if forward {
                (self.focus + 1) % n
            } else {
                (self.focus + n - 1) % n
            };
            if !self.fields[self.focus].hidden {
                return;
            }
        }
    }

    pub fn next(&mut self) {
        self.step(true);
    }

    pub fn prev(&mut self) {
        self.step(false);
    }

    pub fn get(&self, key: K) -> Option<&Field<K>> {
        self.fields.iter().find(|f| f.key == key)
    }

    /// The entry of `all` a choice field `key` shows (`all` in the field's choice order), or
    /// `fallback` when there is no such field or entry.
    pub fn chosen<T: Copy>(&self, key: K, all: &[T], fallback: T) -> T {
        let index = self.get(key).map(Field::choice_index).unwrap_or(0);
        all.get(index).copied().unwrap_or(fallback)
    }

    pub fn get_mut(&mut self, key: K) -> Option<&mut Field<K>> {
        self.fields.iter_mut().find(|f| f.key == key)
    }

    pub fn text(&self, key: K) -> &str {
        self.get(key).map(Field::text_value).unwrap_or("")
    }

    pub fn set_error(&mut self, key: K, error: Option<String>) {
        if let Some(f) = self.get_mut(key) {
            f.error = error;
        }
    }

    pub fn set_note(&mut self, key: K, note: Option<String>) {
        if let Some(f) = self.get_mut(key) {
            f.note = note;
        }
    }

    pub fn touch_all(&mut self) {
        for f in &mut self.fields {
            f.touched = true;
        }
    }

    pub fn clear(&mut self) {
        for f in &mut self.fields {
            f.clear();
        }
        self.focus = 0;
    }

    pub fn has_errors(&self) -> bool {
        self.fields.iter().any(|f| !f.hidden && f.error.is_some())
    }

    /// Where field `key` is in the form.
    pub fn index_of(&self, key: K) -> Option<usize> {
        self.fields.iter().position(|f| f.key == key)
    }

    /// Focuses the field `key` (a visible one); returns whether it is there.
    pub fn focus_on(&mut self, key: K) -> bool {
        match self.fields.iter().position(|f| f.key == key && !f.hidden) {
            Some(i) => {
                if let Some(f) = self.fields.get_mut(self.focus) {
                    f.touched = true;
                }
                self.focus = i;
                true
            }
            None => false,
        }
    }

    /// First visible field with an error, for the "fix X" notice.
    pub fn first_error(&self) -> Option<&Field<K>> {
        self.fields.iter().find(|f| !f.hidden && f.error.is_some())
    }
}

/// A form seen without its field type: what the notice line, the plain mode, the "Fix …"
/// notice and mouse clicks need from whichever form a screen has.
pub trait AnyForm {
    /// The field at `index`: its label, its value as shown, and its errors.
    fn label(&self, index: usize) -> Option<&'static str>;
    fn display(&self, index: usize) -> Option<String>;
    /// The field's error, shown or not yet.
    fn error(&self, index: usize) -> Option<&str>;
    /// The error shown now (touched fields only).
    fn shown_error(&self, index: usize) -> Option<&str>;
    fn note(&self, index: usize) -> Option<&str>;
    fn focus_index(&self) -> usize;
    /// Focuses a visible field by index; returns whether it could.
    fn focus_at(&mut self, index: usize) -> bool;
}

impl<K: FieldKey> AnyForm for Form<K> {
    fn label(&self, index: usize) -> Option<&'static str> {
        self.fields.get(index).map(|f| f.label)
    }
    fn display(&self, index: usize) -> Option<String> {
        self.fields.get(index).map(Field::display)
    }
    fn error(&self, index: usize) -> Option<&str> {
        self.fields.get(index)?.error.as_deref()
    }
    fn shown_error(&self, index: usize) -> Option<&str> {
        self.fields.get(index)?.shown_error()
    }
    fn note(&self, index: usize) -> Option<&str> {
        self.fields.get(index)?.note.as_deref()
    }
    fn focus_index(&self) -> usize {
        self.focus
    }
    fn focus_at(&mut self, index: usize) -> bool {
        match self.fields.get(index) {
            Some(f) if !f.hidden => self.focus_on(f.key),
            _ => false,
        }
    }
}
