//! Operator commands for a deployment's merchants (the tables are found as the Lambda functions
//! find them: `ACP_ENVIRONMENT` or the `*_TABLE` variables; AWS settings as usual):
//!
//! ```text
//! acp-admin merchant create --id mer_shop --name "My Shop" --order-url-base URL \
//!     [--catalog catalog.json] [--terms-url URL] [--return-policy-url URL] [--privacy-policy-url URL]
//! acp-admin merchant rotate-key --id mer_shop
//! ```
//!
//! Both print the merchant's new API key once; only its hash is stored.

use anyhow::Context;
use api::onboarding::{self, NewMerchant};
use aws_backend::{DynamoStore, TableNames};
use checkout::acp::Link;
use checkout::catalog::Catalog;
use checkout::ids::MerchantId;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "acp-admin", version, about = "ACP Checkout Manager operations")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Tenants of the checkout API.
    Merchant {
        #[command(subcommand)]
        action: MerchantAction,
    },
}

#[derive(Subcommand)]
enum MerchantAction {
    /// Add a merchant and print its API key.
    Create {
        /// `mer_` followed by letters, digits or `_`.
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// A catalog as JSON: `currency`, `items` (`id`, `name`, `unit_amount`, `delivery`:
        /// physical or digital), `shipping_rates`, `tax_rate_bps`. The demo catalog when absent.
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// Where the shop shows an order: orders link to `{URL}/{order_id}`.
        #[arg(long)]
        order_url_base: String,
        /// The shop's terms of use, linked from every session.
        #[arg(long)]
        terms_url: Option<String>,
        /// The shop's return policy, linked from every session.
        #[arg(long)]
        return_policy_url: Option<String>,
        /// The shop's privacy policy, linked from every session.
        #[arg(long)]
        privacy_policy_url: Option<String>,
    },
    /// Replace a merchant's API key and print the new one.
    RotateKey {
        #[arg(long)]
        id: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let sdk = aws_backend::sdk_config().await;
    let tables = TableNames::from_env()?;
    let store = DynamoStore::from_sdk_config(&sdk, tables);
    let Command::Merchant { action } = cli.command;
    match action {
        MerchantAction::Create {
            id,
            name,
            catalog,
            order_url_base,
            terms_url,
            return_policy_url,
            privacy_policy_url,
        } => {
            let catalog = match catalog {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                    serde_json::from_str(&text).with_context(|| format!("{} is not a catalog", path.display()))?
                }
                None => Catalog::demo(),
            };
            let new = NewMerchant {
                id: merchant_id(&id)?,
                name,
                catalog,
                order_url_base,
                links: [
                    ("terms_of_use", terms_url),
                    ("return_policy", return_policy_url),
                    ("privacy_policy", privacy_policy_url),
                ]
                .into_iter()
                .filter_map(|(kind, url)| {
                    Some(Link {
                        kind: kind.to_owned(),
                        url: url?,
                    })
                })
                .collect(),
            };
            let (merchant, api_key) = onboarding::create_merchant(&store, new).await?;
            println!("merchant {} created; API key (shown once): {api_key}", merchant.id);
        }
        MerchantAction::RotateKey { id } => {
            let api_key = onboarding::rotate_api_key(&store, &merchant_id(&id)?).await?;
            println!("merchant {id}: new API key (shown once; the old one stops working within 30 s): {api_key}");
        }
    }
    Ok(())
}

fn merchant_id(id: &str) -> anyhow::Result<MerchantId> {
    MerchantId::parse(id).with_context(|| format!("{id:?} is not a merchant id (mer_…)"))
}
