//! Unit tests of [`super`] (moved out of its file unchanged).

use super::*;

fn raw(v: u16, kind: &str, body: Value) -> Vec<u8> {
    to_cbor(&RequestEnvelope {
        v,
        kind: kind.into(),
        body,
    })
}

#[test]
fn round_trips() {
    let reqs = [
        Request::Ping(Ping {}),
        Request::Enroll(Enroll {
            code: "c".into(),
            name: "t1".into(),
            device_key: vec![1; 32],
            challenge: vec![2; 8],
        }),
        Request::Login(Login {
            terminal_id: 7,
            clerk: "alice".into(),
            password: "pw".into(),
            proof: vec![3; 64],
        }),
        Request::Resume(Resume {
            session_id: 1,
            terminal_id: 2,
            proof: vec![3; 64],
            resume_mac: vec![4; 32],
        }),
        Request::ClockCheck(ClockCheck {
            request_id: vec![4; 16],
            client_time_ms: 5,
            mac: vec![6; 32],
        }),
    ];
    for r in reqs {
        assert_eq!(decode_request(&encode_request(&r)).unwrap(), r);
    }
}

/// Data-driven bad input: each case names the error code it must produce.
#[test]
fn bad_requests_get_typed_errors() {
    let ping = Value::Map(vec![]);
    let cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
        ("garbage", vec![0xff, 0x00, 0x13], ErrorCode::Malformed),
        ("empty", vec![], ErrorCode::Malformed),
        ("not a map", to_cbor(&42u32), ErrorCode::Malformed),
        (
            "wrong version",
            raw(2, "ping", ping.clone()),
            ErrorCode::UnsupportedVersion,
        ),
        (
            "unknown type",
            raw(1, "teleport", ping.clone()),
            ErrorCode::UnknownType,
        ),
        (
            "extra field",
            raw(
                1,
                "ping",
                Value::Map(vec![(Value::Text("x".into()), Value::Integer(1.into()))]),
            ),
            ErrorCode::Malformed,
        ),
        (
            "body wrong type",
            raw(1, "login", Value::Integer(3.into())),
            ErrorCode::Malformed,
        ),
        (
            "oversized",
            vec![0u8; REQUEST_BYTES_MAX + 1],
            ErrorCode::Oversized,
        ),
    ];
    for (name, bytes, code) in cases {
        assert_eq!(decode_request(&bytes).unwrap_err().code, code, "{name}");
    }
    let short_key = Request::Enroll(Enroll {
        code: "c".into(),
        name: "t".into(),
        device_key: vec![1; 31],
        challenge: vec![2; 8],
    });
    let err = decode_request(&encode_request(&short_key)).unwrap_err();
    assert_eq!(err.code, ErrorCode::Malformed);
    assert!(err.message.contains("enroll.device_key"), "{}", err.message);
}

#[test]
fn responses_round_trip_and_errors_surface() {
    let ok = encode_ok(&Pong { vendor_time_ms: 9 });
    assert_eq!(
        decode_response::<Pong>(&ok).unwrap(),
        Pong { vendor_time_ms: 9 }
    );
    let err = encode_error(&ErrorBody::new(ErrorCode::LockedOut, "wait").with_retry_after_ms(5));
    match decode_response::<Pong>(&err) {
        Err(ResponseError::Refused(b)) => {
            assert_eq!(b.code, ErrorCode::LockedOut);
            assert_eq!(b.retry_after_ms, Some(5));
        }
        other => panic!("{other:?}"),
    }
}

/// Issue 13: a password, card number or CVC sent with the wrong CBOR type is named, never
/// echoed (the message is logged); so is a bad envelope field.
#[test]
fn decode_errors_name_the_field_not_the_value() {
    let secret = 987_654_321_987u64;
    let t = |s: &str| Value::Text(s.into());
    let login = Value::Map(vec![
        (t("terminal_id"), Value::Integer(1.into())),
        (t("clerk"), t("alice")),
        (t("password"), Value::Integer(secret.into())),
        (t("proof"), Value::Bytes(vec![0; 64])),
    ]);
    let fund = Value::Map(vec![
        (t("request_id"), Value::Bytes(vec![0; 16])),
        (t("amount_cents"), Value::Integer(500.into())),
        (
            t("method"),
            Value::Map(vec![(
                t("card"),
                Value::Map(vec![
                    (t("number"), Value::Integer(secret.into())),
                    (t("exp_month"), Value::Integer(1.into())),
                    (t("exp_year"), Value::Integer(2030.into())),
                    (t("cvc"), Value::Integer(secret.into())),
                ]),
            )]),
        ),
    ]);
    let bad_kind = to_cbor(&Value::Map(vec![
        (t("v"), Value::Integer(1.into())),
        (t("type"), Value::Integer(secret.into())),
        (t("body"), Value::Map(vec![])),
    ]));
    let cases = [
        (
            raw(1, "login", login),
            "login.password must be a text string, got an integer",
        ),
        (raw(1, "fund", fund), "fund.method"),
        (
            bad_kind,
            "request.type must be a text string, got an integer",
        ),
        (
            raw(1, &secret.to_string(), Value::Null),
            "unknown request type",
        ),
    ];
    for (bytes, want) in cases {
        let err = decode_request(&bytes).unwrap_err();
        assert!(err.message.contains(want), "{}", err.message);
        assert!(
            !err.message.contains(&secret.to_string()),
            "{}",
            err.message
        );
    }
    let err = decode_request(&[0xa3, 0x61]).unwrap_err();
    assert_eq!(err.message, "request ends before its CBOR item does");
    // A well-typed integer out of range is not repeated either.
    let huge = u64::MAX - 12_345;
    let fund = Request::Fund(Fund {
        request_id: vec![0; 16],
        client_time_ms: 1,
        amount_cents: huge,
        method: FundMethod::simulator_test_card(),
        mac: vec![0; reqmac::REQUEST_MAC_BYTES],
    });
    let err = decode_request(&encode_request(&fund)).unwrap_err();
    assert!(
        err.message.starts_with("fund.amount_cents must be 1..="),
        "{}",
        err.message
    );
    assert!(!err.message.contains(&huge.to_string()), "{}", err.message);
}

#[test]
fn names_with_control_characters_are_refused() {
    let enroll = Request::Enroll(Enroll {
        code: "c".into(),
        name: "x\nFAKE INFO clerk logged in clerk=root".into(),
        device_key: vec![1; 32],
        challenge: vec![2; 8],
    });
    let login = Request::Login(Login {
        terminal_id: 1,
        clerk: "root\u{1b}[2K".into(),
        password: "pw".into(),
        proof: vec![3; 64],
    });
    for (r, field) in [(enroll, "enroll.name"), (login, "login.clerk")] {
        let err = decode_request(&encode_request(&r)).unwrap_err();
        assert_eq!(err.code, ErrorCode::Malformed);
        assert!(err.message.starts_with(field), "{}", err.message);
        assert!(
            err.message.contains("control characters"),
            "{}",
            err.message
        );
    }
}

#[test]
fn login_debug_hides_the_password() {
    let l = Login {
        terminal_id: 1,
        clerk: "a".into(),
        password: "hunter2".into(),
        proof: vec![],
    };
    assert!(!format!("{l:?}").contains("hunter2"));
}
