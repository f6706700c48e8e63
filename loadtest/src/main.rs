//! `loadtest --target URL --api-key KEY [--sessions N] [--concurrency C] [--out DIR]`

use clap::Parser;
use loadtest::FlowConfig;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "loadtest",
    about = "Run concurrent ACP checkout flows against an endpoint and time them"
)]
struct Args {
    /// Base URL of the checkout API (for a deployment, its ApiEndpoint output).
    #[arg(long, env = "ACP_TARGET")]
    target: String,
    /// A merchant API key on that endpoint.
    #[arg(long, env = "ACP_API_KEY", hide_env_values = true)]
    api_key: String,
    /// Checkout flows to run.
    #[arg(long, default_value_t = 1000)]
    sessions: u64,
    /// Flows running at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Cancel every n-th flow instead of completing it (0: never).
    #[arg(long, default_value_t = 5)]
    cancel_every: u64,
    /// Catalog item each flow buys.
    #[arg(long, default_value = "test_1")]
    item: String,
    /// Folder for summary.json.
    #[arg(long, default_value = "loadtest-report")]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let report = loadtest::run(FlowConfig {
        target: args.target.trim_end_matches('/').to_owned(),
        api_key: args.api_key,
        sessions: args.sessions,
        concurrency: args.concurrency,
        cancel_every: args.cancel_every,
        item_id: args.item,
    })
    .await?;
    report.print();
    std::fs::create_dir_all(&args.out)?;
    let summary = args.out.join("summary.json");
    std::fs::write(&summary, serde_json::to_vec_pretty(&report)?)?;
    println!("summary: {}", summary.display());
    if !report.errors.is_empty() {
        anyhow::bail!("{} kinds of error during the run", report.errors.len());
    }
    Ok(())
}
