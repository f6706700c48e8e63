//! The checkout API over real HTTP, on the embedded backend and on DynamoDB (moto).

mod app;
mod bad_input;
mod concurrency;
mod deliveries;
mod discovery;
mod endpoints;
mod examples;
mod flow;
mod idempotency;
mod lambda;
mod onboarding;
mod portal;
mod portal_forms;
mod schema;
mod tenancy;
