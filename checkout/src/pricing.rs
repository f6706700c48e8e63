//! Prices a cart from the merchant's catalog: line items, fulfillment options, totals.
//! Nothing here trusts an amount sent by the client.

use crate::acp::{FulfillmentOption, FulfillmentType, ItemRef, LineItem, SelectedFulfillmentOption, Total, TotalType};
use crate::catalog::{Catalog, CatalogItem, DIGITAL_OPTION_ID, ItemDelivery};

/// One cart line, already checked against the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CartLine<'a> {
    pub item: &'a CatalogItem,
    pub quantity: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PricedCart {
    pub line_items: Vec<LineItem>,
    pub fulfillment_options: Vec<FulfillmentOption>,
    pub selected_fulfillment_options: Vec<SelectedFulfillmentOption>,
    pub totals: Vec<Total>,
    /// Some item has to be shipped, so an address is needed.
    pub needs_address: bool,
}

pub fn line_item_id(item_id: &str) -> String {
    format!("li_{item_id}")
}

/// Tax on an amount, rounded half up to the minor unit.
fn tax(amount: i64, rate_bps: u32) -> i64 {
    (amount * i64::from(rate_bps) + 5_000) / 10_000
}

pub fn price(catalog: &Catalog, cart: &[CartLine<'_>], selected: &[SelectedFulfillmentOption]) -> PricedCart {
    let line_items: Vec<LineItem> = cart.iter().map(|line| price_line(catalog, line)).collect();
    let needs_address = cart.iter().any(|l| l.item.delivery == ItemDelivery::Physical);
    let fulfillment_options = fulfillment_options(catalog, needs_address);
    let selected_fulfillment_options = resolve_selection(&fulfillment_options, &line_items, selected);

    let base: i64 = line_items.iter().map(|l| l.unit_amount * i64::from(l.quantity)).sum();
    let item_tax: i64 = line_items.iter().map(|l| amount_of(&l.totals, TotalType::Tax)).sum();
    let fulfillment: i64 = selected_fulfillment_options
        .iter()
        .filter_map(|s| fulfillment_options.iter().find(|o| o.id == s.option_id))
        .map(|o| amount_of(&o.totals, TotalType::Total))
        .sum();

    let mut totals = vec![
        Total::new(TotalType::ItemsBaseAmount, "Item(s) total", base),
        Total::new(TotalType::Subtotal, "Subtotal", base),
    ];
    if !selected_fulfillment_options.is_empty() {
        totals.push(Total::new(TotalType::Fulfillment, "Fulfillment", fulfillment));
    }
    totals.push(Total::new(TotalType::Tax, "Tax", item_tax));
    totals.push(Total::new(TotalType::Total, "Total", base + fulfillment + item_tax));

    PricedCart {
        line_items,
        fulfillment_options,
        selected_fulfillment_options,
        totals,
        needs_address,
    }
}

fn amount_of(totals: &[Total], kind: TotalType) -> i64 {
    totals.iter().filter(|t| t.kind == kind).map(|t| t.amount).sum()
}

fn price_line(catalog: &Catalog, line: &CartLine<'_>) -> LineItem {
    let base = line.item.unit_amount * i64::from(line.quantity);
    let line_tax = tax(base, catalog.tax_rate_bps);
    LineItem {
        id: line_item_id(&line.item.id),
        item: ItemRef {
            id: line.item.id.clone(),
        },
        quantity: line.quantity,
        name: Some(line.item.name.clone()),
        description: line.item.description.clone(),
        unit_amount: line.item.unit_amount,
        totals: vec![
            Total::new(TotalType::ItemsBaseAmount, "Base Amount", base),
            Total::new(TotalType::Subtotal, "Subtotal", base),
            Total::new(TotalType::Tax, "Tax", line_tax),
            Total::new(TotalType::Total, "Total", base + line_tax),
        ],
    }
}

fn fulfillment_options(catalog: &Catalog, needs_address: bool) -> Vec<FulfillmentOption> {
    if !needs_address {
        return vec![FulfillmentOption {
            kind: FulfillmentType::Digital,
            id: DIGITAL_OPTION_ID.to_owned(),
            title: "Digital delivery".to_owned(),
            description: Some("Sent by email right after payment".to_owned()),
            carrier: None,
            earliest_delivery_time: None,
            latest_delivery_time: None,
            totals: vec![Total::new(TotalType::Total, "Digital delivery", 0)],
        }];
    }
    catalog
        .shipping_rates
        .iter()
        .map(|rate| FulfillmentOption {
            kind: FulfillmentType::Shipping,
            id: rate.id.clone(),
            title: rate.title.clone(),
            description: Some(rate.description.clone()),
            carrier: Some(rate.carrier.clone()),
            earliest_delivery_time: None,
            latest_delivery_time: None,
            totals: vec![Total::new(TotalType::Total, &rate.title, rate.amount)],
        })
        .collect()
}

/// Keeps the choices that still exist, fills empty `item_ids` with every item, and picks the
/// only option of an all-digital cart by itself.
fn resolve_selection(
    options: &[FulfillmentOption],
    line_items: &[LineItem],
    selected: &[SelectedFulfillmentOption],
) -> Vec<SelectedFulfillmentOption> {
    let all_items: Vec<String> = line_items.iter().map(|l| l.item.id.clone()).collect();
    let mut chosen: Vec<SelectedFulfillmentOption> = selected
        .iter()
        .filter_map(|s| options.iter().find(|o| o.id == s.option_id))
        .map(|o| SelectedFulfillmentOption {
            kind: o.kind,
            option_id: o.id.clone(),
            item_ids: all_items.clone(),
        })
        .take(1)
        .collect();
    if chosen.is_empty()
        && let [only] = options
        && only.kind == FulfillmentType::Digital
    {
        chosen.push(SelectedFulfillmentOption {
            kind: only.kind,
            option_id: only.id.clone(),
            item_ids: all_items,
        });
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acp::grand_total;

    fn cart<'a>(catalog: &'a Catalog, lines: &[(&str, u32)]) -> Vec<CartLine<'a>> {
        lines
            .iter()
            .map(|(id, q)| CartLine {
                item: catalog.item(id).unwrap(),
                quantity: *q,
            })
            .collect()
    }

    fn select(option_id: &str) -> Vec<SelectedFulfillmentOption> {
        vec![SelectedFulfillmentOption {
            kind: FulfillmentType::Shipping,
            option_id: option_id.to_owned(),
            item_ids: vec![],
        }]
    }

    #[test]
    fn physical_cart_totals_include_shipping_and_tax() {
        let catalog = Catalog::demo();
        let priced = price(
            &catalog,
            &cart(&catalog, &[("test_1", 2)]),
            &select("fulfillment_option_456"),
        );
        // 2 × 25.00 = 50.00; tax 8.25 % = 4.125 → 4.13; express 15.00.
        assert_eq!(grand_total(&priced.totals), 5000 + 413 + 1500);
        assert!(priced.needs_address);
        assert_eq!(priced.fulfillment_options.len(), 2);
        assert_eq!(priced.selected_fulfillment_options[0].item_ids, vec!["test_1"]);
        assert!(
            priced
                .totals
                .iter()
                .any(|t| t.kind == TotalType::Fulfillment && t.amount == 1500)
        );
    }

    #[test]
    fn unknown_selection_is_dropped_and_no_fulfillment_total_appears() {
        let catalog = Catalog::demo();
        let priced = price(&catalog, &cart(&catalog, &[("test_1", 1)]), &select("ship_teleport"));
        assert!(priced.selected_fulfillment_options.is_empty());
        assert!(!priced.totals.iter().any(|t| t.kind == TotalType::Fulfillment));
        assert_eq!(grand_total(&priced.totals), 2500 + 206);
    }

    #[test]
    fn digital_cart_selects_digital_delivery_itself() {
        let catalog = Catalog::demo();
        let priced = price(&catalog, &cart(&catalog, &[("ebook_1", 1)]), &[]);
        assert!(!priced.needs_address);
        assert_eq!(priced.fulfillment_options[0].kind, FulfillmentType::Digital);
        assert_eq!(priced.selected_fulfillment_options[0].option_id, DIGITAL_OPTION_ID);
        assert_eq!(grand_total(&priced.totals), 1200 + 99);
    }

    #[test]
    fn tax_rounds_half_up() {
        assert_eq!(tax(1000, 825), 83); // 82.5
        assert_eq!(tax(999, 825), 82); // 82.4175
        assert_eq!(tax(0, 825), 0);
    }
}
