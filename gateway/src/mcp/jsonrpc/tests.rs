use super::*;

fn one(text: &str) -> Result<McpMessage, RpcError> {
    match Body::parse(text.as_bytes())? {
        Body::Single(m) => Ok(m),
        Body::Batch(_) => panic!("batch"),
    }
}

#[test]
fn typed_messages() {
    let call = one(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"query_sales","arguments":{"q":"x"}}}"#).unwrap();
    assert_eq!(
        call.kind,
        Kind::Request {
            id: json!(7),
            method: "tools/call".into()
        }
    );
    assert_eq!(
        call.tool_call(),
        Some(("query_sales", Some(&json!({"q": "x"}))))
    );

    let note =
        one(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#)
            .unwrap();
    assert_eq!(
        note.kind,
        Kind::Notification {
            method: "notifications/progress".into()
        }
    );
    assert_eq!(note.id(), None);

    let list = one(r#"{"jsonrpc":"2.0","id":"a","result":{"tools":[{"name":"echo"}]}}"#).unwrap();
    assert_eq!(list.kind, Kind::Response { id: json!("a") });
    assert_eq!(list.tool_definitions().map(Vec::len), Some(1));

    let err = one(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"nope"}}"#).unwrap();
    assert_eq!(
        err.kind,
        Kind::Error {
            id: json!(1),
            code: -32601,
            message: "nope".into()
        }
    );

    let stateless = one(r#"{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{"protocolVersion":"2026-07-28"}}}"#).unwrap();
    assert_eq!(stateless.meta_protocol_version(), Some("2026-07-28"));
}

#[test]
fn batches_and_unchanged_bytes() {
    let text = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#;
    let body = Body::parse(text.as_bytes()).unwrap();
    assert_eq!(body.messages().len(), 2);
    let round: Value = serde_json::from_slice(&body.to_bytes()).unwrap();
    assert_eq!(round, serde_json::from_str::<Value>(text).unwrap());
}

#[test]
fn malformed_input_is_a_clear_error() {
    for (text, code) in [
        ("{", code::PARSE_ERROR),
        ("", code::PARSE_ERROR),
        ("[]", code::INVALID_REQUEST),
        ("42", code::INVALID_REQUEST),
        (r#"{"id":1,"method":"x"}"#, code::INVALID_REQUEST),
        (
            r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
            code::INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
            code::INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            code::INVALID_REQUEST,
        ),
        (r#"{"jsonrpc":"2.0","id":1}"#, code::INVALID_REQUEST),
        (
            r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1}}"#,
            code::INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","method":"x","params":3}"#,
            code::INVALID_REQUEST,
        ),
        (
            r#"[{"jsonrpc":"2.0","method":"x"}, 1]"#,
            code::INVALID_REQUEST,
        ),
    ] {
        let err = Body::parse(text.as_bytes()).unwrap_err();
        assert_eq!(err.code, code, "{text}: {err:?}");
    }
}

#[test]
fn routing_headers_must_match_the_body() {
    let call =
        one(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"query"}}"#).unwrap();
    assert_eq!(
        call.check_headers(Some("tools/call"), Some("query")),
        Ok(())
    );
    assert_eq!(call.check_headers(None, None), Ok(()));
    assert!(call.check_headers(Some("tools/list"), None).is_err());
    let err = call
        .check_headers(Some("tools/call"), Some("harmless"))
        .unwrap_err();
    assert!(err.message.contains("Mcp-Name"), "{err:?}");
    let read =
        one(r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}"#)
            .unwrap();
    assert_eq!(
        read.check_headers(Some("resources/read"), Some("file:///a")),
        Ok(())
    );
    assert!(read.check_headers(None, Some("file:///b")).is_err());
}
