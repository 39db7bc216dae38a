//! Shell: reading the vendor's rate table from its data directory (the core, [`super::rates`],
//! only parses text).

use std::path::Path;

use super::rates::{RATE_FILE_BYTES_MAX, RATES_FILE_NAME, RateError, RateTable};

/// Loads `<data_dir>/rates.toml`; a file over [`RATE_FILE_BYTES_MAX`] is refused unread.
pub fn load_dir(data_dir: &Path) -> Result<RateTable, RateError> {
    let path = data_dir.join(RATES_FILE_NAME);
    let io = |source| RateError::Io {
        path: path.clone(),
        source,
    };
    let bytes = std::fs::metadata(&path).map_err(io)?.len();
    if bytes > RATE_FILE_BYTES_MAX {
        return Err(RateError::TooBig { path, bytes });
    }
    let text = std::fs::read_to_string(&path).map_err(io)?;
    RateTable::from_toml_str(&text)
}

/// Loads `<data_dir>/rates.toml`, or the SAMPLE table if that file does not exist.
/// Check [`RateTable::is_sample`] and warn the operator.
pub fn load_or_sample(data_dir: &Path) -> Result<RateTable, RateError> {
    match load_dir(data_dir) {
        Err(RateError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(RateTable::sample())
        }
        other => other,
    }
}
