//! Name resolution for webhook deliveries that hands the HTTP client only vetted addresses:
//! the client connects to exactly the addresses that passed the check, so there is no window
//! for DNS rebinding between the check and the connection. (IP-literal URLs never reach a
//! resolver; [`crate::send`] checks them before sending.)

use checkout::url_safety::{self, UrlPolicy};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::SocketAddr;

/// The resolved addresses were refused.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to {address}, which is not a public address")]
pub struct Blocked {
    pub host: String,
    pub address: std::net::IpAddr,
}

pub struct VettingResolver {
    pub policy: UrlPolicy,
}

impl Resolve for VettingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = found.iter().find(|a| !url_safety::address_allowed(a.ip(), policy)) {
                let blocked = Blocked {
                    host,
                    address: bad.ip(),
                };
                return Err(Box::new(blocked) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}
