//! The price of an item from a rate table, as the vendor's `quote` answers it and as an
//! `authorize` must carry it — the **core** (no I/O): the vendor prices with its own table,
//! and the counter shows the live price from the last good signed rates bundle with the very
//! same function (docs/PROTOCOL.md §4.9.4). The vendor's price is the one an authorization is
//! checked against.

use super::{ErrorBody, ErrorCode};
use crate::indicium::kinds::Item;
use crate::indicium::rates::{self, RateTable};
use crate::money::Cents;

/// The amount an authorization must carry: postage → the vendor's quote; other kinds → the
/// item's face value.
pub fn required_amount(
    rates: &RateTable,
    item: &Item,
    origin: crate::indicium::address::Zip5,
) -> Result<Cents, ErrorBody> {
    match item {
        Item::Postage(p) => rates
            .quote(p.class, p.weight, origin, p.destination.zip5())
            .map_err(|e| {
                tracing::info!(field = "authorize.item", error = %e, "no price for the item");
                ErrorBody::new(ErrorCode::InvalidItem, e.to_string())
            }),
        other => other.face_value().ok_or_else(|| {
            ErrorBody::new(
                ErrorCode::InvalidItem,
                "this item has no value to charge; enter its amount",
            )
        }),
    }
}

/// The answer to a `quote` for a postage piece: the vendor's from its own table, the counter's
/// live price from its signed table.
pub fn quote(rates: &RateTable, q: &super::QuoteRequest) -> Result<super::Quoted, ErrorBody> {
    let item = super::WireItem::Postage(q.item.clone())
        .to_item()
        .map_err(|e| ErrorBody::malformed(format!("quote.item.{}: {}", e.field, e.reason)))?;
    let origin = super::origin_zip(&q.origin_zip)
        .map_err(|e| ErrorBody::malformed(format!("quote.{}: {}", e.field, e.reason)))?;
    let Item::Postage(p) = &item else {
        return Err(ErrorBody::malformed("quote.item must be postage"));
    };
    let amount = required_amount(rates, &item, origin)?;
    Ok(super::Quoted {
        amount_cents: amount.get(),
        zone: rates::zone(origin, p.destination.zip5()).get(),
        rate_table: rates.label().to_string(),
        sample: rates.is_sample(),
    })
}
