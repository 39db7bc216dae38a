//! `frank printer ...` subcommands: glue between clap and the printer modules.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;

use super::emulator::{Emulator, EmulatorOptions};
use super::import::import_capabilities;
use super::probe::probe;
use super::profile::{Profile, ProfileError, RawProfile, all_shipped_ids, shipped, shipped_source};

#[derive(Debug, Subcommand)]
pub enum PrinterCommand {
    /// List the serial ports on this machine.
    List,
    /// Printer profiles: list, show, validate, import.
    #[command(subcommand)]
    Profiles(ProfilesCommand),
    /// Run a virtual ESC/POS printer on a pseudo-terminal.
    Emulate {
        /// Profile id (see `frank printer profiles list`) or a profile TOML file.
        #[arg(long, default_value = "virtual")]
        profile: String,
        /// Line speed in baud (default: the profile's).
        #[arg(long)]
        baud: Option<u32>,
        /// Directory for one PNG per cut page.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Control socket path (default: frank-printer-<pid>.sock in the temp dir).
        #[arg(long)]
        control: Option<PathBuf>,
    },
    /// Find out how to talk to a printer and draft a profile for it.
    Probe {
        /// Serial device, e.g. /dev/ttyUSB0.
        port: PathBuf,
        /// Try only this baud rate.
        #[arg(long)]
        baud: Option<u32>,
        /// Profile to take width, dpi and fonts from for the draft.
        #[arg(long, default_value = "generic-80mm")]
        like: String,
        /// Where to write the draft profile TOML.
        #[arg(long, default_value = "draft-profile.toml")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProfilesCommand {
    /// List the shipped profiles.
    List,
    /// Print a profile, resolved (inherits applied), as TOML.
    Show { name: String },
    /// Check a profile file; prints one line per bad field.
    Validate { file: PathBuf },
    /// Convert escpos-printer-db's capabilities.json into Frank profiles.
    Import {
        file: PathBuf,
        /// Directory to write `<id>.toml` files into.
        #[arg(long, default_value = "printer-profiles/imported")]
        out: PathBuf,
    },
}

pub fn run(cmd: PrinterCommand) -> anyhow::Result<()> {
    match cmd {
        PrinterCommand::List => list_ports(),
        PrinterCommand::Profiles(p) => profiles(p),
        PrinterCommand::Emulate {
            profile,
            baud,
            out,
            control,
        } => emulate(&profile, baud, out, control),
        PrinterCommand::Probe {
            port,
            baud,
            like,
            out,
        } => {
            let like = load_profile(&like)?;
            let r = probe(&port, &like, baud)?;
            println!("baud: {}", r.baud);
            if let Some(h) = r.host_status {
                println!(
                    "language: ZPL (answers ~HS: paper out {}, head open {}, paused {}, formats held {}, label length {} dots)",
                    h.paper_out, h.head_up, h.paused, h.formats_in_buffer, h.label_length_dots
                );
                std::fs::write(&out, &r.draft_toml)
                    .with_context(|| format!("writing the draft profile to {}", out.display()))?;
                println!(
                    "calibration label printed; draft ZPL profile written to {} — check it against the label",
                    out.display()
                );
                return Ok(());
            }
            for (i, s) in r.status_replies.iter().enumerate() {
                match s {
                    Some(b) => println!("DLE EOT {}: answers 0x{b:02x}", i + 1),
                    None => println!("DLE EOT {}: no answer", i + 1),
                }
            }
            println!(
                "DLE DC4 fn 8 (clear buffers): {}",
                if r.clear_buffers_confirmed {
                    "confirmed 37 25 00"
                } else {
                    "no reply (draft uses NUL flush + ESC @)"
                }
            );
            match r.throughput_bytes_per_s {
                Some(t) => println!("throughput: {t} bytes/s"),
                None => println!("throughput: not measured (no reply after the sample)"),
            }
            std::fs::write(&out, &r.draft_toml)
                .with_context(|| format!("writing the draft profile to {}", out.display()))?;
            println!(
                "calibration page printed; draft profile written to {} — check it against the page",
                out.display()
            );
            Ok(())
        }
    }
}

fn list_ports() -> anyhow::Result<()> {
    let ports = serialport::available_ports().context("listing serial ports")?;
    if ports.is_empty() {
        println!("no serial ports found");
    }
    for p in ports {
        let kind = match p.port_type {
            serialport::SerialPortType::UsbPort(u) => format!(
                "usb {:04x}:{:04x} {}",
                u.vid,
                u.pid,
                u.product.unwrap_or_default()
            ),
            serialport::SerialPortType::PciPort => "pci".into(),
            serialport::SerialPortType::BluetoothPort => "bluetooth".into(),
            serialport::SerialPortType::Unknown => "unknown".into(),
        };
        println!("{}\t{kind}", p.port_name);
    }
    Ok(())
}

/// A shipped profile id, or a path to a profile TOML file.
pub fn load_profile(name: &str) -> anyhow::Result<Profile> {
    if shipped_source(name).is_some() {
        return Ok(shipped(name)?);
    }
    let path = Path::new(name);
    if path.exists() {
        return load_file(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    bail!(
        "no profile {name:?}: not a shipped id ({}) nor a file",
        all_shipped_ids().collect::<Vec<_>>().join(", ")
    )
}

/// Load a profile file; `inherits` looks next to the file first, then the shipped set.
pub fn load_file(path: &Path) -> Result<Profile, ProfileError> {
    let id = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "profile".into());
    let src = std::fs::read_to_string(path).map_err(|e| ProfileError::Toml {
        id: id.clone(),
        message: e.to_string(),
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let lookup = move |parent: &str| {
        std::fs::read_to_string(dir.join(format!("{parent}.toml")))
            .ok()
            .or_else(|| shipped_source(parent).map(str::to_string))
    };
    let raw = RawProfile::parse(&id, &src, &lookup)?;
    Profile::from_raw(&id, &raw).map_err(ProfileError::Invalid)
}

fn profiles(cmd: ProfilesCommand) -> anyhow::Result<()> {
    match cmd {
        ProfilesCommand::List => {
            for id in all_shipped_ids() {
                let p = shipped(id)?;
                println!(
                    "{id:<20} {:<24} {} px @ {} dpi, {} baud",
                    p.name, p.media_width_px, p.dpi, p.serial.baud
                );
            }
            Ok(())
        }
        ProfilesCommand::Show { name } => {
            print!("{}", load_profile(&name)?.to_toml());
            Ok(())
        }
        ProfilesCommand::Validate { file } => match load_file(&file) {
            Ok(p) => {
                println!("{}: ok ({})", file.display(), p.name);
                Ok(())
            }
            Err(ProfileError::Invalid(errs)) => {
                for e in &errs {
                    println!("{}: {e}", file.display());
                }
                bail!("{}: {} bad field(s)", file.display(), errs.len())
            }
            Err(e) => bail!("{}: {e}", file.display()),
        },
        ProfilesCommand::Import { file, out } => {
            let json = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let (ok, skipped) = import_capabilities(&json)?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            for i in &ok {
                let path = out.join(format!("{}.toml", i.id));
                std::fs::write(&path, &i.toml)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {} (from {:?})", path.display(), i.db_key);
                for w in &i.warnings {
                    println!("  check: {w}");
                }
            }
            for s in &skipped {
                println!("skipped {:?}: {}", s.db_key, s.reasons.join("; "));
            }
            println!("{} imported, {} skipped", ok.len(), skipped.len());
            Ok(())
        }
    }
}

fn emulate(
    profile: &str,
    baud: Option<u32>,
    out: Option<PathBuf>,
    control: Option<PathBuf>,
) -> anyhow::Result<()> {
    let p = load_profile(profile)?;
    let control = control.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("frank-printer-{}.sock", std::process::id()))
    });
    let h = Emulator::spawn(
        &p,
        EmulatorOptions {
            baud,
            out_dir: out.clone(),
            control_socket: Some(control),
        },
    )
    .context("starting the virtual printer")?;
    println!("{}", h.device_path().display());
    if let Some(c) = h.control_socket() {
        eprintln!("control socket: {}", c.display());
    }
    eprintln!(
        "emulating {} at {} baud{}; Ctrl-C to stop",
        p.name,
        baud.unwrap_or(p.serial.baud),
        out.as_ref()
            .map(|o| format!(", pages to {}", o.display()))
            .unwrap_or_default()
    );
    let mut reported = 0;
    while !h.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        let jobs = h.jobs();
        let pngs = h.pngs();
        for (i, j) in jobs.iter().enumerate().skip(reported) {
            eprintln!(
                "page {}: {}x{} px, {} text lines, {} Data Matrix, {:?} cut{}",
                i + 1,
                j.image.width_px(),
                j.image.height_px(),
                j.text.len(),
                j.data_matrix.len(),
                j.cut,
                pngs.get(i)
                    .map(|p| format!(", {}", p.display()))
                    .unwrap_or_default()
            );
        }
        reported = jobs.len();
    }
    match h.error() {
        Some(e) => bail!("virtual printer stopped: {e}"),
        None => {
            eprintln!("virtual printer vanished (as asked)");
            Ok(())
        }
    }
}
