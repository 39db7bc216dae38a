//! A profile file's text → its TOML table with `inherits` resolved (deep merge), and the
//! errors a profile file can have.

use super::*;

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

pub(super) struct FieldErrors<'a>(&'a [FieldError]);

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

pub(super) fn parse_table(id: &str, src: &str) -> Result<toml::Table, ProfileError> {
    src.parse::<toml::Table>().map_err(|e| ProfileError::Toml {
        id: id.to_string(),
        message: e.to_string(),
    })
}

pub(super) fn take_inherits(t: &mut toml::Table) -> Option<String> {
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
