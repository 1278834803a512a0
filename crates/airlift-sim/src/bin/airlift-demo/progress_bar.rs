//! The demo's progress per stage: a live bar on a terminal (indicatif),
//! and, when stdout is a file or a pipe, one plain line per stage as it
//! ends, so a redirected run reads as a log.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

pub struct StageProgress {
    /// Lines instead of a bar.
    plain: bool,
    bar: Option<ProgressBar>,
    /// The stage shown: (index, count, name), and its latest figures.
    stage: Option<(usize, usize, String)>,
    figures: (u64, u64),
}

impl StageProgress {
    pub fn new() -> Self {
        Self { plain: !std::io::stdout().is_terminal(), bar: None, stage: None, figures: (0, 0) }
    }

    /// Stage `index` of `count` is at `done` of `total` operations.
    pub fn update(&mut self, index: usize, count: usize, name: &str, done: u64, total: u64) {
        if self.stage.as_ref().is_none_or(|(i, _, n)| *i != index || n != name) {
            self.end_stage();
            self.stage = Some((index, count, name.to_string()));
            if !self.plain {
                let bar = ProgressBar::new(total).with_prefix(format!("{:>2}/{count}", (index + 1).min(count))).with_message(name.to_string());
                bar.set_style(ProgressStyle::with_template("  {prefix} {msg:<22} [{bar:30}] {pos}/{len}").unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("#>-"));
                self.bar = Some(bar);
            }
        }
        self.figures = (done, total);
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    /// The last stage is over.
    pub fn finish(&mut self) {
        self.end_stage();
    }

    fn end_stage(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        } else if let Some((index, count, name)) = &self.stage {
            println!("  {:>2}/{count} {name:<22} {}/{}", (index + 1).min(*count), self.figures.0, self.figures.1);
        }
        self.stage = None;
    }
}
