//! Replays run by the replay runner, on every backend: what it queues after a crash at each point
//! of a step, and what the endpoint receives.

use crate::common::{Kind, Rig, test_config};
use checkout::attempt_log::AttemptStatus;
use checkout::clock::Clock;
use checkout::delivery_task::QueueMessage;
use checkout::event::Event;
use checkout::ids::EventId;
use checkout::ports::{DeliveryQueue, PipelineError, QueuedMessage};
use checkout::replay::{self, ReplayJob, ReplayPorts, ReplayStatus, Replayer, StepOutcome};
use checkout::testkit::{ManualClock, attempt_record, event};
use embedded_backend::{EmbeddedQueue, QueueConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(20);

struct Replays {
    steps: Arc<EmbeddedQueue>,
    replayer: Replayer,
    /// The runner's clock, moved by hand.
    clock: Arc<ManualClock>,
}

/// The replay runner, its clock starting now (so a replay started on it covers what came before).
fn replays(rig: &Rig) -> Replays {
    let steps = Arc::new(EmbeddedQueue::new(
        QueueConfig {
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: 10,
        },
        None,
    ));
    let clock = ManualClock::starting_at(checkout::clock::now());
    let replayer = Replayer::new(
        ReplayPorts {
            events: rig.backend.events.clone(),
            log: rig.backend.deliveries.clone(),
            jobs: rig.backend.replays.clone(),
            deliveries: rig.queue.clone(),
            steps: steps.clone(),
        },
        clock.clone(),
    );
    Replays { steps, replayer, clock }
}

/// `count` stored events of the rig's merchant, each with `attempts` failed attempts to the
/// rig's endpoint (the last one exhausted). Whatever the store queued of them itself (the
/// durable store is its own outbox) is taken off the queue: only the replay's tasks remain.
async fn missed(rig: &Rig, count: usize, attempts: u32) -> Vec<Event> {
    let mut events = Vec::new();
    for _ in 0..count {
        let e = event(&rig.merchant, None, 1);
        rig.backend.events.append(&e, None).await.unwrap();
        for attempt in 1..=attempts {
            let mut record = attempt_record(rig.endpoint.id.as_str(), &e, attempt);
            record.status = AttemptStatus::Failed;
            if attempt == attempts {
                record.next_attempt_at = None;
            }
            assert!(rig.backend.deliveries.record(&record).await.unwrap());
        }
        events.push(e);
    }
    take(rig.queue.as_ref()).await;
    events
}

async fn start(rig: &Rig, replays: &Replays) -> ReplayJob {
    let now = replays.clock.now();
    let job = ReplayJob::new(
        rig.merchant.id.clone(),
        rig.endpoint.id.clone(),
        now - chrono::Duration::hours(1),
        now,
        false,
        now,
    )
    .unwrap();
    replay::start(rig.backend.replays.as_ref(), replays.steps.as_ref(), job, now)
        .await
        .unwrap()
}

async fn take(queue: &dyn DeliveryQueue) -> Vec<QueuedMessage> {
    let mut all = Vec::new();
    loop {
        let batch = queue.receive(10, Duration::from_millis(50)).await.unwrap();
        if batch.is_empty() {
            return all;
        }
        for message in batch {
            queue.delete(&message.receipt).await.unwrap();
            all.push(message);
        }
    }
}

/// How many tasks the delivery queue holds per event.
async fn tasks(rig: &Rig) -> BTreeMap<EventId, usize> {
    let mut per_event = BTreeMap::new();
    for message in take(rig.queue.as_ref()).await {
        if let Ok(QueueMessage::Task { head, .. }) = QueueMessage::parse(&message.body) {
            *per_event.entry(head.id).or_default() += 1;
        }
    }
    per_event
}

/// Runs a step message to its end.
async fn run(replays: &Replays, body: &str) -> StepOutcome {
    replays.replayer.step_of_body(body).await.unwrap()
}

/// 110 events with two attempts each: a first step of 200 records, a second of 20. The runner
/// dies after storing the first step and before queueing the second (the successor is lost),
/// so the first step's message comes back: at first it is kept for later (the successor may
/// only be waiting), and once the job has made no progress for five minutes it queues the
/// successor again. Late copies of both steps change nothing. Each event is queued once.
async fn a_step_lost_or_received_again_queues_each_event_once(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    let events = missed(&rig, 110, 2).await;
    let replays = replays(&rig);
    let job = start(&rig, &replays).await;
    let read = || rig.backend.replays.replay(&job.merchant_id, &job.endpoint_id);

    let first = take(replays.steps.as_ref()).await;
    assert_eq!(first.len(), 1);
    assert_eq!(run(&replays, &first[0].body).await, StepOutcome::Finished);
    let lost = take(replays.steps.as_ref()).await;
    assert_eq!(lost.len(), 1, "the successor was queued (and is now lost)");
    let after_first = read().await.unwrap().unwrap();
    assert_eq!((after_first.events_seen, after_first.replayed), (100, 100));
    assert_eq!(after_first.status, ReplayStatus::Running);

    // The first step's message again, soon after: kept for later, nothing queued.
    assert_eq!(run(&replays, &first[0].body).await, StepOutcome::LookAgainLater);
    assert!(take(replays.steps.as_ref()).await.is_empty());
    // Five minutes without progress: the successor is taken for lost and queued again.
    replays.clock.advance(Duration::from_secs(5 * 60));
    assert_eq!(run(&replays, &first[0].body).await, StepOutcome::Finished);
    let second = take(replays.steps.as_ref()).await;
    assert_eq!(second.len(), 1, "the successor, queued again");
    assert_eq!(run(&replays, &second[0].body).await, StepOutcome::Finished);
    assert!(
        take(replays.steps.as_ref()).await.is_empty(),
        "the last step queues no successor"
    );

    // Late copies of both steps change nothing.
    for late in [&first[0].body, &lost[0].body] {
        assert_eq!(run(&replays, late).await, StepOutcome::Finished);
    }
    assert!(take(replays.steps.as_ref()).await.is_empty());

    let done = read().await.unwrap().unwrap();
    assert_eq!(done.status, ReplayStatus::Completed);
    assert_eq!((done.events_seen, done.replayed, done.set_aside), (110, 110, 0));
    let queued = tasks(&rig).await;
    assert_eq!(queued.len(), 110);
    assert!(queued.values().all(|n| *n == 1), "each event once: {queued:?}");
    assert!(events.iter().all(|e| queued.contains_key(&e.id)));
}

/// An event the endpoint received at some attempt is not sent again by a replay of what it
/// missed, even when its newest record says otherwise (a later replay was skipped while the
/// endpoint was disabled).
async fn an_event_received_at_any_attempt_is_not_replayed(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    let events = missed(&rig, 2, 1).await;
    let mut delivered = attempt_record(rig.endpoint.id.as_str(), &events[0], 2);
    delivered.status = AttemptStatus::Succeeded;
    delivered.next_attempt_at = None;
    rig.backend.deliveries.record(&delivered).await.unwrap();
    let mut skipped = attempt_record(rig.endpoint.id.as_str(), &events[0], 3);
    skipped.status = AttemptStatus::Skipped;
    skipped.next_attempt_at = None;
    rig.backend.deliveries.record(&skipped).await.unwrap();
    let replays = replays(&rig);
    start(&rig, &replays).await;
    for message in take(replays.steps.as_ref()).await {
        run(&replays, &message.body).await;
    }
    let queued = tasks(&rig).await;
    assert_eq!(
        queued.keys().collect::<Vec<_>>(),
        vec![&events[1].id],
        "only the one never received"
    );
}

/// The preview counts what the replay then queues: the events never received, each once
/// however many attempts it has; with `include_delivered`, every event; cut at the records it
/// may read, it says so.
async fn a_preview_counts_what_the_replay_sends(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    let events = missed(&rig, 5, 3).await;
    let mut delivered = attempt_record(rig.endpoint.id.as_str(), &events[2], 4);
    delivered.status = AttemptStatus::Succeeded;
    delivered.next_attempt_at = None;
    rig.backend.deliveries.record(&delivered).await.unwrap();
    assert_eq!(missed(&rig, 30, 4).await.len(), 30);
    // A test event failed too: never stored, so neither counted nor sent.
    let mut test = event(&rig.merchant, None, 1);
    test.kind = checkout::event::EventType::Test;
    let mut record = attempt_record(rig.endpoint.id.as_str(), &test, 1);
    record.status = AttemptStatus::Failed;
    record.next_attempt_at = None;
    rig.backend.deliveries.record(&record).await.unwrap();
    let replays = replays(&rig);
    let now = replays.clock.now();
    let since = now - chrono::Duration::hours(1);
    let log = rig.backend.deliveries.as_ref();
    let endpoint = rig.endpoint.id.as_str();
    let preview = replay::preview(log, endpoint, since, now, false, 1_000).await.unwrap();
    assert_eq!(
        preview,
        replay::Preview {
            events: 36,
            to_send: 34,
            complete: true
        }
    );
    let all = replay::preview(log, endpoint, since, now, true, 1_000).await.unwrap();
    assert_eq!((all.events, all.to_send), (36, 35));
    let before = replay::preview(log, endpoint, now - chrono::Duration::hours(3), since, false, 1_000)
        .await
        .unwrap();
    assert_eq!((before.events, before.complete), (0, true), "nothing before the window");
    // 136 records, room to read one page of 100 of them.
    let cut = replay::preview(log, endpoint, since, now, false, 100).await.unwrap();
    assert!(!cut.complete, "{cut:?}");
    assert!(cut.events < 36, "{cut:?}");
    start(&rig, &replays).await;
    for message in take(replays.steps.as_ref()).await {
        run(&replays, &message.body).await;
    }
    assert_eq!(
        tasks(&rig).await.len(),
        34,
        "the replay queued what the preview counted"
    );
}

/// A queue that is down.
struct DownQueue;

#[async_trait::async_trait]
impl DeliveryQueue for DownQueue {
    async fn send(&self, _body: &str, _delay: Duration) -> Result<(), PipelineError> {
        Err(PipelineError::invalid("down"))
    }
    async fn receive(&self, _max: usize, _wait: Duration) -> Result<Vec<QueuedMessage>, PipelineError> {
        Ok(Vec::new())
    }
    async fn delete(&self, _receipt: &str) -> Result<(), PipelineError> {
        Ok(())
    }
    async fn set_visibility(&self, _receipt: &str, _timeout: Duration) -> Result<(), PipelineError> {
        Ok(())
    }
}

/// A replay whose first step cannot be queued is marked failed (it would never run), so the
/// merchant's retry starts another at once instead of meeting a 409 for ten minutes.
async fn a_replay_that_cannot_start_does_not_block_the_next(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    missed(&rig, 1, 1).await;
    let replays = replays(&rig);
    let now = replays.clock.now();
    let job = |at| {
        ReplayJob::new(
            rig.merchant.id.clone(),
            rig.endpoint.id.clone(),
            at - chrono::Duration::hours(1),
            at,
            false,
            at,
        )
        .unwrap()
    };
    let jobs = rig.backend.replays.as_ref();
    assert!(replay::start(jobs, &DownQueue, job(now), now).await.is_err());
    let stored = jobs.replay(&rig.merchant.id, &rig.endpoint.id).await.unwrap().unwrap();
    assert_eq!(stored.status, ReplayStatus::Failed);
    replay::start(jobs, replays.steps.as_ref(), job(now), now)
        .await
        .unwrap();
}

/// What a replay queues reaches the endpoint through the dispatcher: each missed event once,
/// with its own `webhook-id` and the attempt number after the ones made.
async fn a_replay_reaches_the_endpoint(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    let events = missed(&rig, 5, 1).await;
    let replays = replays(&rig);
    start(&rig, &replays).await;
    for message in take(replays.steps.as_ref()).await {
        run(&replays, &message.body).await;
    }
    rig.run_until(PATIENCE, "the replayed events", |r| r.receiver.seen().len() == 5)
        .await;
    rig.run_for(Duration::from_millis(300)).await;
    let seen = rig.receiver.seen();
    assert_eq!(seen.len(), 5, "each once");
    let mut ids: Vec<String> = seen.iter().map(|s| s.header("webhook-id")).collect();
    ids.sort();
    let mut expected: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    expected.sort();
    assert_eq!(ids, expected);
    assert!(seen.iter().all(|s| s.header("webhook-attempt") == "2"));
    assert!(seen.iter().all(|s| s.verifies_with(&rig.secret())));
}

/// The order the delivery queue holds its tasks in, by event.
async fn task_order(rig: &Rig) -> Vec<(EventId, u32)> {
    let mut order = Vec::new();
    for message in take(rig.queue.as_ref()).await {
        if let Ok(QueueMessage::Task { head, message }) = QueueMessage::parse(&message.body) {
            order.push((head.id, message.delivery.first_attempt));
        }
    }
    order
}

/// A resume queues what its pause held, oldest event first, across steps: 207 held deliveries
/// among delivered and failed ones (one held delivery went on after its hold: the dispatcher's,
/// not the resume's; one event's hold is older than the window). Each is queued once, with the
/// attempt after its hold.
async fn a_resume_queues_what_the_pause_held_oldest_first(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    let target = rig.endpoint.id.as_str().to_owned();
    let record = |e: &Event, attempt: u32, status: AttemptStatus| {
        let mut r = attempt_record(&target, e, attempt);
        r.status = status;
        r.next_attempt_at = None;
        r
    };
    let before_window = event(&rig.merchant, None, 1);
    rig.backend.events.append(&before_window, None).await.unwrap();
    rig.backend
        .deliveries
        .record(&record(&before_window, 1, AttemptStatus::Paused))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let since = checkout::clock::now();
    let mut held = Vec::new();
    let mut went_on = None;
    for i in 0..260 {
        let e = event(&rig.merchant, None, 1);
        rig.backend.events.append(&e, None).await.unwrap();
        let log = rig.backend.deliveries.as_ref();
        match i % 10 {
            0 => assert!(log.record(&record(&e, 1, AttemptStatus::Succeeded)).await.unwrap()),
            5 => assert!(log.record(&record(&e, 1, AttemptStatus::Failed)).await.unwrap()),
            _ => {
                // The first attempt failed before the pause; the retry was held.
                assert!(log.record(&record(&e, 1, AttemptStatus::Failed)).await.unwrap());
                assert!(log.record(&record(&e, 2, AttemptStatus::Paused)).await.unwrap());
                if went_on.is_none() {
                    assert!(log.record(&record(&e, 3, AttemptStatus::Failed)).await.unwrap());
                    went_on = Some(e.id.clone());
                    continue;
                }
                held.push(e.id.clone());
            }
        }
    }
    take(rig.queue.as_ref()).await;
    let replays = replays(&rig);
    let now = replays.clock.now();
    let job = ReplayJob::resume(rig.merchant.id.clone(), rig.endpoint.id.clone(), since, now);
    replay::start(rig.backend.replays.as_ref(), replays.steps.as_ref(), job.clone(), now)
        .await
        .unwrap();
    let mut steps = 0;
    loop {
        let messages = take(replays.steps.as_ref()).await;
        if messages.is_empty() {
            break;
        }
        for message in messages {
            steps += 1;
            assert_eq!(run(&replays, &message.body).await, StepOutcome::Finished);
        }
    }
    assert!(steps > 1, "the window takes several steps");
    let done = rig
        .backend
        .replays
        .replay(&rig.merchant.id, &rig.endpoint.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, ReplayStatus::Completed);
    assert_eq!(done.replayed, held.len() as u64);
    let queued = task_order(&rig).await;
    // Event order is the order of event ids (ULIDs: time, then random within a millisecond).
    held.sort();
    let expected: Vec<(EventId, u32)> = held.iter().map(|id| (id.clone(), 3)).collect();
    assert!(
        queued == expected,
        "each held delivery once, in event order, as its third attempt"
    );
}

on_every_backend!(
    a_resume_queues_what_the_pause_held_oldest_first,
    a_step_lost_or_received_again_queues_each_event_once,
    an_event_received_at_any_attempt_is_not_replayed,
    a_replay_that_cannot_start_does_not_block_the_next,
    a_replay_reaches_the_endpoint,
    a_preview_counts_what_the_replay_sends,
);
