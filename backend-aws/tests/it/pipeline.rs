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
    assert!(
        matches!(&err, checkout::ports::PipelineError::Invalid { reason } if reason.contains("43200")),
        "{err}"
    );
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

/// Failures are told apart by what the service answered, not by their wording: a receipt SQS
/// does not know is invalid (retrying cannot help), a queue that does not exist is not found.
#[tokio::test]
async fn service_errors_are_classified_by_their_codes() {
    use checkout::ports::{DeliveryQueue, PipelineError};
    use std::time::Duration;
    let (pipeline, resources) = aws_backend::testkit::fresh_pipeline().await;
    let err = pipeline
        .queue
        .set_visibility("not-a-receipt", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, PipelineError::Invalid { .. }), "{err:?}");
    assert!(!err.is_retryable());

    let sdk = aws_backend::local_sdk_config(&aws_backend::testkit::endpoint());
    let gone = format!("{}-gone", resources.queue_url);
    let missing = aws_backend::SqsQueue::new(aws_backend::SqsClient::new(&sdk), gone);
    let err = missing.send("m", Duration::ZERO).await.unwrap_err();
    assert!(matches!(err, PipelineError::NotFound { .. }), "{err:?}");
}
