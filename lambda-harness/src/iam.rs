//! Least privilege, checked: every AWS call a function makes (seen on the wire by the
//! [`crate::meter`]) must be allowed by that function's `Policies` in the template, as IAM
//! would judge it. moto does not enforce IAM, so without this a call the template forgot (or a
//! query on an index, or a write outside a `dynamodb:LeadingKeys` condition) would pass every
//! test and fail with `AccessDenied` on the first deployment.
//!
//! Modelled: inline `Allow` statements on `!GetAtt X.Arn` (optionally `!Sub "${X.Arn}/…"`), the
//! `ForAllValues:StringLike` / `dynamodb:LeadingKeys` condition, and the SAM policy templates
//! the template uses. Anything else in a policy stops the test: an unmodelled policy must not
//! pass silently.

use crate::template::Template;
use serde_json::Value;
use std::collections::HashMap;
use yaml_rust2::Yaml;

/// One authorisation a call needs: an action on a resource.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Access {
    /// The IAM action that authorises the call: a batch as its single form
    /// (`SendMessageBatch` → `sqs:SendMessage`), a transaction per item (`dynamodb:PutItem`).
    pub action: String,
    /// The resource's physical name: a table (`t`, or `t/index/i`), a queue or a topic.
    pub resource: String,
    /// The partition key a single-item DynamoDB call touches (`dynamodb:LeadingKeys`).
    pub leading_key: Option<String>,
}

/// What a policy allows.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    /// Actions, `*` allowed at the end (`sqs:SendMessage*`).
    pub actions: Vec<String>,
    /// The resource's logical id, with any suffix (`DeliveriesTable/index/*`).
    pub resource: String,
    /// `dynamodb:LeadingKeys` patterns the call's partition key must match, when conditioned.
    pub leading_keys: Option<Vec<String>>,
}

/// The partition key attributes of the tables (see `aws_backend::create_tables`).
const PARTITION_KEYS: [&str; 3] = ["pk", "session_id", "target"];

/// The authorisations a request needs, from its wire form.
pub fn accesses(service: &str, operation: &str, body: &[u8]) -> Vec<Access> {
    match service {
        "DynamoDB" => dynamodb(operation, &serde_json::from_slice(body).unwrap_or(Value::Null)),
        "SQS" => {
            let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let queue = request["QueueUrl"].as_str().unwrap_or_default();
            let action = operation.strip_suffix("Batch").unwrap_or(operation);
            vec![access(format!("sqs:{action}"), last_segment(queue, '/'), None)]
        }
        "SNS" => {
            let topic = form_urlencoded::parse(body)
                .find_map(|(name, value)| (name == "TopicArn").then(|| value.into_owned()))
                .unwrap_or_default();
            let action = operation.strip_suffix("Batch").unwrap_or(operation);
            vec![access(format!("sns:{action}"), last_segment(&topic, ':'), None)]
        }
        other => vec![access(format!("{other}:{operation}"), String::new(), None)],
    }
}

fn access(action: String, resource: String, leading_key: Option<String>) -> Access {
    Access {
        action,
        resource,
        leading_key,
    }
}

fn dynamodb(operation: &str, request: &Value) -> Vec<Access> {
    let table = |r: &Value| {
        let name = r["TableName"].as_str().unwrap_or_default().to_owned();
        match r["IndexName"].as_str() {
            Some(index) => format!("{name}/index/{index}"),
            None => name,
        }
    };
    match operation {
        "TransactWriteItems" | "TransactGetItems" => request["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| {
                let (kind, inner) = item.as_object()?.iter().next()?;
                let action = match kind.as_str() {
                    "Put" => "PutItem",
                    "Update" => "UpdateItem",
                    "Delete" => "DeleteItem",
                    "ConditionCheck" => "ConditionCheckItem",
                    _ => "GetItem",
                };
                Some(access(format!("dynamodb:{action}"), table(inner), partition_key(inner)))
            })
            .collect(),
        "BatchGetItem" | "BatchWriteItem" => request["RequestItems"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, _)| access(format!("dynamodb:{operation}"), name.clone(), None))
            .collect(),
        _ => vec![access(
            format!("dynamodb:{operation}"),
            table(request),
            partition_key(request),
        )],
    }
}

/// The partition key value of a single-item request (its `Item` or `Key`).
fn partition_key(request: &Value) -> Option<String> {
    let item = request.get("Item").or_else(|| request.get("Key"))?;
    PARTITION_KEYS
        .iter()
        .find_map(|name| item[name]["S"].as_str().map(str::to_owned))
}

fn last_segment(s: &str, separator: char) -> String {
    s.rsplit(separator).next().unwrap_or_default().to_owned()
}

/// The function's grants, from its `Policies`.
pub fn grants(template: &Template, function: &str) -> Vec<Grant> {
    template
        .policies(function)
        .iter()
        .flat_map(|policy| {
            let statements = &policy["Statement"];
            if statements.is_badvalue() {
                policy_template(policy)
            } else {
                statements.as_vec().into_iter().flatten().map(statement).collect()
            }
        })
        .collect()
}

fn statement(s: &Yaml) -> Grant {
    assert_eq!(
        s["Effect"].as_str(),
        Some("Allow"),
        "only Allow statements are modelled: {s:?}"
    );
    let actions = match &s["Action"] {
        Yaml::Array(list) => list.iter().filter_map(|a| a.as_str().map(str::to_owned)).collect(),
        Yaml::String(one) => vec![one.clone()],
        other => panic!("an Action that is not a list or a string: {other:?}"),
    };
    let resource = s["Resource"].as_str().expect("one Resource per statement");
    let leading_keys = match &s["Condition"] {
        Yaml::BadValue => None,
        condition => {
            let keys = &condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"];
            let keys = keys
                .as_vec()
                .unwrap_or_else(|| panic!("a condition that is not modelled: {condition:?}"));
            Some(keys.iter().filter_map(|k| k.as_str().map(str::to_owned)).collect())
        }
    };
    Grant {
        actions,
        resource: logical_resource(resource),
        leading_keys,
    }
}

/// `X.Arn` → `X`; `${X.Arn}/index/*` → `X/index/*`.
fn logical_resource(reference: &str) -> String {
    let plain = reference.replace("${", "").replace('}', "");
    match plain.split_once('/') {
        Some((arn, rest)) => format!("{}/{rest}", arn.trim_end_matches(".Arn")),
        None => plain.trim_end_matches(".Arn").to_owned(),
    }
}

/// The SAM policy templates the template uses, as SAM expands them.
fn policy_template(policy: &Yaml) -> Vec<Grant> {
    let (name, args) = policy
        .as_hash()
        .and_then(|h| h.iter().next())
        .unwrap_or_else(|| panic!("a policy that is not modelled: {policy:?}"));
    let name = name.as_str().unwrap_or_default();
    let target = |key: &str| {
        let value = args[key].as_str().unwrap_or_else(|| panic!("{name} without {key}"));
        value.split('.').next().unwrap_or_default().to_owned()
    };
    let (actions, resource): (&[&str], String) = match name {
        "SQSSendMessagePolicy" => (&["sqs:SendMessage*"], target("QueueName")),
        "SQSPollerPolicy" => (
            &[
                "sqs:ChangeMessageVisibility",
                "sqs:ChangeMessageVisibilityBatch",
                "sqs:DeleteMessage",
                "sqs:DeleteMessageBatch",
                "sqs:GetQueueAttributes",
                "sqs:ReceiveMessage",
            ],
            target("QueueName"),
        ),
        "SNSPublishMessagePolicy" => (&["sns:Publish"], target("TopicName")),
        other => panic!("the policy template {other} is not modelled"),
    };
    vec![Grant {
        actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        resource,
        leading_keys: None,
    }]
}

/// The accesses no grant allows. `logical` maps a physical name to its logical id.
pub fn denied<'a>(
    grants: &[Grant],
    accesses: impl IntoIterator<Item = &'a Access>,
    logical: &HashMap<String, String>,
) -> Vec<Access> {
    accesses
        .into_iter()
        .filter(|a| !grants.iter().any(|g| allows(g, a, logical)))
        .cloned()
        .collect()
}

fn allows(grant: &Grant, access: &Access, logical: &HashMap<String, String>) -> bool {
    let (base, suffix) = match access.resource.split_once('/') {
        Some((base, suffix)) => (base, Some(suffix)),
        None => (access.resource.as_str(), None),
    };
    let Some(id) = logical.get(base) else { return false };
    let resource = match suffix {
        Some(suffix) => format!("{id}/{suffix}"),
        None => id.clone(),
    };
    let action_ok = grant
        .actions
        .iter()
        .any(|a| glob(&a.to_lowercase(), &access.action.to_lowercase()));
    let keys_ok = match (&grant.leading_keys, &access.leading_key) {
        (None, _) => true,
        (Some(patterns), Some(key)) => patterns.iter().any(|p| glob(p, key)),
        // A conditioned grant never covers a call whose key we could not see.
        (Some(_), None) => false,
    };
    action_ok && glob(&grant.resource, &resource) && keys_ok
}

/// `*` matches any run of characters; nothing else is special.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| glob(rest, &tail[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names() -> HashMap<String, String> {
        [
            ("t-sessions", "SessionsTable"),
            ("t-merchants", "MerchantsTable"),
            ("t-deliveries", "DeliveriesTable"),
            ("t-order-updates", "OrderUpdatesQueue"),
            ("t-replay-steps", "ReplayStepsQueue"),
        ]
        .into_iter()
        .map(|(p, l)| (p.to_owned(), l.to_owned()))
        .collect()
    }

    fn denied_for(binary: &str, service: &str, operation: &str, body: Value) -> Vec<Access> {
        let template = Template::load();
        let grants = grants(&template, &template.function_of_binary(binary));
        let body = match service {
            "SNS" => body.as_str().unwrap_or_default().as_bytes().to_vec(),
            _ => serde_json::to_vec(&body).unwrap(),
        };
        denied(&grants, &accesses(service, operation, &body), &names())
    }

    #[test]
    fn what_the_template_allows_passes_and_nothing_else() {
        let append =
            json!({"TransactItems": [{"Put": {"TableName": "t-sessions", "Item": {"session_id": {"S": "cs_1"}}}}]});
        assert!(denied_for("session-manager", "DynamoDB", "TransactWriteItems", append.clone()).is_empty());
        assert_eq!(
            denied_for("event-projector", "DynamoDB", "TransactWriteItems", append).len(),
            1,
            "the projector may not write events"
        );
        let rewrite = json!({"TableName": "t-sessions", "Key": {"session_id": {"S": "cs_1"}}});
        assert_eq!(
            denied_for("session-manager", "DynamoDB", "UpdateItem", rewrite).len(),
            1,
            "the event store is append-only"
        );
        let index = json!({"TableName": "t-deliveries", "IndexName": "by_event"});
        assert_eq!(
            denied_for("session-manager", "DynamoDB", "Query", index).len(),
            1,
            "a table's grant does not cover its indexes"
        );
        let health = json!({"TableName": "t-merchants", "Item": {"pk": {"S": "merchant#m_1"}}});
        assert!(denied_for("webhook-dispatcher", "DynamoDB", "PutItem", health).is_empty());
        let key = json!({"TableName": "t-merchants", "Item": {"pk": {"S": "apikey#abc"}}});
        assert_eq!(
            denied_for("webhook-dispatcher", "DynamoDB", "PutItem", key).len(),
            1,
            "the dispatcher writes merchants' items only"
        );
        let job = json!({"TableName": "t-merchants", "Item": {"pk": {"S": "merchant#m_1"}}});
        assert!(denied_for("replay-runner", "DynamoDB", "PutItem", job).is_empty());
        let key = json!({"TableName": "t-merchants", "Item": {"pk": {"S": "apikey#abc"}}});
        assert_eq!(
            denied_for("replay-runner", "DynamoDB", "PutItem", key).len(),
            1,
            "the replay runner writes merchants' items only"
        );
        let event = json!({"TableName": "t-sessions", "Item": {"session_id": {"S": "cs_1"}}});
        assert_eq!(
            denied_for("replay-runner", "DynamoDB", "PutItem", event).len(),
            1,
            "the replay runner reads events, never writes them"
        );
        let batch = json!({"QueueUrl": "http://q/123/t-order-updates", "Entries": []});
        assert!(
            denied_for(
                "webhook-dispatcher",
                "SQS",
                "ChangeMessageVisibilityBatch",
                batch.clone()
            )
            .is_empty()
        );
        assert!(
            denied_for("session-manager", "SQS", "SendMessageBatch", batch.clone()).is_empty(),
            "the API queues test events for the dispatcher"
        );
        assert_eq!(
            denied_for("session-manager", "SQS", "ReceiveMessage", batch.clone()).len(),
            1,
            "but takes nothing off its queue"
        );
        assert!(denied_for("replay-runner", "SQS", "SendMessageBatch", batch.clone()).is_empty());
        let steps = json!({"QueueUrl": "http://q/123/t-replay-steps", "Entries": []});
        assert!(denied_for("session-manager", "SQS", "SendMessage", steps.clone()).is_empty());
        assert_eq!(
            denied_for("session-manager", "SQS", "ReceiveMessage", steps.clone()).len(),
            1
        );
        assert!(denied_for("replay-runner", "SQS", "ReceiveMessage", steps).is_empty());
    }

    #[test]
    fn sns_requests_name_their_topic_percent_encoded() {
        let body = "Action=PublishBatch&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A1%3At-events&X=1";
        assert_eq!(
            accesses("SNS", "PublishBatch", body.as_bytes()),
            vec![access("sns:Publish".into(), "t-events".into(), None)]
        );
        assert!(glob("merchant#*", "merchant#m_1") && !glob("merchant#*", "apikey#x"));
        assert!(glob("sqs:SendMessage*", "sqs:SendMessage") && !glob("sqs:Send", "sqs:SendMessage"));
    }
}
