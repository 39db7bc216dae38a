//! Reading a secret (a password) from the environment or the terminal without echo.

use std::io::{BufRead, IsTerminal, Write};

/// Environment variable that supplies a password non-interactively (scripts, CI).
pub const PASSWORD_ENV: &str = "FRANK_PASSWORD";

/// Reads a password: `FRANK_PASSWORD` if set, else a prompt on the terminal with echo off.
pub fn read_password(prompt: &str) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        return Ok(p);
    }
    let stdin = std::io::stdin();
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let restore = if stdin.is_terminal() {
        echo_off()
    } else {
        None
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = restore {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &saved,
        );
        eprintln!();
    }
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// One line from standard input (echoed), after `prompt` on stderr.
pub fn read_line(prompt: &str) -> anyhow::Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let line = line.trim().to_string();
    if line.is_empty() {
        anyhow::bail!("nothing entered");
    }
    Ok(line)
}

fn echo_off() -> Option<nix::sys::termios::Termios> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let saved = tcgetattr(std::io::stdin()).ok()?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(std::io::stdin(), SetArg::TCSANOW, &quiet).ok()?;
    Some(saved)
}
