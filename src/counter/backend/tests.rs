//! Unit tests of the backend's pure helpers.

use super::*;

fn refused(code: ErrorCode) -> ClientError {
    ClientError::Response(wire::ResponseError::Refused(wire::ErrorBody::new(
        code,
        "vendor words",
    )))
}

/// A processor timeout is retried under the same request id (charged at most once); once
/// the retries run out the clerk is told not to top up again blindly.
#[test]
fn a_payment_timeout_is_retried_and_then_explained() {
    assert!(retryable(&refused(ErrorCode::PaymentTimeout)));
    assert!(!retryable(&refused(ErrorCode::PaymentDeclined)));
    let words = reason(&refused(ErrorCode::PaymentTimeout));
    assert!(
        words.contains("check the balance before trying again"),
        "{words}"
    );
    assert_eq!(reason(&refused(ErrorCode::PaymentDeclined)), "vendor words");
}

/// A price that changed between the quote and the confirmation is told in plain words with
/// the new price, not the vendor's field names.
#[test]
fn a_changed_price_is_told_in_plain_words() {
    let e = ClientError::Response(wire::ResponseError::Refused(
        wire::ErrorBody::new(
            ErrorCode::QuoteMismatch,
            "authorize.amount_cents is 80 but the vendor's price for this postage is $0.90",
        )
        .with_amount_cents(90),
    ));
    let words = reason(&e);
    assert!(!retryable(&e));
    assert!(words.contains("price changed"), "{words}");
    assert!(words.contains("$0.90"), "{words}");
    assert!(!words.contains("amount_cents"), "{words}");
}
