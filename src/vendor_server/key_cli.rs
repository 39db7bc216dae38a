//! `frank vendor init --pkcs11 …` and `frank vendor key import`: where the vendor key goes
//! when it lives in a PKCS#11 token (docs/DEPLOY.md §The signing key). The PIN is read from a
//! file (0600), an environment variable or a systemd credential, never from the command line.

use super::DataDir;
use crate::pkcs11::{KEY_LABEL_DEFAULT, PinSource, TokenKey};
use anyhow::bail;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// The token to put the vendor key in, and where its PIN comes from.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Put the vendor key in a token of this PKCS#11 module (its shared library, e.g.
    /// /usr/lib/softhsm/libsofthsm2.so) instead of a key file.
    #[arg(long, value_name = "MODULE")]
    pub pkcs11: Option<PathBuf>,
    /// The token's label.
    #[arg(long, value_name = "LABEL", requires = "pkcs11")]
    pub token: Option<String>,
    /// The key's label in the token.
    #[arg(long, value_name = "LABEL", default_value = KEY_LABEL_DEFAULT, requires = "pkcs11")]
    pub key_label: String,
    /// The token's user PIN is in this file (mode 0600).
    #[arg(long, value_name = "FILE", group = "pin", requires = "pkcs11")]
    pub pin_file: Option<PathBuf>,
    /// The token's user PIN is in this environment variable.
    #[arg(long, value_name = "VAR", group = "pin", requires = "pkcs11")]
    pub pin_env: Option<String>,
    /// The token's user PIN is this systemd credential ($CREDENTIALS_DIRECTORY/NAME).
    #[arg(long, value_name = "NAME", group = "pin", requires = "pkcs11")]
    pub pin_credential: Option<String>,
    /// Sessions the vendor signs on at once (default: the core count, within the token's limit).
    #[arg(long, value_name = "N", requires = "pkcs11")]
    pub sessions_max: Option<usize>,
}

impl TokenArgs {
    /// The token and key these name, if `--pkcs11` was given; each of its parts is required.
    pub fn token_key(&self) -> anyhow::Result<Option<TokenKey>> {
        let Some(module) = &self.pkcs11 else {
            return Ok(None);
        };
        let Some(token) = &self.token else {
            bail!("--pkcs11 needs --token LABEL: the label of the token to hold the vendor key");
        };
        let pin = match (&self.pin_file, &self.pin_env, &self.pin_credential) {
            (Some(f), _, _) => PinSource::File(f.clone()),
            (_, Some(v), _) => PinSource::Env(v.clone()),
            (_, _, Some(c)) => PinSource::Credential(c.clone()),
            _ => bail!(
                "--pkcs11 needs where the token's PIN comes from: --pin-file FILE (mode 0600), --pin-env VAR or --pin-credential NAME"
            ),
        };
        if let Some(n) = self.sessions_max
            && !(1..=crate::pkcs11::SESSIONS_MAX_LIMIT).contains(&n)
        {
            bail!(
                "--sessions-max must be 1..={}",
                crate::pkcs11::SESSIONS_MAX_LIMIT
            );
        }
        Ok(Some(TokenKey {
            module: module.clone(),
            token: token.clone(),
            key: self.key_label.clone(),
            pin,
        }))
    }
}

/// `frank vendor key …`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Move the vendor key file into a PKCS#11 token, once: imported as a sensitive,
    /// non-extractable key, checked, and `[pkcs11]` added to vendor.toml. The fingerprint
    /// stays the same.
    Import {
        /// The vendor's data directory.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        #[command(flatten)]
        token: TokenArgs,
        /// Then overwrite and delete vendor-key.pem (keep a backup of the token first).
        #[arg(long)]
        shred: bool,
    },
}

/// Runs `frank vendor key …`.
pub fn run(cmd: KeyCommand) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::Import { data, token, shred } => {
            let Some(key) = token.token_key()? else {
                bail!(
                    "`frank vendor key import` needs --pkcs11 MODULE --token LABEL and a PIN source"
                );
            };
            let dir = DataDir::new(&data);
            // Not while a vendor serves from the key file.
            let _lock = dir.lock()?;
            let fp = dir.import_key(&key, token.sessions_max, shred)?;
            println!(
                "vendor key moved into token {:?} as {:?}; fingerprint unchanged: {fp}",
                key.token, key.key
            );
            if shred {
                println!("{} overwritten and deleted", super::KEY_FILE);
            } else {
                println!(
                    "{} is still in {}: remove it once the token is backed up (or import with --shred)",
                    super::KEY_FILE,
                    data.display()
                );
            }
        }
    }
    Ok(())
}

/// Runs `frank vendor init`: a key file, or with `--pkcs11` a key generated in the token.
/// Returns the fingerprint.
pub fn init(data: &DataDir, database: Option<&str>, token: &TokenArgs) -> anyhow::Result<String> {
    match token.token_key()? {
        Some(key) => data.init_in_token(database, &key, token.sessions_max),
        None => data.init_with(database),
    }
}
