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
