//! The AWS bill of what the functions do, counted on the wire: every request the four
//! functions send to AWS goes through this proxy on its way to moto, which records its service
//! and operation and, for DynamoDB, the capacity units AWS would bill by its item-size rules
//! (attribute names plus values; writes per 1 KB, transactional writes twice; reads per 4 KB,
//! eventually consistent ones half). moto answers; the proxy only counts.

use crate::iam::{self, Access};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// Requests, write units and read units of one (service, operation).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub requests: u64,
    /// Requests as the service bills them: an SNS or SQS request (a batch too) is one per
    /// started 64 KB of payload.
    pub billed: u64,
    pub write_units: f64,
    pub read_units: f64,
}

/// What was counted, by (service, operation).
pub type Counts = BTreeMap<(String, String), Usage>;

#[derive(Clone)]
struct Proxy {
    upstream: String,
    client: reqwest::Client,
    counts: Arc<Mutex<Counts>>,
    accesses: Arc<Mutex<BTreeSet<Access>>>,
}

pub struct Meter {
    pub url: String,
    counts: Arc<Mutex<Counts>>,
    /// Every authorisation the calls needed, for the least-privilege check.
    accesses: Arc<Mutex<BTreeSet<Access>>>,
}

impl Meter {
    /// A proxy to `upstream` (moto); give the functions its [`Meter::url`] as their endpoint.
    pub async fn start(upstream: &str) -> std::io::Result<Meter> {
        let counts = Arc::new(Mutex::new(Counts::new()));
        let accesses = Arc::new(Mutex::new(BTreeSet::new()));
        let proxy = Proxy {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            counts: counts.clone(),
            accesses: accesses.clone(),
        };
        let app = Router::new().fallback(forward).with_state(proxy);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Meter { url, counts, accesses })
    }

    /// Every authorisation the calls so far needed (kept across [`Meter::take`]).
    pub fn accesses(&self) -> BTreeSet<Access> {
        self.accesses.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// What was counted so far; counting starts again from nothing.
    pub fn take(&self) -> Counts {
        self.counts
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 64 * 1024 * 1024).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let target = format!(
        "{}{}",
        proxy.upstream,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut upstream = proxy.client.request(parts.method.clone(), target).body(body.clone());
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    let Ok(answer) = upstream.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let answer_body = answer.bytes().await.unwrap_or_default();
    if let Some((service, operation)) = operation(&parts.headers, &body) {
        let usage = units(&service, &operation, &body, &answer_body);
        let billed = billed(&service, &body);
        if let Ok(mut accesses) = proxy.accesses.lock() {
            accesses.extend(iam::accesses(&service, &operation, &body));
        }
        if let Ok(mut counts) = proxy.counts.lock() {
            let entry = counts.entry((service, operation)).or_default();
            entry.requests += 1;
            entry.billed += billed;
            entry.write_units += usage.write_units;
            entry.read_units += usage.read_units;
        }
    }
    let mut response = Response::new(Body::from(answer_body));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if name != "content-length" && name != "transfer-encoding" {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}

/// (service, operation) of a request: JSON protocols name it in `X-Amz-Target`
/// (`DynamoDB_20120810.PutItem`, `AmazonSQS.SendMessage`), the query protocol (SNS) in `Action=`.
fn operation(headers: &HeaderMap, body: &Bytes) -> Option<(String, String)> {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let (prefix, op) = target.split_once('.')?;
        let service = match prefix {
            p if p.starts_with("DynamoDBStreams") => "DynamoDB Streams",
            p if p.starts_with("DynamoDB") => "DynamoDB",
            p if p.starts_with("AmazonSQS") => "SQS",
            other => other,
        };
        return Some((service.to_owned(), op.to_owned()));
    }
    let action = form_urlencoded::parse(body).find_map(|(name, value)| (name == "Action").then_some(value))?;
    Some(("SNS".to_owned(), action.into_owned()))
}

/// How many requests the service bills for one call.
fn billed(service: &str, body: &Bytes) -> u64 {
    // A batch is billed by its payload, per started 64 KB (SNS: "up to 10 times cheaper"), not
    // per entry. The request's encoded size slightly overstates the payload.
    let chunks = (body.len() as u64).div_ceil(64 * 1024).max(1);
    match service {
        "SNS" | "SQS" => chunks,
        _ => 1,
    }
}

/// The capacity units AWS bills a DynamoDB request (zero for other services).
fn units(service: &str, operation: &str, request: &Bytes, answer: &Bytes) -> Usage {
    if service != "DynamoDB" {
        return Usage::default();
    }
    let request: Value = serde_json::from_slice(request).unwrap_or(Value::Null);
    let answer: Value = serde_json::from_slice(answer).unwrap_or(Value::Null);
    let consistent = request["ConsistentRead"].as_bool() == Some(true);
    let read = |bytes: usize| -> f64 {
        let units = bytes.div_ceil(4096).max(1) as f64;
        if consistent { units } else { units / 2.0 }
    };
    let write = |bytes: usize| bytes.div_ceil(1024).max(1) as f64;
    let mut usage = Usage::default();
    match operation {
        "PutItem" => usage.write_units = write(item_size(&request["Item"])),
        // The deleted item's size is not in the request; ours are small.
        "DeleteItem" | "UpdateItem" => usage.write_units = 1.0,
        "TransactWriteItems" => {
            for item in request["TransactItems"].as_array().into_iter().flatten() {
                let size = item["Put"]["Item"]
                    .as_object()
                    .map_or(0, |_| item_size(&item["Put"]["Item"]));
                usage.write_units += 2.0 * write(size);
            }
        }
        "BatchWriteItem" => {
            for (_, writes) in request["RequestItems"].as_object().into_iter().flatten() {
                for put in writes.as_array().into_iter().flatten() {
                    usage.write_units += write(item_size(&put["PutRequest"]["Item"]));
                }
            }
        }
        "GetItem" => usage.read_units = read(item_size(&answer["Item"])),
        "Query" => {
            let bytes: usize = answer["Items"].as_array().into_iter().flatten().map(item_size).sum();
            usage.read_units = read(bytes);
        }
        "BatchGetItem" => {
            // Each key read is billed on its own, found or not.
            for (_, keys) in request["RequestItems"].as_object().into_iter().flatten() {
                let strong = keys["ConsistentRead"].as_bool() == Some(true);
                for _ in keys["Keys"].as_array().into_iter().flatten() {
                    usage.read_units += if strong { 1.0 } else { 0.5 };
                }
            }
        }
        _ => {}
    }
    usage
}

/// An item's size by DynamoDB's rules: each attribute's name and value in UTF-8 bytes.
fn item_size(item: &Value) -> usize {
    item.as_object().map_or(0, |attributes| {
        attributes
            .iter()
            .map(|(name, value)| name.len() + value_size(value))
            .sum()
    })
}

fn value_size(value: &Value) -> usize {
    let Some((kind, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    match kind.as_str() {
        "S" | "B" => inner.as_str().map_or(0, str::len),
        // Numbers: about one byte per two digits, plus one.
        "N" => inner.as_str().map_or(1, |n| n.len().div_ceil(2) + 1),
        "BOOL" | "NULL" => 1,
        "M" => {
            3 + inner
                .as_object()
                .map_or(0, |m| m.iter().map(|(k, v)| k.len() + value_size(v) + 1).sum::<usize>())
        }
        "L" => {
            3 + inner
                .as_array()
                .map_or(0, |l| l.iter().map(|v| value_size(v) + 1).sum::<usize>())
        }
        "SS" | "NS" | "BS" => inner
            .as_array()
            .map_or(0, |l| l.iter().filter_map(Value::as_str).map(str::len).sum()),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn capacity_follows_the_item_size_rules() {
        let item = json!({"pk": {"S": "a".repeat(1020)}, "n": {"N": "12"}});
        let put = json!({"TableName": "t", "Item": item});
        let usage = units("DynamoDB", "PutItem", &Bytes::from(put.to_string()), &Bytes::new());
        assert_eq!(usage.write_units, 2.0, "1,020 + 2 + 1 + 2 bytes is over 1 KB");
        let transaction =
            json!({"TransactItems": [{"Put": {"Item": {"a": {"S": "x"}}}}, {"Put": {"Item": {"b": {"S": "y"}}}}]});
        let usage = units(
            "DynamoDB",
            "TransactWriteItems",
            &Bytes::from(transaction.to_string()),
            &Bytes::new(),
        );
        assert_eq!(usage.write_units, 4.0, "transactional writes bill twice");
        let batch = json!({"RequestItems": {"t": [
            {"PutRequest": {"Item": {"pk": {"S": "a".repeat(1500)}}}},
            {"PutRequest": {"Item": {"pk": {"S": "b"}}}}
        ]}});
        let usage = units(
            "DynamoDB",
            "BatchWriteItem",
            &Bytes::from(batch.to_string()),
            &Bytes::new(),
        );
        assert_eq!(usage.write_units, 3.0, "each item of a batch billed by its size");
        let query = json!({"ConsistentRead": true});
        let answer = json!({"Items": [{"d": {"S": "x".repeat(5000)}}]});
        let usage = units(
            "DynamoDB",
            "Query",
            &Bytes::from(query.to_string()),
            &Bytes::from(answer.to_string()),
        );
        assert_eq!(usage.read_units, 2.0, "5 KB read strongly is 2 units");
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-target", "AmazonSQS.SendMessage".parse().unwrap());
        assert_eq!(
            operation(&headers, &Bytes::new()),
            Some(("SQS".into(), "SendMessage".into()))
        );
        let sns = Bytes::from("Action=PublishBatch&TopicArn=x");
        assert_eq!(
            operation(&HeaderMap::new(), &sns),
            Some(("SNS".into(), "PublishBatch".into()))
        );
    }
}
