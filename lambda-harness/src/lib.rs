//! The four Lambda bootstraps (`session-manager`, `event-projector`, `webhook-dispatcher`,
//! `replay-runner`) run the way AWS runs them, against moto: each behind its own Lambda runtime
//! API, the checkout API behind an API Gateway HTTP API front (payload format 2.0, the
//! template's stage), the projector fed by a DynamoDB stream mapping, the dispatcher and the
//! replay runner by their SQS mappings — every setting read from `infra/template.yaml`.

pub mod api_gateway;
pub mod bill;
pub mod deployment;
pub mod iam;
pub mod meter;
pub mod runtime_api;
pub mod sqs_source;
pub mod stream_source;
pub mod template;

pub use deployment::{Deployment, Options};
