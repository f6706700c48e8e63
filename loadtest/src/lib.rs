//! The load test: many concurrent buyers run whole checkout flows (create → update → complete,
//! a share cancelled instead) against an ACP endpoint, and every API call is timed.

mod flow;
mod report;

pub use flow::{FlowConfig, run};
pub use report::{OperationStats, Report};
