//! A merchant's catalog: what can be bought, at what price, and how it ships.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemDelivery {
    /// Needs an address and a shipping option.
    Physical,
    /// Delivered electronically: no address, the digital option is chosen automatically.
    Digital,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogItem {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Minor units of the catalog currency.
    pub unit_amount: i64,
    pub delivery: ItemDelivery,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingRate {
    pub id: String,
    pub title: String,
    pub description: String,
    pub carrier: String,
    pub amount: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// ISO 4217, lower case: the one currency this merchant settles in.
    pub currency: String,
    pub items: Vec<CatalogItem>,
    pub shipping_rates: Vec<ShippingRate>,
    /// Sales tax on the items, in basis points (825 = 8.25 %).
    pub tax_rate_bps: u32,
}

/// The id of the single digital delivery option offered for all-digital carts.
pub const DIGITAL_OPTION_ID: &str = "digital_delivery";

/// Most units of one item in a session; keeps every total far from overflow.
pub const MAX_QUANTITY: u32 = 10_000;

impl Catalog {
    pub fn item(&self, id: &str) -> Option<&CatalogItem> {
        self.items.iter().find(|i| i.id == id)
    }

    /// The catalog `acp-local` seeds its demo merchant with. Item and option ids match the ACP
    /// specification's examples, so they can be replayed against a local server unchanged.
    pub fn demo() -> Self {
        Self {
            currency: "usd".to_owned(),
            items: vec![
                CatalogItem {
                    id: "test_1".to_owned(),
                    name: "Test Product".to_owned(),
                    description: Some("A physical demo product".to_owned()),
                    unit_amount: 2500,
                    delivery: ItemDelivery::Physical,
                },
                CatalogItem {
                    id: "item_123".to_owned(),
                    name: "Vintage Denim Jacket".to_owned(),
                    description: Some("Classic blue denim jacket".to_owned()),
                    unit_amount: 300,
                    delivery: ItemDelivery::Physical,
                },
                CatalogItem {
                    id: "ebook_1".to_owned(),
                    name: "Field Guide (e-book)".to_owned(),
                    description: Some("A digital download".to_owned()),
                    unit_amount: 1200,
                    delivery: ItemDelivery::Digital,
                },
            ],
            shipping_rates: vec![
                ShippingRate {
                    id: "fulfillment_option_123".to_owned(),
                    title: "Standard".to_owned(),
                    description: "Arrives in 4-5 business days".to_owned(),
                    carrier: "USPS".to_owned(),
                    amount: 500,
                },
                ShippingRate {
                    id: "fulfillment_option_456".to_owned(),
                    title: "Express".to_owned(),
                    description: "Arrives in 1-2 business days".to_owned(),
                    carrier: "UPS".to_owned(),
                    amount: 1500,
                },
            ],
            tax_rate_bps: 825,
        }
    }
}
