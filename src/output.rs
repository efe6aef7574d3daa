//! The one printer: all human output goes through here. Data (manifests, JSON results) goes to stdout,
//! everything for a human (progress, warnings, errors) to stderr. Progress is silent with `-q` and with
//! `-o json`/`-o yaml`, so pipelines get clean data on stdout and only warnings and errors on stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{IsTerminal, Write};

use std::sync::Mutex;

use console::Style;

/// The spinner on screen, if any: other lines are printed above it.
static ACTIVE: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// Prints a line on stderr without tearing an active spinner.
fn line(text: &str) {
    let active = ACTIVE.lock().map(|a| a.clone()).unwrap_or(None);
    match active {
        Some(bar) => bar.suspend(|| eprintln!("{text}")),
        None => eprintln!("{text}"),
    }
}

/// `-o/--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum OutputFormat {
    /// Human-readable text (for render: YAML).
    #[default]
    Text,
    /// YAML on stdout.
    Yaml,
    /// JSON on stdout.
    Json,
}

#[derive(Debug, Clone)]
pub struct Printer {
    format: OutputFormat,
    quiet: bool,
    verbose: u8,
    color: bool,
    stderr_tty: bool,
}

impl Printer {
    pub fn new(format: OutputFormat, quiet: bool, verbose: u8, no_color: bool) -> Self {
        let stderr_tty = std::io::stderr().is_terminal();
        let no_color = no_color || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Printer {
            format,
            quiet,
            verbose,
            color: stderr_tty && !no_color,
            stderr_tty,
        }
    }

    pub fn format(&self) -> OutputFormat {
        self.format
    }

    pub fn stderr_is_tty(&self) -> bool {
        self.stderr_tty
    }

    pub fn verbosity(&self) -> u8 {
        self.verbose
    }

    fn progress_enabled(&self) -> bool {
        !self.quiet && self.format == OutputFormat::Text
    }

    fn style(&self, style: Style) -> Style {
        if self.color {
            style.force_styling(true)
        } else {
            style.force_styling(false)
        }
    }

    /// A progress line (stderr). Silent with `-q` or a data output format. Without a terminal each line
    /// starts with a UTC timestamp, for CI logs.
    pub fn info(&self, msg: impl AsRef<str>) {
        if self.progress_enabled() {
            if self.stderr_tty {
                line(msg.as_ref());
            } else {
                line(&format!(
                    "{} {}",
                    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                    msg.as_ref()
                ));
            }
        }
    }

    /// A step in progress: a spinner on a terminal, a timestamped line otherwise. Dropping it (or
    /// [`Progress::finish`]) ends it.
    pub fn progress(&self, msg: impl Into<String>) -> Progress {
        let msg = msg.into();
        let spinning = ACTIVE.lock().map(|a| a.is_some()).unwrap_or(true);
        if self.progress_enabled() && self.stderr_tty && !spinning {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .expect("a valid progress template"),
            );
            bar.set_message(msg);
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            if let Ok(mut active) = ACTIVE.lock() {
                *active = Some(bar.clone());
            }
            Progress { bar: Some(bar) }
        } else {
            self.info(&msg);
            Progress { bar: None }
        }
    }

    /// Detail shown with `-v` (level 1) or `-vv` (level 2).
    pub fn debug(&self, level: u8, msg: impl AsRef<str>) {
        if !self.quiet && self.verbose >= level {
            let dim = self.style(Style::new().dim());
            line(&dim.apply_to(msg.as_ref()).to_string());
        }
    }

    /// A warning (stderr). Shown unless `-q`.
    pub fn warn(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            let yellow = self.style(Style::new().yellow().bold());
            line(&format!("{} {}", yellow.apply_to("warning:"), msg.as_ref()));
        }
    }

    /// An error (stderr). Always shown.
    pub fn error(&self, msg: impl AsRef<str>) {
        let red = self.style(Style::new().red().bold());
        line(&format!("{} {}", red.apply_to("error:"), msg.as_ref()));
    }

    /// Data for stdout, written as is.
    pub fn data(&self, text: &str) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        if !text.ends_with('\n') && !text.is_empty() {
            out.write_all(b"\n")?;
        }
        out.flush()
    }
}

/// A spinner (on a terminal) for a step in progress.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// Ends the spinner; `line` is printed in its place (through the printer, by the caller).
    pub fn finish(self) {}
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            if let Ok(mut active) = ACTIVE.lock() {
                *active = None;
            }
            bar.finish_and_clear();
        }
    }
}
