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
