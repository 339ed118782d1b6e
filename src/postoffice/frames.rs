//! The frames of the WebSocket protocol (docs/POSTOFFICE.md): what a client
//! sends, read strictly, and what the PostOffice answers.

use crate::address::Address;
use crate::codec::ContentType;
use crate::error::Error;
use crate::message::Response;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The first frame of a connection: `{"auth": "<token>"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthFrame {
    pub(crate) auth: String,
}

/// A call: `{"id", "to", "method", "body", "timeout_ms", "oneway", "expect",
/// "traceparent"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestFrame {
    /// Echoed in the reply; a string or a number.
    pub(crate) id: Value,
    pub(crate) to: String,
    pub(crate) method: String,
    #[serde(default)]
    pub(crate) body: Value,
    #[serde(default)]
    pub(crate) timeout_ms: Option<u64>,
    #[serde(default)]
    pub(crate) oneway: bool,
    /// For `every:`/`all`: answer as soon as this many replied.
    #[serde(default)]
    pub(crate) expect: Option<usize>,
    /// The W3C trace context the call belongs to; none starts a trace.
    #[serde(default)]
    pub(crate) traceparent: Option<String>,
}

/// A discovery question: `{"services": null}` or `{"services": "<type>"}`,
/// with an optional `id` echoed in the answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServicesFrame {
    pub(crate) services: Option<String>,
    #[serde(default)]
    pub(crate) id: Value,
}

/// What a client sent, once read.
#[derive(Debug)]
pub(crate) enum ClientFrame {
    Auth(AuthFrame),
    Request(RequestFrame),
    Services(ServicesFrame),
}

/// A frame the PostOffice could not take: its kind (the `error` field of
/// the error frame) and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProtocolError {
    pub(crate) kind: &'static str,
    pub(crate) message: String,
    pub(crate) id: Value,
}

impl ProtocolError {
    pub(crate) fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            id: Value::Null,
        }
    }

    pub(crate) fn with_id(mut self, id: Value) -> Self {
        self.id = id;
        self
    }

    /// `{"error": kind, "message": …, "id": …}` (no `id` when unknown).
    pub(crate) fn to_frame(&self) -> String {
        let mut frame = json!({"error": self.kind, "message": self.message});
        if !self.id.is_null() {
            frame["id"] = self.id.clone();
        }
        frame.to_string()
    }
}

/// Reads one text frame. The kind of frame is told by its first key of
/// note (`auth`, `services`, else a request); each kind refuses unknown
/// fields, so a typo is named instead of ignored.
pub(crate) fn read(text: &str) -> Result<ClientFrame, ProtocolError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ProtocolError::new("bad_json", format!("the frame is not JSON: {e}")))?;
    let Value::Object(map) = &value else {
        return Err(ProtocolError::new("bad_frame", "a frame is a JSON object"));
    };
    let id = map.get("id").cloned().unwrap_or(Value::Null);
    let bad =
        |e: serde_json::Error| ProtocolError::new("bad_frame", e.to_string()).with_id(id.clone());
    if map.contains_key("auth") {
        serde_json::from_value(value)
            .map(ClientFrame::Auth)
            .map_err(bad)
    } else if map.contains_key("services") {
        serde_json::from_value(value)
            .map(ClientFrame::Services)
            .map_err(bad)
    } else {
        let frame: RequestFrame = serde_json::from_value(value).map_err(bad)?;
        if !(frame.id.is_string() || frame.id.is_number()) {
            return Err(ProtocolError::new(
                "bad_frame",
                "`id` is a string or a number",
            ));
        }
        Ok(ClientFrame::Request(frame))
    }
}

/// Reads `to`: `any:<type>`, `instance:<id>`, `every:<type>` or `all`
/// (warren's own `any(<type>)` forms are read too).
pub(crate) fn address(to: &str) -> Result<Address, ProtocolError> {
    let parsed = match to.split_once(':') {
        Some(("any", t)) => Address::any(t),
        Some(("instance", id)) => Address::instance(id),
        Some(("every", t)) => Address::every(t),
        _ if to == "all" => Ok(Address::All),
        _ => to.parse(),
    };
    parsed.map_err(|e| ProtocolError::new("bad_address", format!("`to`: {e}")))
}

/// The JSON body of a reply, whatever its codec; `null` when empty.
fn body_json(response: &Response) -> Result<Value, Error> {
    if response.body.is_empty() {
        return Ok(Value::Null);
    }
    Ok(response.content_type.decode(&response.body)?)
}

/// `(status, body)` of an error: the wire code, and the status object
/// `{code, message, details}`. An address nobody listens at is `no_route`.
fn error_parts(error: &Error) -> (String, Value) {
    if let Error::NoRoute { .. } = error {
        let body = json!({"code": "no_route", "message": error.to_string()});
        return ("no_route".to_owned(), body);
    }
    let status = error.to_status();
    let body = status
        .to_body(ContentType::Json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| json!({"code": status.code(), "message": status.message()}));
    (status.code().as_str().to_owned(), body)
}

/// `(status, body)` of a call's outcome.
fn outcome(result: Result<Response, Error>) -> (String, Value) {
    match result.and_then(|r| body_json(&r)) {
        Ok(body) => ("ok".to_owned(), body),
        Err(e) => error_parts(&e),
    }
}

/// A reply frame `{"id", "status", "body"}`.
pub(crate) fn reply(id: &Value, result: Result<Response, Error>) -> String {
    let (status, body) = outcome(result);
    json!({"id": id, "status": status, "body": body}).to_string()
}

/// The one frame answering a gather: `{"id", "status": "ok", "body":
/// [{"from", "status", "body"}, …]}`, one entry per replying instance.
pub(crate) fn gathered(id: &Value, result: Result<Vec<Response>, Error>) -> String {
    match result {
        Ok(replies) => {
            let body: Vec<Value> = replies
                .into_iter()
                .map(|r| {
                    let from = r.from.id.as_ref().map(ToString::to_string);
                    let (status, body) = outcome(r.into_result());
                    json!({"from": from, "status": status, "body": body})
                })
                .collect();
            json!({"id": id, "status": "ok", "body": body}).to_string()
        }
        Err(e) => reply(id, Err(e)),
    }
}

/// A push frame `{"push": topic, "from": sender, "body": body}`.
#[derive(Debug, Serialize)]
pub(crate) struct PushFrame<'a> {
    pub(crate) push: &'a str,
    pub(crate) from: Option<&'a str>,
    pub(crate) body: &'a Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_strictly() {
        let ok = r#"{"id":1,"to":"any:calc","method":"Calc.add","body":[1,2]}"#;
        assert!(matches!(read(ok), Ok(ClientFrame::Request(_))));
        assert!(matches!(read(r#"{"auth":"t"}"#), Ok(ClientFrame::Auth(_))));
        assert!(matches!(
            read(r#"{"services":null}"#),
            Ok(ClientFrame::Services(_))
        ));
        assert_eq!(read("{").unwrap_err().kind, "bad_json");
        assert_eq!(read("[1]").unwrap_err().kind, "bad_frame");
        let typo = read(r#"{"id":"a","to":"any:c","method":"C.m","timeout":5}"#).unwrap_err();
        assert_eq!(typo.kind, "bad_frame");
        assert!(
            typo.message.contains("unknown field `timeout`"),
            "{}",
            typo.message
        );
        assert_eq!(typo.id, json!("a"));
        assert!(read(r#"{"id":null,"to":"any:c","method":"C.m"}"#).is_err());
        let traced = r#"{"id":1,"to":"any:c","method":"C.m","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}"#;
        let Ok(ClientFrame::Request(frame)) = read(traced) else {
            panic!("a request with a traceparent is read");
        };
        assert!(frame.traceparent.is_some());
    }

    #[test]
    fn addresses_take_the_documented_forms() {
        assert_eq!(address("any:calc").unwrap(), Address::any("calc").unwrap());
        assert_eq!(
            address("instance:c-1").unwrap(),
            Address::instance("c-1").unwrap()
        );
        assert_eq!(
            address("every:calc").unwrap(),
            Address::every("calc").unwrap()
        );
        assert_eq!(address("all").unwrap(), Address::All);
        assert_eq!(address("any(calc)").unwrap(), Address::any("calc").unwrap());
        assert_eq!(address("calc").unwrap_err().kind, "bad_address");
        assert_eq!(address("any:a b").unwrap_err().kind, "bad_address");
    }
}
