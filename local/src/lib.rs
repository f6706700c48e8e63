//! The whole checkout system in one process: the composition root that `acp-local`, the
//! tests and the load test share. [`Stack::start`] picks the adapters from the configuration,
//! seeds the demo merchant and serves the API until [`Stack::shutdown`].

pub mod adapters;
pub mod config;
mod projection;
mod purge;
pub mod server;

use anyhow::Context;
use checkout::ids::MerchantId;
use checkout::merchant::{Merchant, generate_api_key};
use checkout::payment::TestPaymentProcessor;
use checkout::ports::{Backend, DeliveryQueue};
use checkout::replay::{ReplayPorts, Replayer};
use checkout::url_safety::UrlPolicy;
use config::Config;
use dispatcher::{Dispatcher, DispatcherConfig, Lane};
use projector::Projector;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::info;

/// The demo merchant's id; its catalog is [`checkout::catalog::Catalog::demo`].
pub const DEMO_MERCHANT_ID: &str = "mer_demo";

pub struct Stack {
    pub addr: SocketAddr,
    pub demo_api_key: String,
    pub backend: Backend,
    /// The order-updates queue every event lands on, and its dead-letter queue.
    pub queue: Arc<dyn DeliveryQueue>,
    /// Where deliveries to failing or slow endpoints wait (the dispatcher's slow lane).
    pub slow_queue: Arc<dyn DeliveryQueue>,
    pub dead_letters: Arc<dyn DeliveryQueue>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
    stop_projection: watch::Sender<bool>,
    projection: JoinHandle<()>,
    purge: JoinHandle<()>,
    stop_dispatcher: watch::Sender<bool>,
    dispatcher: JoinHandle<()>,
}

impl Stack {
    pub async fn start(config: &Config) -> anyhow::Result<Stack> {
        let adapters = adapters::build(config).await?;
        let backend = adapters.backend.clone();
        let demo_api_key = match &config.demo_api_key {
            Some(key) => key.clone(),
            None => generate_api_key().context("generating the demo API key")?,
        };
        seed_demo_merchant(&backend, &demo_api_key).await?;

        let policy = UrlPolicy {
            allow_loopback: config.allow_loopback_webhooks,
        };
        let (stop_dispatcher, dispatcher) = start_dispatcher(config, &backend, &adapters, policy)?;

        let projector = Projector::new(adapters.publisher.clone());
        let (stop_projection, projection_stopped) = watch::channel(false);
        let purge = match adapters.purge.clone() {
            Some(store) => tokio::spawn(purge::run(store, projection_stopped.clone())),
            None => tokio::spawn(async {}),
        };
        let projection = tokio::spawn(projection::run(projector, adapters.source, projection_stopped));
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        let state = api::AppState::new(backend.clone(), Arc::new(TestPaymentProcessor::new()))
            .with_url_policy(policy)
            .with_replay_steps(adapters.replay_steps.clone())
            .with_deliveries(adapters.queue.clone())
            .with_public_base_url(format!("http://{addr}"));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            server::serve(listener, api::router(state), async {
                let _ = stopped.await;
            })
            .await
        });
        info!(%addr, backend = ?config.backend, "checkout API listening");
        Ok(Stack {
            addr,
            demo_api_key,
            backend,
            queue: adapters.queue,
            slow_queue: adapters.slow_queue,
            dead_letters: adapters.dead_letters,
            stop,
            server,
            stop_projection,
            projection,
            purge,
            stop_dispatcher,
            dispatcher,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops taking requests, lets the ones in flight finish, projects every committed event,
    /// finishes the deliveries in hand, and returns. What is still queued is delivered after
    /// the next start (durable backend) or by another dispatcher (AWS).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.server.await.context("server task")??;
        let _ = self.stop_projection.send(true);
        self.projection.await.context("projection task")?;
        self.purge.await.context("purge task")?;
        let _ = self.stop_dispatcher.send(true);
        self.dispatcher.await.context("dispatcher task")?;
        Ok(())
    }
}

/// Stores the demo merchant, or on a store that has it, only gives it the key of this start:
/// what the merchant configured since (its order webhook, …) stays.
async fn seed_demo_merchant(backend: &Backend, api_key: &str) -> anyhow::Result<()> {
    let id = MerchantId::parse(DEMO_MERCHANT_ID).context("demo merchant id")?;
    let existing = backend
        .merchants
        .merchant(&id)
        .await
        .context("reading the demo merchant")?;
    let merchant = match existing {
        Some(mut merchant) => {
            merchant.api_key_hash = checkout::merchant::hash_api_key(api_key);
            merchant
        }
        None => Merchant::demo(id, api_key),
    };
    backend
        .merchants
        .put_merchant(&merchant)
        .await
        .context("storing the demo merchant")
}

/// The webhook dispatcher on the order-updates queue and the slow lane, unless
/// `--dispatcher-pollers 0`.
fn start_dispatcher(
    config: &Config,
    backend: &Backend,
    adapters: &adapters::Adapters,
    policy: UrlPolicy,
) -> anyhow::Result<(watch::Sender<bool>, JoinHandle<()>)> {
    let (stop, stopped) = watch::channel(false);
    if config.dispatcher_pollers == 0 {
        return Ok((stop, tokio::spawn(async {})));
    }
    let mut settings = DispatcherConfig::from_env().context("dispatcher settings")?;
    settings.client.policy = policy;
    if let Some(limit) = config.merchant_rate_limit {
        settings.merchant_rate_limit = limit;
    }
    if let Some(schedule) = &config.retry_schedule {
        settings.max_attempts = schedule.max_attempts();
        settings.retry_schedule = schedule.clone();
    }
    if let Some(floor) = config.retry_backoff_floor {
        settings.retry_schedule = settings
            .retry_schedule
            .with_backoff_floor(floor)
            .context("--retry-backoff-floor")?;
    }
    let (queue, slow_queue) = (adapters.queue.clone(), adapters.slow_queue.clone());
    let queue_for_replays = queue.clone();
    let dispatcher = Dispatcher::new(backend.into(), queue.clone(), adapters.dead_letters.clone(), settings)
        .context("building the webhook client")?
        .with_slow_lane(slow_queue.clone());
    let dispatcher = Arc::new(dispatcher);
    let pollers = config.dispatcher_pollers;
    info!(pollers, "webhook dispatcher running");
    let main = dispatcher::worker::run(dispatcher.clone(), queue, Lane::Main, pollers, stopped.clone());
    // The slow lane needs fewer pollers: its messages wait on receivers, not on us.
    let slow = dispatcher::worker::run(dispatcher, slow_queue, Lane::Slow, pollers.div_ceil(2), stopped.clone());
    let replayer = Replayer::new(
        ReplayPorts {
            events: backend.events.clone(),
            log: backend.deliveries.clone(),
            jobs: backend.replays.clone(),
            deliveries: queue_for_replays,
            steps: adapters.replay_steps.clone(),
        },
        checkout::clock::system(),
    );
    let steps = adapters.replay_steps.clone();
    let task = tokio::spawn(async move {
        let replays = dispatcher::replay_runner::run(&replayer, steps.as_ref(), stopped);
        tokio::join!(main, slow, replays);
    });
    Ok((stop, task))
}
