//! Progress of a long audit on standard error, never on standard output (which carries the
//! report, perhaps into a pipe): a bar redrawn in place when standard error is a terminal,
//! an occasional plain line when it is a file or a log collector, nothing when asked to be
//! quiet.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Redraws of the bar at most this often: enough to look alive, cheap on a slow terminal.
const BAR_REDRAW: Duration = Duration::from_millis(100);
/// Plain progress lines at most this often: a log gets a line a few times a minute.
const LINE_EVERY: Duration = Duration::from_secs(10);
/// Width of the bar, in characters.
const BAR_WIDTH: usize = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Quiet,
    Bar,
    Lines,
}

/// Progress over `total` keys.
pub(crate) struct Progress {
    style: Style,
    total: usize,
    done: usize,
    started: Instant,
    last: Instant,
}

impl Progress {
    /// Announces the work (unless `quiet`) and starts the clock.
    pub(crate) fn start(quiet: bool, total: usize, what: &str) -> Progress {
        let style = if quiet {
            Style::Quiet
        } else if std::io::stderr().is_terminal() {
            Style::Bar
        } else {
            Style::Lines
        };
        let now = Instant::now();
        let p = Progress {
            style,
            total,
            done: 0,
            started: now,
            last: now,
        };
        if style != Style::Quiet {
            p.write(&format!("vouch audit: {what}\n"));
        }
        p
    }

    /// One more key has its outcome.
    pub(crate) fn step(&mut self) {
        self.done += 1;
        let now = Instant::now();
        match self.style {
            Style::Quiet => {}
            Style::Bar if now - self.last >= BAR_REDRAW || self.done == self.total => {
                self.last = now;
                let filled = BAR_WIDTH * self.done / self.total.max(1);
                self.write(&format!(
                    "\r[{}{}] {}/{} keys, {:.0} s",
                    "#".repeat(filled),
                    "-".repeat(BAR_WIDTH - filled),
                    self.done,
                    self.total,
                    self.started.elapsed().as_secs_f64()
                ));
            }
            Style::Lines if now - self.last >= LINE_EVERY => {
                self.last = now;
                self.write(&format!(
                    "vouch audit: {}/{} keys verified, {:.0} s\n",
                    self.done,
                    self.total,
                    self.started.elapsed().as_secs_f64()
                ));
            }
            Style::Bar | Style::Lines => {}
        }
    }

    /// Ends the bar's line and says how long it took.
    pub(crate) fn finish(&self) {
        let took = self.started.elapsed().as_secs_f64();
        match self.style {
            Style::Quiet => {}
            Style::Bar => self.write(&format!(
                "\nvouch audit: {} keys in {took:.1} s\n",
                self.done
            )),
            Style::Lines => {
                self.write(&format!("vouch audit: {} keys in {took:.1} s\n", self.done))
            }
        }
    }

    fn write(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    }
}
