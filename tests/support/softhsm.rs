//! A throwaway SoftHSM2 token for tests and benches: a softhsm2.conf whose token directory is
//! in a temp dir of this process (`SOFTHSM2_CONF`), never the system's tokens.
#![allow(dead_code)]

use frank::pkcs11::{KEY_LABEL_DEFAULT, PinSource, Pkcs11Config, TokenKey};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The user PIN of every test token.
pub const PIN: &str = "frank-test-4711";
/// The security officer PIN of every test token.
pub const SO_PIN: &str = "frank-so-0815";

/// Where Debian and others install SoftHSM2's module.
const MODULE_PATHS: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// SoftHSM2's PKCS#11 module; panics with what to install when it is missing (`.ci/run`
/// installs it).
pub fn module() -> PathBuf {
    MODULE_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("SoftHSM2 is not installed: apt-get install softhsm2")
}

struct Conf {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

static CONF: OnceLock<Conf> = OnceLock::new();

/// This process's softhsm2.conf (token directory in a temp dir), set as `SOFTHSM2_CONF` before
/// anything in the process loads the module. Call it first thing in every test that uses a
/// token.
pub fn conf() -> &'static Path {
    &CONF
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temp dir");
            let tokens = dir.path().join("tokens");
            std::fs::create_dir(&tokens).expect("token dir");
            let path = dir.path().join("softhsm2.conf");
            std::fs::write(
                &path,
                format!(
                    "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                    tokens.display()
                ),
            )
            .expect("softhsm2.conf");
            // SAFETY: set once, inside this OnceLock, before any test of this process loads the
            // PKCS#11 module or spawns a child that reads it; every token test calls `conf()`
            // first, and the others wait here until it is set.
            unsafe { std::env::set_var("SOFTHSM2_CONF", &path) };
            Conf { _dir: dir, path }
        })
        .path
}

static NEXT: AtomicU64 = AtomicU64::new(1);

/// A fresh token in this process's token directory, its user PIN in a 0600 file.
pub struct Token {
    pub label: String,
    pub pin_file: PathBuf,
    _pin_dir: tempfile::TempDir,
}

/// Serialises token creation: two tests must not take the same free slot.
static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Initialises a new token on the module's free slot, in this process (SoftHSM2 does not see
/// tokens another process creates after it loaded; child processes loading it later do).
pub fn token() -> Token {
    use cryptoki::types::AuthPin;
    conf();
    let label = format!(
        "frank-t{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    {
        let _one = CREATING.lock().unwrap_or_else(|p| p.into_inner());
        let m = frank::pkcs11::module(&module()).expect("SoftHSM2 module");
        let slot = m
            .get_all_slots()
            .expect("slots")
            .into_iter()
            .find(|s| m.get_token_info(*s).is_ok_and(|i| !i.token_initialized()))
            .expect("SoftHSM2 always offers a free slot");
        m.init_token(slot, &AuthPin::from(SO_PIN.to_string()), &label)
            .expect("C_InitToken");
        let session = m.open_rw_session(slot).expect("session");
        session
            .login(
                cryptoki::session::UserType::So,
                Some(&AuthPin::from(SO_PIN.to_string())),
            )
            .expect("SO login");
        session
            .init_pin(&AuthPin::from(PIN.to_string()))
            .expect("C_InitPIN");
        session.logout().expect("SO logout");
    }
    let pin_dir = tempfile::tempdir().expect("a temp dir");
    let pin_file = pin_dir.path().join("token.pin");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&pin_file)
            .expect("pin file");
        writeln!(f, "{PIN}").expect("pin file");
    }
    Token {
        label,
        pin_file,
        _pin_dir: pin_dir,
    }
}

impl Token {
    /// The token and the default key label, the PIN from the file.
    pub fn token_key(&self) -> TokenKey {
        TokenKey {
            module: module(),
            token: self.label.clone(),
            key: KEY_LABEL_DEFAULT.to_string(),
            pin: PinSource::File(self.pin_file.clone()),
        }
    }

    /// `[pkcs11]` for this token's default key, pinned to `public`.
    pub fn config(&self, public: &[u8; 32]) -> Pkcs11Config {
        let mut c = Pkcs11Config {
            module: module(),
            token: self.label.clone(),
            key: KEY_LABEL_DEFAULT.to_string(),
            fingerprint: hex::encode(public),
            pin_file: None,
            pin_env: None,
            pin_credential: None,
            sessions_max: None,
        };
        c.set_pin_source(PinSource::File(self.pin_file.clone()));
        c
    }
}
