//! The local crate's integration tests, in one binary.

mod e2e_script;
mod pipeline;
mod portal_browser;
mod restart;
mod stack;
mod verifiers;
mod webdriver;
