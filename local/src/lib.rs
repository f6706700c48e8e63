//! The whole checkout system in one process: the composition root that `acp-local`, the
//! tests and the load test share. [`Stack::start`] picks the adapters from the configuration,
//! seeds the demo merchant and serves the API until [`Stack::shutdown`].

pub mod config;

use anyhow::Context;
use aws_backend::{DynamoStore, TableNames};
use checkout::ids::MerchantId;
use checkout::merchant::{Merchant, generate_api_key};
use checkout::payment::TestPaymentProcessor;
use checkout::ports::Backend;
use config::{BackendKind, Config};
use embedded_backend::EmbeddedStore;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::info;

/// The demo merchant's id; its catalog is [`checkout::catalog::Catalog::demo`].
pub const DEMO_MERCHANT_ID: &str = "mer_demo";

pub struct Stack {
    pub addr: SocketAddr,
    pub demo_api_key: String,
    pub backend: Backend,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

async fn backend(config: &Config) -> anyhow::Result<Backend> {
    Ok(match config.backend {
        BackendKind::Embedded => EmbeddedStore::backend(),
        BackendKind::Aws => {
            let sdk = aws_backend::sdk_config().await;
            let tables = TableNames::for_environment(&config.environment);
            if config.create_resources {
                aws_backend::create_tables(&aws_backend::DynamoClient::new(&sdk), &tables)
                    .await
                    .context("creating the DynamoDB tables")?;
            }
            Backend::from_one(Arc::new(DynamoStore::from_sdk_config(&sdk, tables)))
        }
    })
}

impl Stack {
    pub async fn start(config: &Config) -> anyhow::Result<Stack> {
        let backend = backend(config).await?;
        let demo_api_key = match &config.demo_api_key {
            Some(key) => key.clone(),
            None => generate_api_key().context("generating the demo API key")?,
        };
        let merchant_id = MerchantId::parse(DEMO_MERCHANT_ID).context("demo merchant id")?;
        backend
            .merchants
            .put_merchant(&Merchant::demo(merchant_id, &demo_api_key))
            .await
            .context("storing the demo merchant")?;

        let state = api::AppState::new(backend.clone(), Arc::new(TestPaymentProcessor::new()));
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, api::router(state))
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        info!(%addr, backend = ?config.backend, "checkout API listening");
        Ok(Stack {
            addr,
            demo_api_key,
            backend,
            stop,
            server,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops taking requests, lets the ones in flight finish, and returns.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.server.await.context("server task")??;
        Ok(())
    }
}
