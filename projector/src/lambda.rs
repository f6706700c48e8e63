//! DynamoDB stream events in, partial batch failures out.

use crate::Projector;
use aws_backend::stored_event;
use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use checkout::event::StreamRecord;

/// What the function reads from its environment, for `--help`.
pub const USAGE: aws_backend::lambda_process::Usage = aws_backend::lambda_process::Usage {
    name: "event-projector",
    about: "the sessions table's stream → the read model and the checkout-events topic",
    env: &[(
        "CHECKOUT_EVENTS_TOPIC_ARN",
        "required: the SNS topic every event is published to",
    )],
};

/// The event envelope an item of the sessions table carries in its `event` attribute.
pub fn records(event: &StreamEvent) -> Vec<StreamRecord> {
    event
        .records
        .iter()
        .map(|record| {
            let sequence = record.change.sequence_number.clone().unwrap_or_default();
            let decoded = match record.change.new_image.get(stored_event::ATTRIBUTE) {
                Some(serde_dynamo::AttributeValue::B(bytes)) => stored_event::decode(bytes),
                // Items written before the codec.
                Some(serde_dynamo::AttributeValue::S(json)) => stored_event::decode_json(json),
                _ => {
                    return StreamRecord {
                        sequence,
                        event: Err("record carries no event".to_owned()),
                    };
                }
            };
            StreamRecord {
                sequence,
                event: decoded.map_err(|e| e.to_string()),
            }
        })
        .collect()
}

pub async fn handle(projector: &Projector, event: StreamEvent) -> DynamoDbEventResponse {
    let projection = projector.project(&records(&event)).await;
    let mut response = DynamoDbEventResponse::default();
    if let Some(sequence) = projection.retry_from {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(sequence);
        response.batch_item_failures.push(failure);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use checkout::testkit::{event, merchant};

    /// A stream event as Lambda delivers it (DynamoDB JSON), with one good and one bad record.
    fn stream_event(envelope: &str, compressed: &str) -> StreamEvent {
        let record = |seq: &str, image: serde_json::Value| {
            serde_json::json!({
                "eventID": seq, "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1764064800.0,
                    "Keys": {"session_id": {"S": "cs_1"}, "version": {"N": "1"}},
                    "NewImage": image,
                    "SequenceNumber": seq, "SizeBytes": 100, "StreamViewType": "NEW_IMAGE"
                },
                "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/dev-acp-sessions/stream/x"
            })
        };
        serde_json::from_value(serde_json::json!({"Records": [
            record("100", serde_json::json!({"session_id": {"S": "cs_1"}, "event": {"S": envelope}})),
            record("200", serde_json::json!({"session_id": {"S": "cs_2"}})),
            record("300", serde_json::json!({"session_id": {"S": "cs_1"}, "event": {"B": compressed}})),
        ]}))
        .expect("a valid DynamoDB stream event")
    }

    #[test]
    fn records_carry_the_stored_envelope_or_say_why_not() {
        let e = event(&merchant(), None, 1);
        let compressed = base64::engine::general_purpose::STANDARD.encode(stored_event::encode(&e).unwrap());
        let records = records(&stream_event(&serde_json::to_string(&e).unwrap(), &compressed));
        assert_eq!(records[0].sequence, "100");
        assert_eq!(records[0].event.as_ref().unwrap(), &e);
        assert_eq!(records[1].sequence, "200");
        assert!(records[1].event.is_err());
        assert_eq!(
            records[2].event.as_ref().unwrap(),
            &e,
            "the compressed item, base64 in the event"
        );
    }
}
