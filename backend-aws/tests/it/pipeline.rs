//! The topic and queue contract suite on SNS → SQS (raw delivery, redrive policy) on moto.

checkout::pipeline_contract_tests!(async { aws_backend::testkit::fresh_pipeline().await.0 });

/// SQS refuses a message visibility past 12 h from its receive (moto accepts it): the adapter
/// refuses it too, so a caller asking for one fails here and not only on AWS.
#[tokio::test]
async fn a_visibility_over_twelve_hours_is_refused_as_sqs_would() {
    use std::time::Duration;
    let (pipeline, _) = aws_backend::testkit::fresh_pipeline().await;
    pipeline.queue.send("m", Duration::ZERO).await.unwrap();
    let got = pipeline.queue.receive(1, Duration::from_secs(2)).await.unwrap();
    let receipt = &got[0].receipt;
    let err = pipeline
        .queue
        .set_visibility(receipt, Duration::from_secs(12 * 3600 + 1))
        .await
        .unwrap_err();
    assert!(err.0.contains("12") || err.0.contains("43200"), "{err}");
    pipeline
        .queue
        .set_visibility(receipt, dispatcher_cap())
        .await
        .expect("the dispatcher's longest wait is accepted");
}

/// The longest visibility the dispatcher asks for.
fn dispatcher_cap() -> std::time::Duration {
    std::time::Duration::from_secs(11 * 3600)
}
