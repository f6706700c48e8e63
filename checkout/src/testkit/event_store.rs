use super::{event, merchant};
use crate::ports::{Backend, StoreError};
use std::collections::BTreeSet;

pub async fn append_then_read_back(backend: &Backend) {
    let m = merchant();
    let first = event(&m, None, 1);
    let sid = first.session_id.clone();
    backend.events.append(&first, None).await.unwrap();
    let second = event(&m, Some(&sid), 2);
    backend.events.append(&second, None).await.unwrap();

    let latest = backend.events.latest(&sid).await.unwrap().expect("latest event");
    assert_eq!(latest, second, "latest returns the newest event, intact");
    let history = backend.events.history(&sid).await.unwrap();
    assert_eq!(history, vec![first, second]);
}

/// One version of a session by its number, intact; a version or a session never written is
/// `None`.
pub async fn an_event_is_read_by_its_version(backend: &Backend) {
    let m = merchant();
    let first = event(&m, None, 1);
    let sid = first.session_id.clone();
    backend.events.append(&first, None).await.unwrap();
    let second = event(&m, Some(&sid), 2);
    backend.events.append(&second, None).await.unwrap();
    assert_eq!(backend.events.event_at(&sid, 1).await.unwrap(), Some(first));
    assert_eq!(backend.events.event_at(&sid, 2).await.unwrap(), Some(second));
    assert_eq!(backend.events.event_at(&sid, 3).await.unwrap(), None);
    assert_eq!(backend.events.event_at(&sid, 0).await.unwrap(), None);
    let other = crate::ids::SessionId::generate();
    assert_eq!(backend.events.event_at(&other, 1).await.unwrap(), None);
}

pub async fn duplicate_version_is_a_conflict_and_changes_nothing(backend: &Backend) {
    let m = merchant();
    let first = event(&m, None, 1);
    let sid = first.session_id.clone();
    backend.events.append(&first, None).await.unwrap();
    let rival = event(&m, Some(&sid), 1);
    let err = backend.events.append(&rival, None).await.unwrap_err();
    assert!(matches!(err, StoreError::VersionConflict { version: 1, .. }), "{err:?}");
    assert_eq!(backend.events.latest(&sid).await.unwrap().unwrap().id, first.id);
    assert_eq!(backend.events.history(&sid).await.unwrap().len(), 1);
}

pub async fn unknown_session_has_no_events(backend: &Backend) {
    let sid = crate::ids::SessionId::generate();
    assert!(backend.events.latest(&sid).await.unwrap().is_none());
    assert!(backend.events.history(&sid).await.unwrap().is_empty());
}

/// 50 writers append to one session at once, each retrying on conflict: every write lands,
/// versions are 1..=51 with no gap, and no write replaced another.
pub async fn fifty_racing_writers_lose_nothing(backend: &Backend) {
    let m = merchant();
    let first = event(&m, None, 1);
    let sid = first.session_id.clone();
    backend.events.append(&first, None).await.unwrap();

    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (backend, m, sid) = (backend.clone(), m.clone(), sid.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let latest = backend.events.latest(&sid).await.unwrap().unwrap();
                let next = event(&m, Some(&sid), latest.version + 1);
                match backend.events.append(&next, None).await {
                    Ok(()) => return next.id,
                    Err(StoreError::VersionConflict { .. }) => tokio::task::yield_now().await,
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
        }));
    }
    let mut written = BTreeSet::new();
    for task in tasks {
        written.insert(task.await.unwrap());
    }
    let history = backend.events.history(&sid).await.unwrap();
    let versions: Vec<u64> = history.iter().map(|e| e.version).collect();
    assert_eq!(versions, (1..=51).collect::<Vec<_>>());
    let stored: BTreeSet<_> = history.iter().skip(1).map(|e| e.id.clone()).collect();
    assert_eq!(stored, written, "every acknowledged write is stored");
}
