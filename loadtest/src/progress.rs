//! A progress line on stderr: flows done, events accepted and delivered, current rates.

use crate::report::Recorder;
use crate::sink::SinkState;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

const WIDTH: usize = 30;

pub fn start(
    recorder: Arc<Recorder>,
    sink: Arc<SinkState>,
    sessions: u64,
    duration: Option<Duration>,
) -> JoinHandle<()> {
    // Redrawn in place on a terminal; a line every 5 s in a log.
    let (tick, in_place) = if std::io::stderr().is_terminal() {
        (Duration::from_millis(250), true)
    } else {
        (Duration::from_secs(5), false)
    };
    tokio::spawn(async move {
        let mut previous = (0usize, 0usize);
        loop {
            tokio::time::sleep(tick).await;
            let elapsed = recorder.start.elapsed();
            let done = match duration {
                Some(d) => elapsed.as_secs_f64() / d.as_secs_f64(),
                None => recorder.flows() as f64 / sessions.max(1) as f64,
            }
            .min(1.0);
            let accepted = recorder.accepted_count();
            let delivered = sink.arrivals.lock().map(|a| a.len()).unwrap_or(0);
            let per_s = |now: usize, before: usize| (now - before.min(now)) as f64 / tick.as_secs_f64();
            let filled = (done * WIDTH as f64) as usize;
            let line = format!(
                "[{}{}] {:>3.0}% {:>6.1}s  events {accepted} ({:.0}/s)  webhooks {delivered} ({:.0}/s)",
                "#".repeat(filled),
                "-".repeat(WIDTH - filled),
                done * 100.0,
                elapsed.as_secs_f64(),
                per_s(accepted, previous.0),
                per_s(delivered, previous.1),
            );
            previous = (accepted, delivered);
            let mut err = std::io::stderr().lock();
            let _ = if in_place {
                write!(err, "\r{line}")
            } else {
                writeln!(err, "{line}")
            };
            let _ = err.flush();
        }
    })
}
