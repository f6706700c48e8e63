//! The one HTTP client every delivery shares: pooled keep-alive connections (HTTP/2 when the
//! receiver offers it), rustls, connect timeout 5 s, total 15 s, redirects never followed, and
//! name resolution through [`VettingResolver`].

use crate::pinned_dns::VettingResolver;
use checkout::url_safety::UrlPolicy;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct ClientSettings {
    pub connect_timeout: Duration,
    pub total_timeout: Duration,
    pub policy: UrlPolicy,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(15),
            policy: UrlPolicy::default(),
        }
    }
}

pub fn build(settings: ClientSettings) -> reqwest::Result<reqwest::Client> {
    // The same crypto as the AWS SDK's TLS (aws-lc-rs), so the bootstrap carries one library,
    // not two. Already installed (by an earlier client, or a test) is fine.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(settings.connect_timeout)
        .timeout(settings.total_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .user_agent(concat!("acp-checkout-manager-webhooks/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(VettingResolver {
            policy: settings.policy,
        }))
        .build()
}
