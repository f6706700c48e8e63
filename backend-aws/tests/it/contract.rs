//! The shared contract suites, run against DynamoDB on the moto server that `scripts/test`
//! starts. Each test gets its own tables.

checkout::backend_contract_tests!(aws_backend::testkit::fresh_backend());

/// DynamoDB refuses an item over 400 KB for good: that is a [`StoreError::Refused`], never the
/// "unavailable, retry later" of a transient failure.
#[tokio::test]
async fn an_item_over_the_size_limit_is_refused_for_good() {
    use checkout::ports::StoreError;
    let backend = aws_backend::testkit::fresh_backend().await;
    let mut merchant = checkout::testkit::merchant();
    let template = merchant.catalog.items[0].clone();
    for i in 0..2_000 {
        let mut item = template.clone();
        item.id = format!("item_{i}");
        item.name = format!("{i}: {}", "a long product name ".repeat(10));
        merchant.catalog.items.push(item);
    }
    let err = backend.merchants.put_merchant(&merchant).await.unwrap_err();
    assert!(matches!(err, StoreError::Refused(_)), "{err:?}");
    assert!(backend.merchants.merchant(&merchant.id).await.unwrap().is_none());
}

/// Items written before the event codec (the envelope as a JSON string, with the attributes
/// that used to sit beside it) are still read, and a session stored that way goes on: the next
/// event is appended in the new shape on top of it.
#[tokio::test]
async fn events_stored_in_the_old_item_shape_are_read() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use checkout::testkit::{event, merchant};
    let (client, tables) = aws_backend::testkit::fresh_tables().await;
    let m = merchant();
    let old = event(&m, None, 1);
    let s = |v: &str| AttributeValue::S(v.to_owned());
    client
        .put_item()
        .table_name(&tables.sessions)
        .item("session_id", s(old.session_id.as_str()))
        .item("version", AttributeValue::N("1".to_owned()))
        .item("event_id", s(old.id.as_str()))
        .item("event_type", s(old.kind.as_str()))
        .item("merchant_id", s(old.merchant_id.as_str()))
        .item("event", s(&serde_json::to_string(&old).unwrap()))
        .send()
        .await
        .unwrap();
    let store = aws_backend::DynamoStore::new(client.clone(), tables.clone());
    let events: &dyn checkout::ports::EventStore = &store;
    assert_eq!(events.latest(&old.session_id).await.unwrap(), Some(old.clone()));
    let next = event(&m, Some(&old.session_id), 2);
    events.append(&next, None).await.unwrap();
    assert_eq!(events.history(&old.session_id).await.unwrap(), vec![old, next.clone()]);
    let stored = client
        .get_item()
        .table_name(&tables.sessions)
        .key("session_id", s(next.session_id.as_str()))
        .key("version", AttributeValue::N("2".to_owned()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(stored["event"].is_b(), "new events are stored compressed");
}

/// A call still holding its claim, but too close to the lease's end to commit safely (a write
/// might land after a retry took the key over), stores nothing and says so — `OutOfTime`, which
/// the service answers with a retryable 503 and a released key — rather than `ClaimLost`, which
/// answered "another request is processing this key" to the request that held it.
/// Found by fifty racing updates of one session on a slow moto, where the last took over 20 s.
#[tokio::test]
async fn a_call_out_of_time_commits_nothing_and_can_be_retried_at_once() {
    use checkout::idempotency::{Claim, LEASE};
    use checkout::ports::StoreError;
    use checkout::testkit::{acquire_for, created, event, key, merchant};
    let backend = aws_backend::testkit::fresh_backend().await;
    let m = merchant();
    let k = key(&m);
    let e = event(&m, None, 1);
    let claimed_at = checkout::clock::now() - LEASE + chrono::Duration::seconds(5);
    let hold = acquire_for(&backend, &k, "fp", &e.session_id, claimed_at).await;
    let err = backend
        .events
        .append(&e, Some(&created(&k, &hold, &e)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::OutOfTime), "{err:?}");
    assert!(backend.events.latest(&e.session_id).await.unwrap().is_none());
    backend.idempotency.release(&k, &hold.token).await.unwrap();
    let retry = backend
        .idempotency
        .claim_for(&k, "fp", &e.session_id, checkout::clock::now())
        .await
        .unwrap();
    assert!(matches!(retry, Claim::Acquired { .. }), "{retry:?}");
}

/// A batch's first attempts at DynamoDB's limits: 30 endpoints (more items than one
/// `BatchWriteItem` takes), and one endpoint with 40 first attempts (more than a group holds)
/// whose receiver answered with the largest snippet (4 KiB of control bytes, 24 KiB as JSON
/// each). Everything is stored and reads back: begun, by event, and in the endpoint's pages.
/// (moto takes a `BatchWriteItem` of any size; the test client refuses more than 25 items, as
/// DynamoDB does — see `testkit::DynamoLimits`.)
#[tokio::test]
async fn first_attempts_at_dynamodbs_limits_are_stored_and_read_back() {
    use checkout::attempt_log::AttemptQuery;
    use checkout::testkit::{attempt_record, event, merchant};
    let backend = aws_backend::testkit::fresh_backend().await;
    let m = merchant();
    let events: Vec<_> = (0..40).map(|_| event(&m, None, 1)).collect();
    let mut records: Vec<_> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut r = attempt_record("we_busy", e, 1);
            r.snippet = (0..4096).map(|j| char::from(1 + ((i + j) % 31) as u8)).collect();
            r
        })
        .collect();
    records.extend((0..30).map(|i| attempt_record(&format!("we_{i}"), &events[0], 1)));
    backend.deliveries.record_first_attempts(&records).await.unwrap();

    let pairs: Vec<_> = records.iter().map(|r| (r.target.as_str(), &r.event_id)).collect();
    assert!(backend.deliveries.started(&pairs).await.unwrap().into_iter().all(|b| b));
    for (e, sent) in events.iter().zip(&records) {
        let read = backend.deliveries.attempts_of("we_busy", &e.id).await.unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].snippet, sent.snippet);
    }
    let query = AttemptQuery {
        limit: 100,
        ..AttemptQuery::default()
    };
    let page = backend.deliveries.attempts("we_busy", &query).await.unwrap();
    // Newest first by sort key (ids made in one millisecond sort by their random part).
    let mut ids: Vec<_> = events.iter().map(|e| e.id.clone()).collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(page.into_iter().map(|r| r.event_id).collect::<Vec<_>>(), ids);
}

/// The registry partition itself stays bounded, not only what a read returns (a read filters
/// ended keys, which would otherwise pile up until DynamoDB's TTL sweep, days later): a review
/// found every rotation left its ended key's item behind.
#[tokio::test]
async fn ended_keys_leave_the_registry_partition() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use checkout::webhook_endpoint::{MAX_IN_GRACE, SignatureScheme, WebhookEndpoint};
    let (client, tables) = aws_backend::testkit::fresh_tables().await;
    let store = aws_backend::DynamoStore::new(client.clone(), tables.clone());
    use checkout::ports::EndpointStore;
    let m = checkout::testkit::merchant();
    let start = checkout::clock::now();
    let mut e = WebhookEndpoint::new(m.id.clone(), "https://hooks.example.com/loop".into(), start).unwrap();
    e.set_signature_scheme(SignatureScheme::Ed25519, start).unwrap();
    store.put_endpoint(&e).await.unwrap();
    for i in 0..20 {
        let at = start + chrono::Duration::milliseconds(10 * (i + 1));
        let mut fresh = store.endpoint(&m.id, &e.id).await.unwrap().unwrap();
        fresh.rotate(at, chrono::Duration::zero()).unwrap();
        store.put_endpoint(&fresh).await.unwrap();
    }
    let mut fresh = store.endpoint(&m.id, &e.id).await.unwrap().unwrap();
    fresh
        .set_signature_scheme(SignatureScheme::Hmac, checkout::clock::now())
        .unwrap();
    store.put_endpoint(&fresh).await.unwrap();
    let mut fresh = store.endpoint(&m.id, &e.id).await.unwrap().unwrap();
    fresh
        .rotate(
            checkout::clock::now() + chrono::Duration::seconds(1),
            chrono::Duration::zero(),
        )
        .unwrap();
    store.put_endpoint(&fresh).await.unwrap();
    let items = client
        .query()
        .table_name(&tables.merchants)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S("webhook-keys".into()))
        .send()
        .await
        .unwrap()
        .count;
    assert!(
        items <= 2 + MAX_IN_GRACE as i32,
        "{items} registry items for one endpoint"
    );
    assert!(store.endpoints(&m.id).await.unwrap()[0].signing_keys.is_empty());
    assert_eq!(
        items, 0,
        "an hmac endpoint whose keys ended publishes nothing, stored or not"
    );
}
