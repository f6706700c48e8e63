//! Host name resolution through the operating system.

use async_trait::async_trait;
use checkout::ports::{PipelineError, Resolver};
use std::net::IpAddr;

pub struct SystemResolver;

#[async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<IpAddr>, PipelineError> {
        let addresses = tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| PipelineError::NotFound {
                what: format!("host {host}"),
            })?;
        Ok(addresses.map(|a| a.ip()).collect())
    }
}
