//! Issue 5: while a job streams, another *process* cannot open the printer's port.

use frank::link::LinkState;
use frank::printer::bitmap::Bitmap;
use frank::printer::compiler::{Element, Indicium, Label, TextLine, compile};
use frank::printer::emulator::{Emulator, EmulatorOptions};
use frank::printer::profile::shipped;
use frank::printer::streamer::{NoMilestones, PrinterPort, StreamConfig, spawn_job};
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[test]
fn another_process_cannot_open_the_port_while_a_job_runs() {
    let mut p = shipped("virtual").unwrap();
    p.serial.baud = 115_200;
    let mut image = Bitmap::new(384, 384);
    for y in 0..384 {
        for x in 0..384 {
            image.set(x, y, (x / 8 + y / 8) % 2 == 0);
        }
    }
    let label = Label {
        elements: vec![
            Element::Text(TextLine::plain("EXCLUSIVE")),
            Element::Indicium(Indicium::Image(image)),
        ],
        cut: true,
    };
    let job = compile(&label, &p, 256).unwrap();
    let emu = Emulator::spawn(
        &p,
        EmulatorOptions {
            baud: None,
            out_dir: None,
            control_socket: None,
        },
    )
    .unwrap();
    let port = PrinterPort::open(emu.device_path(), &p, None).unwrap();
    let (link_tx, link) = watch::channel(LinkState::Up);
    let (handle, progress) = spawn_job(
        port,
        job,
        link,
        StreamConfig::default(),
        Box::new(NoMilestones),
    );
    let t0 = Instant::now();
    while progress.borrow().bytes_sent == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "job never started");
        std::thread::sleep(Duration::from_millis(2));
    }

    let out = tempfile::tempdir().unwrap();
    let probe = std::process::Command::new(env!("CARGO_BIN_EXE_frank"))
        .args(["printer", "probe"])
        .arg(emu.device_path())
        .args(["--baud", "115200", "--out"])
        .arg(out.path().join("draft.toml"))
        .output()
        .unwrap();
    let still_running = progress.borrow().bytes_sent < progress.borrow().bytes_total;
    link_tx.send_replace(LinkState::Closed);
    let _ = handle.join().unwrap();

    assert!(
        still_running,
        "the job must still be streaming when the other process tries"
    );
    assert!(
        !probe.status.success(),
        "the probe must not open a port in use"
    );
    let err = String::from_utf8_lossy(&probe.stderr);
    assert!(err.contains("in use by another program"), "{err}");
}
