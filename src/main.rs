//! The `frank` binary: CLI definition and glue. The work lives in the library.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "frank",
    version,
    about = "Print postage and other value-bearing items, only while the vendor link holds"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Printers: list ports, manage profiles, emulate, probe.
    #[command(subcommand)]
    Printer(frank::printer::cli::PrinterCommand),
    /// Check a printed indicium independently.
    Verify(frank::indicium::cli::VerifyArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Printer(cmd) => frank::printer::cli::run(cmd),
        Command::Verify(args) => frank::indicium::cli::run(args),
    }
}
