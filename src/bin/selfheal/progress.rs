//! Progress bars on stderr (indicatif): count, rate and time left. They
//! draw only on a terminal, so logs and CI output stay free of them.

use indicatif::{ProgressBar, ProgressStyle};
use selfheal::train::trainer::{EpochStats, Progress};

fn bar(template: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("a valid progress template")
            .progress_chars("=> "),
    );
    bar
}

/// A bar over runs (sweeps, the suite, trace generation, selector trials):
/// call it with (done, total) as runs finish, from any thread.
pub fn runs(what: &'static str) -> impl Fn(usize, usize) + Sync {
    let bar = bar(&format!(
        "  [{{elapsed_precise}}] [{{bar:30}}] {{pos}}/{{len}} {what} ({{per_sec}}, {{eta}} left)"
    ));
    move |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        if done >= total {
            bar.finish_and_clear();
        }
    }
}

/// A bar over each epoch's batches with the running loss and accuracy,
/// and a line on stdout per finished epoch.
pub struct Epochs {
    pub epochs: usize,
    /// The bar of the epoch under way.
    bar: Option<ProgressBar>,
}

impl Epochs {
    pub fn new(epochs: usize) -> Self {
        Epochs { epochs, bar: None }
    }
}

impl Progress for Epochs {
    fn batch(&mut self, epoch: usize, done: usize, total: usize, loss: f64, accuracy: f64) {
        let epochs = self.epochs;
        let bar = self.bar.get_or_insert_with(|| {
            let b = bar("  {prefix} [{bar:30}] {pos}/{len} batches, {msg} ({eta} left)");
            b.set_prefix(format!("epoch {epoch}/{epochs}"));
            b.set_length(total as u64);
            b
        });
        bar.set_position(done as u64);
        bar.set_message(format!("loss {loss:.4} acc {:.1}%", 100.0 * accuracy));
    }

    fn epoch(&mut self, s: &EpochStats, best: bool) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        outln!(
            "epoch {:>2}: train loss {:.4} acc {:.1}% | validation loss {:.4} acc {:.1}% | {:.0} s{}",
            s.epoch,
            s.train_loss,
            100.0 * s.train_accuracy,
            s.val_loss,
            100.0 * s.val_accuracy,
            s.seconds,
            if best { " (best)" } else { "" }
        );
    }
}
