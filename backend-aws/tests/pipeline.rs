//! The topic and queue contract suite on SNS → SQS (raw delivery, redrive policy) on moto.

checkout::pipeline_contract_tests!(async { aws_backend::testkit::fresh_pipeline().await.0 });
