//! What the UI tests type into the postage form, field by field (sender, recipient, weight
//! in oz): one list for the in-process UI tests (`ui_support`) and the pty tests
//! (`pty_support`), so a form change is followed in one place.

/// The postage form's values in field order; the weight (3 oz, first class) last.
pub const POSTAGE_FORM_VALUES: [&str; 13] = [
    "Ada Lovelace",
    "12 Analytical Way",
    "",
    "San Francisco",
    "CA",
    "94105",
    "Charles Babbage",
    "1 Difference Rd",
    "Apt 2",
    "Boston",
    "MA",
    "02108-1234",
    "3",
];
