//! Printing: profiles, ESC/POS job compiler, serial streamer, virtual printer, probe. (issue 5)

pub mod cli;
