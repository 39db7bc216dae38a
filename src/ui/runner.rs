//! The terminal shell around [`App`]: raw mode and the alternate screen via `ratatui::init()`
//! (whose panic hook restores the terminal), a reader thread for crossterm events, a tick
//! timer, SIGTERM/SIGHUP handling, and coalesced redraws. Raw mode turns Ctrl-C, Ctrl-Z and
//! Ctrl-\ into key events, so they reach the app (which traps them in kiosk mode) instead of
//! signalling the process.

use super::event::{Backend, COMMANDS_QUEUE_MAX, Command, EVENTS_QUEUE_MAX, Event};
use super::{App, draw_with_hits};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Interval of [`Event::Tick`]s, in milliseconds.
pub const TICK_INTERVAL_MS: u64 = 250;
/// How long the reader thread waits for a key before checking whether to stop, in ms.
const READER_POLL_MS: u64 = 100;
/// Most events handled before a redraw, so a flood cannot starve the screen.
const EVENTS_PER_FRAME_MAX: usize = 64;

/// A full-screen session, shared by the counter and the admin monitor: the terminal in
/// ratatui's raw alternate screen (restored when this drops, and by ratatui's panic hook on a
/// panic) and a reader thread turning terminal events into `T`s on a bounded channel. Dropping
/// it stops and joins the reader, then restores the terminal.
pub(crate) struct FullScreen {
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// A full-screen program needs its standard input and output on a terminal: started from a
/// pipe, a service manager or a script, it says so instead of failing to draw.
pub fn require_terminal() -> std::io::Result<()> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        return Ok(());
    }
    Err(std::io::Error::other(
        "this screen needs a terminal: standard input and output must both be a terminal \
         (run it in a terminal window, or use --headless where the command has it)",
    ))
}

/// [`require_terminal`] for a command that shows the counter screen, checked before it starts
/// anything: the error names the command and the way to run it without a screen.
pub fn require_terminal_for(command: &str, without_screen: &str) -> anyhow::Result<()> {
    require_terminal().map_err(|_| {
        anyhow::anyhow!(
            "{command} shows the counter screen and needs a terminal (standard input and \
             output are not one here); `{without_screen}` runs without a screen"
        )
    })
}

impl FullScreen {
    /// Enters the screen. Returns the terminal, the events `pick` keeps (queue of
    /// `events_queue_max`) and a future that completes on SIGTERM or SIGHUP.
    pub(crate) fn enter<T: Send + 'static>(
        events_queue_max: usize,
        pick: fn(crossterm::event::Event) -> Option<T>,
    ) -> std::io::Result<(
        FullScreen,
        ratatui::DefaultTerminal,
        mpsc::Receiver<T>,
        impl Future<Output = ()>,
    )> {
        use tokio::signal::unix::{SignalKind, signal};
        require_terminal()?;
        let mut term_sig = signal(SignalKind::terminate())?;
        let mut hup_sig = signal(SignalKind::hangup())?;
        let terminal = ratatui::try_init()?;
        let (tx, events) = mpsc::channel(events_queue_max.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = spawn_reader(tx, stop.clone(), pick);
        let signalled = async move {
            tokio::select! {
                _ = term_sig.recv() => {}
                _ = hup_sig.recv() => {}
            }
        };
        let screen = FullScreen {
            stop,
            reader: Some(reader),
        };
        Ok((screen, terminal, events, signalled))
    }
}

impl Drop for FullScreen {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        ratatui::restore();
    }
}

fn spawn_reader<T: Send + 'static>(
    tx: mpsc::Sender<T>,
    stop: Arc<AtomicBool>,
    pick: fn(crossterm::event::Event) -> Option<T>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        use crossterm::event as ct;
        while !stop.load(Ordering::Relaxed) {
            match ct::poll(Duration::from_millis(READER_POLL_MS)) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => return,
            }
            let ev = match ct::read() {
                Ok(ev) => match pick(ev) {
                    Some(ev) => ev,
                    None => continue,
                },
                Err(_) => return,
            };
            if tx.blocking_send(ev).is_err() {
                return;
            }
        }
    })
}

/// Today's date on this machine's clock, in its time zone (the shell reads the clock; the
/// app only hears [`Event::Today`]).
fn local_today() -> Option<crate::indicium::kinds::Day> {
    use chrono::Datelike;
    let d = chrono::Local::now().date_naive();
    let (m, day) = (u8::try_from(d.month()).ok()?, u8::try_from(d.day()).ok()?);
    crate::indicium::kinds::Day::from_ymd("today", d.year(), m, day).ok()
}

/// The terminal events the counter handles.
fn counter_event(ev: crossterm::event::Event) -> Option<Event> {
    match ev {
        crossterm::event::Event::Key(k) => Some(Event::Key(k)),
        crossterm::event::Event::Resize(w, h) => Some(Event::Resize(w, h)),
        crossterm::event::Event::Mouse(m) => Some(Event::Mouse(m)),
        _ => None,
    }
}

/// Keeps the theme chosen on the settings screen (the counter writes it to its config file);
/// an error is said on screen in words.
pub type SaveTheme = Box<dyn FnMut(&str) -> Result<(), String> + Send>;

/// Runs the counter UI until the app quits, a termination signal arrives, or the backend
/// channel closes. `backend` carries reports in; `commands` carries the app's commands out
/// (channels bounded by [`EVENTS_QUEUE_MAX`] and [`COMMANDS_QUEUE_MAX`] — create them with
/// those bounds). Never blocks on the backend: a full command queue is reported on screen.
pub async fn run(
    app: App,
    backend: mpsc::Receiver<Backend>,
    commands: mpsc::Sender<Command>,
    save_theme: Option<SaveTheme>,
) -> anyhow::Result<()> {
    let (screen, terminal, keys, signalled) = FullScreen::enter(EVENTS_QUEUE_MAX, counter_event)?;
    // Clicks on buttons, rows and fields; released before the screen is restored.
    let mouse = MouseCapture::enable();
    let result = drive_saving(
        terminal, app, keys, backend, commands, signalled, save_theme,
    )
    .await;
    drop(mouse);
    drop(screen);
    result.map(|_| ())
}

/// The terminal reports mouse events while this lives (normal mode only: the plain mode
/// leaves the mouse to the terminal and its screen reader).
struct MouseCapture(bool);

impl MouseCapture {
    fn enable() -> MouseCapture {
        MouseCapture(
            crossterm::execute!(std::io::stdout(), crossterm::event::EnableMouseCapture).is_ok(),
        )
    }
}

impl Drop for MouseCapture {
    fn drop(&mut self) {
        if self.0 {
            let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableMouseCapture);
        }
    }
}

/// The loop of [`run`] over any ratatui backend and any source of terminal events, so tests
/// can drive it with a `TestBackend`. Ends when the app quits, `stop` completes, or the
/// backend channel closes; returns the final app state.
pub async fn drive<B: ratatui::backend::Backend<Error: Send + Sync + 'static>>(
    terminal: ratatui::Terminal<B>,
    app: App,
    keys: mpsc::Receiver<Event>,
    backend: mpsc::Receiver<Backend>,
    commands: mpsc::Sender<Command>,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<App> {
    drive_saving(terminal, app, keys, backend, commands, stop, None).await
}

/// [`drive`], with `save_theme` called for each theme chosen on the settings screen.
pub async fn drive_saving<B: ratatui::backend::Backend<Error: Send + Sync + 'static>>(
    terminal: ratatui::Terminal<B>,
    app: App,
    keys: mpsc::Receiver<Event>,
    backend: mpsc::Receiver<Backend>,
    commands: mpsc::Sender<Command>,
    stop: impl std::future::Future<Output = ()>,
    save_theme: Option<SaveTheme>,
) -> anyhow::Result<App> {
    let mut out = Drawn(terminal);
    let size = out.0.size()?;
    let mut app = app;
    app.handle(Event::Resize(size.width, size.height));
    pump(&mut out, app, keys, backend, commands, stop, save_theme).await
}

/// Where the pump shows the app: the drawn screen, or the plain mode's lines.
trait Show {
    fn show(&mut self, app: &mut App) -> anyhow::Result<()>;
    /// A key was handled; `before` is the focused field's value as it was (the plain mode
    /// echoes what was typed).
    fn keyed(&mut self, _app: &App, _before: Option<String>) {}
}

/// The full screen: a ratatui terminal, with each frame's clickable areas handed to the app.
struct Drawn<B: ratatui::backend::Backend<Error: Send + Sync + 'static>>(ratatui::Terminal<B>);

impl<B: ratatui::backend::Backend<Error: Send + Sync + 'static>> Show for Drawn<B> {
    fn show(&mut self, app: &mut App) -> anyhow::Result<()> {
        let mut hits = None;
        self.0.draw(|f| hits = Some(draw_with_hits(f, app)))?;
        if let Some(h) = hits {
            app.set_hits(h);
        }
        Ok(())
    }
}

/// The plain mode: lines to a writer, `\r\n` ended (the terminal is in raw mode for keys).
struct Lines<W: std::io::Write> {
    out: W,
    plain: super::plain::Plain,
    /// Typed characters were echoed on the current line: the next line starts a new one.
    mid_line: bool,
}

/// The focused field's value as shown (secrets masked), for echoing what was typed.
fn focused_value(app: &App) -> Option<String> {
    let form = app.form_of(app.screen)?;
    form.display(form.focus_index())
}

impl<W: std::io::Write> Show for Lines<W> {
    fn show(&mut self, app: &mut App) -> anyhow::Result<()> {
        let lines = self.plain.lines(app);
        if lines.is_empty() {
            return Ok(());
        }
        if self.mid_line {
            self.out.write_all(b"\r\n")?;
            self.mid_line = false;
        }
        for l in lines {
            self.out.write_all(l.as_bytes())?;
            self.out.write_all(b"\r\n")?;
        }
        self.out.flush()?;
        Ok(())
    }

    fn keyed(&mut self, app: &App, before: Option<String>) {
        let (Some(before), Some(after)) = (before, focused_value(app)) else {
            return;
        };
        // One character more: echo it (a secret's mask, never its digit).
        if after.chars().count() == before.chars().count() + 1
            && let Some(c) = after.chars().last()
        {
            let c = if app.pin_prompt.is_some() { '•' } else { c };
            let mut buf = [0u8; 4];
            let _ = self.out.write_all(c.encode_utf8(&mut buf).as_bytes());
            let _ = self.out.flush();
            self.mid_line = true;
        }
    }
}

/// The plain mode's loop (see [`super::plain`]) over any writer, so tests can read its lines:
/// like [`drive`], but each change is written as one plain line and nothing is drawn.
pub async fn drive_plain<W: std::io::Write>(
    out: W,
    app: App,
    keys: mpsc::Receiver<Event>,
    backend: mpsc::Receiver<Backend>,
    commands: mpsc::Sender<Command>,
    stop: impl std::future::Future<Output = ()>,
    save_theme: Option<SaveTheme>,
) -> anyhow::Result<App> {
    let mut out = Lines {
        out,
        plain: super::plain::Plain::new(),
        mid_line: false,
    };
    pump(&mut out, app, keys, backend, commands, stop, save_theme).await
}

/// The terminal events the plain mode handles: keys only (no mouse, no size: nothing is drawn).
fn plain_event(ev: crossterm::event::Event) -> Option<Event> {
    match ev {
        crossterm::event::Event::Key(k) => Some(Event::Key(k)),
        _ => None,
    }
}

/// Runs the counter in the plain mode: raw mode for keys (restored on the way out), no
/// alternate screen, no mouse capture; lines on standard output.
pub async fn run_plain(
    app: App,
    backend: mpsc::Receiver<Backend>,
    commands: mpsc::Sender<Command>,
    save_theme: Option<SaveTheme>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    require_terminal()?;
    let mut term_sig = signal(SignalKind::terminate())?;
    let mut hup_sig = signal(SignalKind::hangup())?;
    crossterm::terminal::enable_raw_mode()?;
    struct Raw;
    impl Drop for Raw {
        fn drop(&mut self) {
            let _ = crossterm::terminal::disable_raw_mode();
        }
    }
    let raw = Raw;
    let (tx, keys) = mpsc::channel(EVENTS_QUEUE_MAX);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = spawn_reader(tx, stop.clone(), plain_event);
    let signalled = async move {
        tokio::select! {
            _ = term_sig.recv() => {}
            _ = hup_sig.recv() => {}
        }
    };
    let result = drive_plain(
        std::io::stdout(),
        app,
        keys,
        backend,
        commands,
        signalled,
        save_theme,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    drop(raw);
    println!();
    result.map(|_| ())
}

/// The loop shared by the screen and the plain mode: events in (keys first, then reports,
/// then time), commands out without blocking, shown after each batch.
async fn pump(
    out: &mut impl Show,
    mut app: App,
    mut keys: mpsc::Receiver<Event>,
    mut backend: mpsc::Receiver<Backend>,
    commands: mpsc::Sender<Command>,
    stop: impl std::future::Future<Output = ()>,
    mut save_theme: Option<SaveTheme>,
) -> anyhow::Result<App> {
    let mut tick = tokio::time::interval(Duration::from_millis(TICK_INTERVAL_MS));
    let mut last_tick = tokio::time::Instant::now();
    let mut today = local_today();
    if let Some(day) = today {
        app.handle(Event::Today(day));
    }
    tokio::pin!(stop);
    loop {
        out.show(&mut app)?;
        // Biased: keys first, then reports, then time, then stop — a deterministic order.
        let first = tokio::select! {
            biased;
            Some(ev) = keys.recv() => ev,
            b = backend.recv() => match b {
                Some(b) => Event::Backend(b),
                None => break,
            },
            _ = tick.tick() => {
                let day = local_today();
                if day != today && let Some(d) = day {
                    today = day;
                    app.handle(Event::Today(d));
                }
                let now = tokio::time::Instant::now();
                let elapsed_ms = now.duration_since(last_tick).as_millis() as u64;
                last_tick = now;
                Event::Tick { elapsed_ms }
            }
            _ = &mut stop => break,
        };
        let mut batch = vec![first];
        // Coalesce: take what is already queued (bounded) before showing.
        while batch.len() < EVENTS_PER_FRAME_MAX {
            match keys.try_recv() {
                Ok(ev) => batch.push(ev),
                Err(_) => break,
            }
        }
        for ev in batch {
            let keyed = matches!(ev, Event::Key(_));
            let before = if keyed { focused_value(&app) } else { None };
            for cmd in app.handle(ev) {
                if let Err(e) = commands.try_send(cmd) {
                    let what = match e {
                        mpsc::error::TrySendError::Full(_) => "the backend is busy",
                        mpsc::error::TrySendError::Closed(_) => "the backend stopped",
                    };
                    app.handle(Event::Backend(Backend::Error(format!(
                        "Not sent: {what} (queue of {COMMANDS_QUEUE_MAX}); try again."
                    ))));
                }
            }
            if keyed {
                out.keyed(&app, before);
            }
        }
        if let (Some(name), Some(save)) = (app.take_theme_to_save(), save_theme.as_mut())
            && let Err(e) = save(&name)
        {
            app.handle(Event::Backend(Backend::Error(format!(
                "The {name} theme is used until the counter quits but could not be saved: {e}"
            ))));
        }
        if app.quit {
            break;
        }
    }
    out.show(&mut app)?;
    Ok(app)
}
