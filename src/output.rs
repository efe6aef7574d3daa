//! The one printer: all human output goes through here. Data (manifests, JSON results) goes to stdout,
//! everything for a human (progress, warnings, errors) to stderr. Progress is silent with `-q` and with
//! `-o json`/`-o yaml`, so pipelines get clean data on stdout and only warnings and errors on stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{IsTerminal, Write};

use console::Style;

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

    /// A progress line (stderr). Silent with `-q` or a data output format.
    pub fn info(&self, msg: impl AsRef<str>) {
        if self.progress_enabled() {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// Detail shown with `-v` (level 1) or `-vv` (level 2).
    pub fn debug(&self, level: u8, msg: impl AsRef<str>) {
        if !self.quiet && self.verbose >= level {
            let dim = self.style(Style::new().dim());
            eprintln!("{}", dim.apply_to(msg.as_ref()));
        }
    }

    /// A warning (stderr). Shown unless `-q`.
    pub fn warn(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            let yellow = self.style(Style::new().yellow().bold());
            eprintln!("{} {}", yellow.apply_to("warning:"), msg.as_ref());
        }
    }

    /// An error (stderr). Always shown.
    pub fn error(&self, msg: impl AsRef<str>) {
        let red = self.style(Style::new().red().bold());
        eprintln!("{} {}", red.apply_to("error:"), msg.as_ref());
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
