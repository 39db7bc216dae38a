//! Panels drawn around and over the screens.

pub mod banner;
pub mod form;
pub mod help;
pub mod hints;
pub mod notice;
pub mod out_of_service;
pub mod pin;
pub mod status_bar;
