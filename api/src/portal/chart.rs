//! One small chart per endpoint: its deliveries and failures hour by hour over the last day,
//! drawn as inline SVG (no script, nothing fetched; the CSP allows it).

use checkout::attempt_log::{AttemptRecord, AttemptStatus};
use checkout::clock::Timestamp;
use maud::{Markup, html};

pub const HOURS: usize = 24;

/// Attempts sent in one hour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hour {
    pub succeeded: usize,
    pub failed: usize,
}

/// The records' attempts by hour, oldest hour first, the last one ending at `now`.
pub fn hourly(records: &[AttemptRecord], now: Timestamp) -> [Hour; HOURS] {
    let mut hours = [Hour::default(); HOURS];
    for record in records {
        let age = (now - record.at).num_minutes();
        let Ok(hours_ago) = usize::try_from(age / 60) else {
            continue;
        };
        let Some(slot) = HOURS.checked_sub(hours_ago + 1) else {
            continue;
        };
        match record.status {
            AttemptStatus::Succeeded => hours[slot].succeeded += 1,
            AttemptStatus::Failed => hours[slot].failed += 1,
            AttemptStatus::Paused | AttemptStatus::Skipped => {}
        }
    }
    hours
}

/// Stacked bars, failures (red) above deliveries (green), scaled to the busiest hour.
pub fn svg(hours: &[Hour; HOURS], width: u32, height: u32) -> Markup {
    let busiest = hours.iter().map(|h| h.succeeded + h.failed).max().unwrap_or(0).max(1);
    let bar = width / HOURS as u32;
    let scale = |n: usize| (n as u64 * u64::from(height) / busiest as u64) as u32;
    let total: usize = hours.iter().map(|h| h.succeeded + h.failed).sum();
    let failed: usize = hours.iter().map(|h| h.failed).sum();
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" width=(width) height=(height)
            viewBox={ "0 0 " (width) " " (height) } role="img" {
            title { "Last 24 hours: " (total) " attempts, " (failed) " failed" }
            rect x="0" y="0" width=(width) height=(height) fill="#f0f2f5" {}
            @for (i, hour) in hours.iter().enumerate() {
                @let x = i as u32 * bar;
                @let ok = scale(hour.succeeded);
                @let bad = scale(hour.failed);
                @if ok > 0 {
                    rect x=(x) y=(height - ok) width=(bar.saturating_sub(1)) height=(ok) fill="#17b26a" {}
                }
                @if bad > 0 {
                    rect.failed x=(x) y=(height - ok - bad) width=(bar.saturating_sub(1)) height=(bad) fill="#d92d20" {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkout::clock;
    use checkout::testkit::{attempt_record, event, merchant};

    #[test]
    fn attempts_fall_in_their_hour_and_scale_to_the_busiest() {
        let now = clock::now();
        let at = |minutes_ago: i64, status| {
            let mut r = attempt_record("we_x", &event(&merchant(), None, 1), 1);
            r.at = now - chrono::Duration::minutes(minutes_ago);
            r.status = status;
            r
        };
        let records = [
            at(5, AttemptStatus::Succeeded),
            at(59, AttemptStatus::Failed),
            at(61, AttemptStatus::Succeeded),
            at(23 * 60 + 30, AttemptStatus::Failed),
            at(25 * 60, AttemptStatus::Failed),
            at(3, AttemptStatus::Paused),
        ];
        let hours = hourly(&records, now);
        assert_eq!(
            hours[HOURS - 1],
            Hour {
                succeeded: 1,
                failed: 1
            }
        );
        assert_eq!(
            hours[HOURS - 2],
            Hour {
                succeeded: 1,
                failed: 0
            }
        );
        assert_eq!(
            hours[0],
            Hour {
                succeeded: 0,
                failed: 1
            }
        );
        assert_eq!(
            hours.iter().map(|h| h.succeeded + h.failed).sum::<usize>(),
            4,
            "older than a day is left out"
        );
        let drawn = svg(&hours, 240, 40).into_string();
        assert_eq!(drawn.matches("class=\"failed\"").count(), 2);
        assert!(drawn.contains("4 attempts, 2 failed"), "{drawn}");
        assert!(drawn.contains("height=\"20\""), "half of the busiest hour: {drawn}");
    }
}
