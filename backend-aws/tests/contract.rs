//! The shared contract suites, run against DynamoDB on the moto server that `scripts/test`
//! starts. Each test gets its own tables.

checkout::backend_contract_tests!(aws_backend::testkit::fresh_backend());
