//! `frank verify`: checks a printed indicium independently.

use clap::Args;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A PNG of the label, or the payload as hex or base64.
    pub input: String,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    anyhow::bail!("verify is not built yet (issue 4): {}", args.input)
}
