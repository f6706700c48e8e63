use super::{event, merchant};
use crate::attempt_log::{AttemptQuery, AttemptRecord, AttemptStatus, time_bound};
use crate::clock;
use crate::event::Event;
use crate::ids::EventId;
use crate::ports::Backend;

/// A failed attempt of `event` to `target`.
pub fn attempt_record(target: &str, event: &Event, attempt: u32) -> AttemptRecord {
    AttemptRecord {
        target: target.to_owned(),
        event_id: event.id.clone(),
        attempt,
        merchant_id: event.merchant_id.clone(),
        session_id: event.session_id.clone(),
        version: event.version,
        event_type: event.kind,
        at: clock::now(),
        status: AttemptStatus::Failed,
        http_status: Some(500),
        latency_ms: 12,
        error_class: Some(crate::delivery_outcome::ErrorClass::Http),
        remote_ip: Some("203.0.113.7".parse().unwrap()),
        snippet: "oops".to_owned(),
        headers_ms: None,
        server_timing: None,
        answer_headers: String::new(),
        next_attempt_at: Some(clock::now() + chrono::Duration::seconds(5)),
        final_reason: None,
        final_code: None,
        dead_lettered: false,
        replay: false,
    }
}

pub async fn attempts_are_recorded_once_and_the_newest_is_the_state(backend: &Backend) {
    let log = &backend.deliveries;
    let e = event(&merchant(), None, 1);
    let target = format!("we_{}", e.id.as_str().trim_start_matches("evt_"));
    assert_eq!(log.latest(&target, &e.id).await.unwrap(), None);
    for n in 1..=3 {
        assert!(log.record(&attempt_record(&target, &e, n)).await.unwrap());
    }
    let mut failed_again = attempt_record(&target, &e, 2);
    failed_again.http_status = Some(503);
    assert!(
        !log.record(&failed_again).await.unwrap(),
        "a second failure of attempt 2 is refused"
    );
    let all = log.attempts_of(&target, &e.id).await.unwrap();
    assert_eq!(all.iter().map(|r| r.attempt).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(
        all.iter()
            .all(|r| r.status == AttemptStatus::Failed && r.http_status == Some(500)),
        "attempt 2 unchanged"
    );
    assert_eq!(all[0], attempt_record(&target, &e, 1).with_time_of(&all[0]));
    let latest = log.latest(&target, &e.id).await.unwrap().unwrap();
    assert_eq!(latest.attempt, 3);
    assert_eq!(log.latest("we_other", &e.id).await.unwrap(), None);
}

/// Two copies made the same attempt (one before a crash, one after): one failed, one delivered.
/// Whichever records first, the log ends up saying delivered, with no retry pending.
pub async fn a_delivered_copy_of_an_attempt_wins_over_a_failed_one(backend: &Backend) {
    let log = &backend.deliveries;
    let e = event(&merchant(), None, 1);
    let target = format!("we_{}", e.id.as_str().trim_start_matches("evt_"));
    let failed = attempt_record(&target, &e, 1);
    let mut delivered = attempt_record(&target, &e, 1);
    delivered.status = AttemptStatus::Succeeded;
    delivered.http_status = Some(200);
    delivered.next_attempt_at = None;

    assert!(log.record(&failed).await.unwrap());
    assert!(
        log.record(&delivered).await.unwrap(),
        "the delivery replaces the failure"
    );
    let latest = log.latest(&target, &e.id).await.unwrap().unwrap();
    assert!(latest.delivered() && latest.next_attempt_at.is_none(), "{latest:?}");

    assert!(
        !log.record(&failed).await.unwrap(),
        "a failure never replaces a delivery"
    );
    assert!(!log.record(&delivered).await.unwrap(), "nor does a second delivery");
    let all = log.attempts_of(&target, &e.id).await.unwrap();
    assert_eq!(all.len(), 1);
    assert!(all[0].delivered());
}

pub async fn a_targets_attempts_page_newest_first(backend: &Backend) {
    let log = &backend.deliveries;
    let m = merchant();
    let target = format!("we_{}", m.id.as_str().trim_start_matches("mer_"));
    let mut events = Vec::new();
    for _ in 0..5 {
        let e = event(&m, None, 1);
        std::thread::sleep(std::time::Duration::from_millis(2));
        log.record(&attempt_record(&target, &e, 1)).await.unwrap();
        events.push(e);
    }
    log.record(&attempt_record(&target, &events[4], 2)).await.unwrap();
    log.record(&attempt_record("we_someone_else", &events[4], 1))
        .await
        .unwrap();

    let page = |before: Option<String>, from: Option<String>, limit| AttemptQuery {
        before,
        from,
        limit,
        ..AttemptQuery::default()
    };
    let first = log.attempts(&target, &page(None, None, 3)).await.unwrap();
    let keys: Vec<_> = first.iter().map(|r| (r.event_id.clone(), r.attempt)).collect();
    assert_eq!(
        keys,
        vec![
            (events[4].id.clone(), 2),
            (events[4].id.clone(), 1),
            (events[3].id.clone(), 1)
        ]
    );
    let cursor = first.last().map(|r| r.sort_key());
    let second = log.attempts(&target, &page(cursor, None, 10)).await.unwrap();
    let ids: Vec<_> = second.iter().map(|r| r.event_id.clone()).collect();
    assert_eq!(
        ids,
        vec![events[2].id.clone(), events[1].id.clone(), events[0].id.clone()]
    );

    let window_start = time_bound(events[3].created_at);
    let window_end = time_bound(events[4].created_at);
    let window = log
        .attempts(&target, &page(Some(window_end.clone()), Some(window_start.clone()), 10))
        .await
        .unwrap();
    assert_eq!(
        window.iter().map(|r| r.event_id.clone()).collect::<Vec<_>>(),
        vec![events[3].id.clone()]
    );
    let empty = log
        .attempts(&target, &page(Some(window_start), Some(window_end), 10))
        .await
        .unwrap();
    assert!(empty.is_empty(), "an upside-down window is empty, not an error");
}

/// A target's records read oldest event first, a page after another from the last one's key
/// (how a resume walks what a pause held): the same records as newest first, in the opposite
/// order, whether a record was stored alone or with its batch's first attempts; bounded by a
/// window like the newest-first pages.
pub async fn a_targets_attempts_page_oldest_first(backend: &Backend) {
    let log = &backend.deliveries;
    let m = merchant();
    let target = format!("we_{}", m.id.as_str().trim_start_matches("mer_"));
    let events: Vec<_> = (0..7)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(2));
            event(&m, None, 1)
        })
        .collect();
    // Three first attempts stored together, three alone, and a retry of one of each.
    let together: Vec<_> = events[..3].iter().map(|e| attempt_record(&target, e, 1)).collect();
    log.record_first_attempts(&together).await.unwrap();
    for e in &events[3..6] {
        log.record(&attempt_record(&target, e, 1)).await.unwrap();
    }
    log.record(&attempt_record(&target, &events[1], 2)).await.unwrap();
    log.record(&attempt_record(&target, &events[4], 2)).await.unwrap();
    log.record(&attempt_record("we_someone_else", &events[2], 1))
        .await
        .unwrap();
    let keys = |records: &[AttemptRecord]| -> Vec<(EventId, u32)> {
        records.iter().map(|r| (r.event_id.clone(), r.attempt)).collect()
    };
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let query = AttemptQuery {
            after: after.clone(),
            limit: 3,
            oldest_first: true,
            ..AttemptQuery::default()
        };
        let page = log.attempts(&target, &query).await.unwrap();
        assert!(page.len() <= 3, "{page:?}");
        walked.extend(keys(&page));
        if page.len() < 3 {
            break;
        }
        after = page.last().map(AttemptRecord::sort_key);
    }
    let expected: Vec<(EventId, u32)> = vec![
        (events[0].id.clone(), 1),
        (events[1].id.clone(), 1),
        (events[1].id.clone(), 2),
        (events[2].id.clone(), 1),
        (events[3].id.clone(), 1),
        (events[4].id.clone(), 1),
        (events[4].id.clone(), 2),
        (events[5].id.clone(), 1),
    ];
    assert_eq!(walked, expected, "oldest first, every record once");
    let newest_first = log
        .attempts(
            &target,
            &AttemptQuery {
                limit: 100,
                ..AttemptQuery::default()
            },
        )
        .await
        .unwrap();
    let mut reversed = keys(&newest_first);
    reversed.reverse();
    assert_eq!(reversed, expected, "the same records as newest first");

    let window = AttemptQuery {
        from: Some(time_bound(events[1].created_at)),
        before: Some(time_bound(events[4].created_at)),
        limit: 100,
        oldest_first: true,
        ..AttemptQuery::default()
    };
    assert_eq!(
        keys(&log.attempts(&target, &window).await.unwrap()),
        expected[1..5].to_vec()
    );
    let after_a_retry = AttemptQuery {
        after: Some(crate::attempt_log::sort_key(&events[1].id, 2)),
        limit: 2,
        oldest_first: true,
        ..AttemptQuery::default()
    };
    assert_eq!(
        keys(&log.attempts(&target, &after_a_retry).await.unwrap()),
        expected[3..5].to_vec()
    );
}

/// First attempts stored together (a queue batch's) read back like records stored one by one:
/// by pair, as the pair's state, in a target's pages, and as "begun" for the duplicate check;
/// a copy that recorded the same attempt again reads as one record, a delivery winning.
pub async fn first_attempts_stored_together_read_like_any_other(backend: &Backend) {
    let log = &backend.deliveries;
    let m = merchant();
    let target = format!("we_{}", m.id.as_str().trim_start_matches("mer_"));
    let other = format!("{target}_other");
    let events: Vec<_> = (0..4)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(2));
            event(&m, None, 1)
        })
        .collect();
    let delivered = |target: &str, e: &Event| {
        let mut r = attempt_record(target, e, 1);
        r.status = AttemptStatus::Succeeded;
        r.http_status = Some(204);
        r.error_class = None;
        r.next_attempt_at = None;
        r
    };
    let batch = [
        delivered(&target, &events[0]),
        attempt_record(&target, &events[1], 1),
        delivered(&target, &events[2]),
        delivered(&other, &events[0]),
    ];
    // An event id that is no ULID names no second: still recorded, found and counted as begun.
    let mut operators = event(&m, None, 1);
    operators.id = EventId::parse(&format!("evt_operator_{}", m.id.as_str())).unwrap();
    let mut batch = batch.to_vec();
    batch.push(delivered(&other, &operators));
    log.record_first_attempts(&batch).await.unwrap();
    assert_eq!(
        log.started(&[(other.as_str(), &operators.id)]).await.unwrap(),
        vec![true]
    );
    assert!(log.latest(&other, &operators.id).await.unwrap().unwrap().delivered());

    let pairs = [
        (target.as_str(), &events[0].id),
        (target.as_str(), &events[1].id),
        (target.as_str(), &events[3].id),
        (other.as_str(), &events[0].id),
        (other.as_str(), &events[1].id),
    ];
    assert_eq!(log.started(&pairs).await.unwrap(), vec![true, true, false, true, false]);

    let state = log.latest(&target, &events[1].id).await.unwrap().unwrap();
    assert_eq!((state.attempt, state.status), (1, AttemptStatus::Failed));
    assert!(
        state.next_attempt_at.is_some(),
        "the retry it schedules is kept: {state:?}"
    );
    assert!(
        log.record(&delivered(&target, &events[1]).with_attempt(2))
            .await
            .unwrap()
    );
    let state = log.latest(&target, &events[1].id).await.unwrap().unwrap();
    assert_eq!((state.attempt, state.status), (2, AttemptStatus::Succeeded));

    // A copy of the first event's message made the first attempt again, and failed.
    log.record_first_attempts(&[attempt_record(&target, &events[0], 1)])
        .await
        .unwrap();
    let all = log.attempts_of(&target, &events[0].id).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(all[0].delivered() && all[0].http_status == Some(204), "{all:?}");
    assert!(log.latest(&target, &events[0].id).await.unwrap().unwrap().delivered());

    let page = |before: Option<String>, limit| AttemptQuery {
        before,
        limit,
        ..AttemptQuery::default()
    };
    let keys = |records: &[AttemptRecord]| -> Vec<(EventId, u32)> {
        records.iter().map(|r| (r.event_id.clone(), r.attempt)).collect()
    };
    let first = log.attempts(&target, &page(None, 2)).await.unwrap();
    assert_eq!(keys(&first), vec![(events[2].id.clone(), 1), (events[1].id.clone(), 2)]);
    let rest = log
        .attempts(&target, &page(first.last().map(|r| r.sort_key()), 10))
        .await
        .unwrap();
    assert_eq!(keys(&rest), vec![(events[1].id.clone(), 1), (events[0].id.clone(), 1)]);
    let window = AttemptQuery {
        before: Some(time_bound(events[2].created_at)),
        from: Some(time_bound(events[1].created_at)),
        limit: 10,
        ..AttemptQuery::default()
    };
    assert_eq!(
        keys(&log.attempts(&target, &window).await.unwrap()),
        vec![(events[1].id.clone(), 2), (events[1].id.clone(), 1)]
    );
}

impl AttemptRecord {
    fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// The same record with `other`'s time (records are built a moment apart).
    fn with_time_of(mut self, other: &AttemptRecord) -> Self {
        self.at = other.at;
        self.next_attempt_at = other.next_attempt_at;
        self
    }
}
