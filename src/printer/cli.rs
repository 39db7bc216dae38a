//! `frank printer ...` subcommands.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum PrinterCommand {
    /// List the serial ports on this machine.
    List,
}

pub fn run(cmd: PrinterCommand) -> anyhow::Result<()> {
    match cmd {
        PrinterCommand::List => anyhow::bail!("printer support is not built yet (issue 5)"),
    }
}
