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

/// The name could not be resolved (no such name, or the resolver failed).
#[derive(Debug, thiserror::Error)]
#[error("{host} could not be resolved")]
pub struct NameNotResolved {
    pub host: String,
    #[source]
    pub cause: std::io::Error,
}

pub struct VettingResolver {
    pub policy: UrlPolicy,
}

impl Resolve for VettingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let looked_up = tokio::net::lookup_host((host.clone(), 0)).await;
            let found: Vec<SocketAddr> = match looked_up {
                Ok(found) => found.collect(),
                Err(cause) => {
                    return Err(Box::new(NameNotResolved { host, cause }) as Box<dyn std::error::Error + Send + Sync>);
                }
            };
            if found.is_empty() {
                let cause = std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses");
                return Err(Box::new(NameNotResolved { host, cause }));
            }
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
