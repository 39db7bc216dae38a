//! The bundle messages (sans-I/O, issue 17): `bundles` (which signed manifests the vendor
//! offers now) and `bundle_file` (one file of one, answered with a header frame and the raw
//! bytes). docs/PROTOCOL.md §4.9 is the specification; the manifests themselves are
//! [`crate::bundle`]'s.

use super::ErrorBody;
use crate::bundle::{self, SignedManifest};
use serde::{Deserialize, Serialize};

/// `bundles` (session needed): body `{}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BundlesRequest {}

/// OK body of `bundles`: the current signed manifest of every bundle name the vendor offers
/// (at most [`bundle::BUNDLES_OFFERED_MAX`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleList {
    pub manifests: Vec<SignedManifest>,
    pub vendor_time_ms: u64,
}

/// `bundle_file` (session needed): one file of an offered bundle version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleFileRequest {
    pub name: String,
    pub version: String,
    pub file: String,
}

impl BundleFileRequest {
    pub fn validate(&self) -> Result<(), ErrorBody> {
        if !bundle::valid_name(&self.name, true) {
            return Err(ErrorBody::malformed(
                "bundle_file.name must be 1..=64 bytes of a-z 0-9 . _ - not starting with a dot",
            ));
        }
        if bundle::Version::parse(&self.version).is_none() {
            return Err(ErrorBody::malformed(
                "bundle_file.version must be 1 to 4 dot-separated numbers",
            ));
        }
        if !bundle::valid_name(&self.file, false) {
            return Err(ErrorBody::malformed(
                "bundle_file.file must be 1..=64 bytes of A-Z a-z 0-9 . _ - not starting with a dot",
            ));
        }
        Ok(())
    }
}

/// The header frame of a `bundle_file` answer: this many raw bytes follow, then the stream
/// ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleFileHeader {
    pub bytes: u64,
}
