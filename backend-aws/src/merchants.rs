//! Merchants, their webhook endpoints and each endpoint's latest replay, in the merchants table.

use crate::dynamo::{DynamoStore, Item, conditional_put, doc, get_s, n, revision_condition, s, to_doc, with};
use crate::dynamo::{changed_meanwhile, first_condition_failed};
use crate::error::{corrupt, failed_call, unavailable};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use checkout::clock::Timestamp;
use checkout::ids::{EndpointId, MerchantId};
use checkout::merchant::Merchant;
use checkout::ports::{EndpointStore, KeyRegistry, MerchantStore, ReplayStore, StoreError};
use checkout::replay::{ReplayJob, ReplayStatus};
use checkout::signing_key::PublishedKey;
use checkout::webhook_endpoint::WebhookEndpoint;
use std::collections::HashMap;

// The merchants table holds, under partition `merchant#{id}`, the profile (sort key `profile`)
// the webhook endpoints (`endpoint#{id}`) and each endpoint's latest replay
// (`replay#{endpoint id}`); under `apikey#{hash}`, the key's merchant; under `webhook-keys`,
// one item per ed25519 public key (sort key: its kid), written in the transaction of its
// endpoint's write, with `expires_at` (the table's TTL) once it stops signing. One partition,
// so `/.well-known/webhook-keys` is one query; it names no merchant.
const PROFILE: &str = "profile";
const API_KEY: &str = "apikey";
const KEY_REGISTRY: &str = "webhook-keys";

fn registry_key(kid: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(KEY_REGISTRY)), ("sk".to_owned(), s(kid))])
}

/// The transaction item that takes a key out of the registry.
fn unpublish(table: &str, kid: &str) -> Result<TransactWriteItem, StoreError> {
    let delete = Delete::builder()
        .table_name(table)
        .set_key(Some(registry_key(kid)))
        .build()
        .map_err(unavailable)?;
    Ok(TransactWriteItem::builder().delete(delete).build())
}

/// The registry item of a key: its published form, and its end for the table's TTL.
fn registry_item(key: &PublishedKey) -> Result<Item, StoreError> {
    let mut item = with(registry_key(&key.kid), "doc", to_doc(key)?);
    if let Some(end) = key.expires_at {
        item.insert("expires_at".to_owned(), n(end.timestamp()));
    }
    Ok(item)
}

fn merchant_key(id: &MerchantId, sk: &str) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(&format!("merchant#{id}"))),
        ("sk".to_owned(), s(sk)),
    ])
}

fn api_key_key(hash: &str) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(&format!("apikey#{hash}"))),
        ("sk".to_owned(), s(API_KEY)),
    ])
}

fn endpoint_sk(id: &EndpointId) -> String {
    format!("endpoint#{id}")
}

fn replay_sk(endpoint: &EndpointId) -> String {
    format!("replay#{endpoint}")
}

#[async_trait]
impl MerchantStore for DynamoStore {
    async fn put_merchant(&self, merchant: &Merchant) -> Result<(), StoreError> {
        let table = &self.tables.merchants;
        let changed = || StoreError::Changed {
            what: "merchant",
            id: merchant.id.to_string(),
        };
        let previous = self.merchant(&merchant.id).await?;
        if previous.as_ref().map_or(0, |m| m.revision) != merchant.revision {
            return Err(changed());
        }
        let mut next = merchant.clone();
        next.revision += 1;
        let mut profile = with(merchant_key(&merchant.id, PROFILE), "doc", to_doc(&next)?);
        profile.insert("revision".to_owned(), n(next.revision as i64));
        let (condition, values) = revision_condition(merchant.revision);
        let profile = Put::builder()
            .table_name(table)
            .set_item(Some(profile))
            .condition_expression(condition)
            .expression_attribute_names("#revision", "revision")
            .set_expression_attribute_values(values)
            .build()
            .map_err(unavailable)?;
        let api_key = Put::builder()
            .table_name(table)
            .set_item(Some(with(
                api_key_key(&merchant.api_key_hash),
                "merchant_id",
                s(merchant.id.as_str()),
            )))
            .build()
            .map_err(unavailable)?;
        let mut request = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(profile).build())
            .transact_items(TransactWriteItem::builder().put(api_key).build());
        if let Some(old) = previous.filter(|old| old.api_key_hash != merchant.api_key_hash) {
            let delete = Delete::builder()
                .table_name(table)
                .set_key(Some(api_key_key(&old.api_key_hash)))
                .build()
                .map_err(unavailable)?;
            request = request.transact_items(TransactWriteItem::builder().delete(delete).build());
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(err) if first_condition_failed(&err) => Err(changed()),
            Err(err) => Err(failed_call(err)),
        }
    }

    async fn merchant(&self, id: &MerchantId) -> Result<Option<Merchant>, StoreError> {
        let item = self.get(&self.tables.merchants, merchant_key(id, PROFILE)).await?;
        item.map(|item| doc(&item, "merchant")).transpose()
    }

    async fn merchant_by_api_key_hash(&self, api_key_hash: &str) -> Result<Option<Merchant>, StoreError> {
        let Some(item) = self.get(&self.tables.merchants, api_key_key(api_key_hash)).await? else {
            return Ok(None);
        };
        let id = MerchantId::parse(get_s(&item, "merchant_id")?).ok_or_else(|| corrupt("merchant_id"))?;
        self.merchant(&id).await
    }
}

#[async_trait]
impl ReplayStore for DynamoStore {
    async fn start_replay(&self, job: &ReplayJob, now: Timestamp) -> Result<(), StoreError> {
        if job.revision != 0 {
            return Err(replay_changed(job));
        }
        let stale = (now - checkout::replay::ABANDONED_AFTER).timestamp_millis();
        let stored = ReplayJob {
            revision: 1,
            ..job.clone()
        };
        // Free: no replay yet, the last one finished (completed or failed), or one abandoned.
        let condition = "attribute_not_exists(pk) OR #status <> :running OR #updated_ms <= :stale";
        let values = HashMap::from([(":running".to_owned(), s("running")), (":stale".to_owned(), n(stale))]);
        self.write_replay(&stored, condition, values).await
    }

    async fn put_replay(&self, job: &ReplayJob) -> Result<(), StoreError> {
        let stored = ReplayJob {
            revision: job.revision + 1,
            ..job.clone()
        };
        let values = HashMap::from([
            (":id".to_owned(), s(job.id.as_str())),
            (":revision".to_owned(), n(job.revision as i64)),
        ]);
        self.write_replay(&stored, "#replay_id = :id AND #revision = :revision", values)
            .await
    }

    async fn replay(&self, merchant: &MerchantId, endpoint: &EndpointId) -> Result<Option<ReplayJob>, StoreError> {
        let item = self
            .get(&self.tables.merchants, merchant_key(merchant, &replay_sk(endpoint)))
            .await?;
        item.map(|item| doc(&item, "replay")).transpose()
    }
}

fn replay_changed(job: &ReplayJob) -> StoreError {
    StoreError::Changed {
        what: "replay",
        id: job.id.to_string(),
    }
}

impl DynamoStore {
    /// Puts the endpoint's replay under `condition`; the attributes it may name are the job's
    /// `#replay_id`, `#revision`, `#status` and `#updated_ms`, kept beside its document.
    async fn write_replay(
        &self,
        job: &ReplayJob,
        condition: &str,
        values: HashMap<String, AttributeValue>,
    ) -> Result<(), StoreError> {
        let mut item = with(
            merchant_key(&job.merchant_id, &replay_sk(&job.endpoint_id)),
            "doc",
            to_doc(job)?,
        );
        item.insert("replay_id".to_owned(), s(job.id.as_str()));
        item.insert("revision".to_owned(), n(job.revision as i64));
        let status = match job.status {
            ReplayStatus::Running => "running",
            ReplayStatus::Completed => "completed",
            ReplayStatus::Failed => "failed",
        };
        item.insert("status".to_owned(), s(status));
        item.insert("updated_ms".to_owned(), n(job.updated_at.timestamp_millis()));
        let mut request = self
            .client
            .put_item()
            .table_name(&self.tables.merchants)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_values(Some(values));
        for (placeholder, name) in [
            ("#replay_id", "replay_id"),
            ("#revision", "revision"),
            ("#status", "status"),
            ("#updated_ms", "updated_ms"),
        ] {
            if condition.contains(placeholder) {
                request = request.expression_attribute_names(placeholder, name);
            }
        }
        match conditional_put(request.send().await)? {
            true => Ok(()),
            false => Err(replay_changed(job)),
        }
    }
}

#[async_trait]
impl EndpointStore for DynamoStore {
    async fn put_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<(), StoreError> {
        let mut next = endpoint.clone();
        next.revision += 1;
        let mut item = with(
            merchant_key(&endpoint.merchant_id, &endpoint_sk(&endpoint.id)),
            "doc",
            to_doc(&next)?,
        );
        item.insert("revision".to_owned(), n(next.revision as i64));
        let (condition, values) = revision_condition(endpoint.revision);
        let changed = || StoreError::Changed {
            what: "endpoint",
            id: endpoint.id.to_string(),
        };
        // Each key's registry item goes in the same transaction, and the items of the keys this
        // write drops from the record (read from the copy stored now: the write is conditional on
        // that copy's revision) are deleted, so ended keys never pile up until the TTL sweep.
        let table = &self.tables.merchants;
        let stored = self.endpoint(&endpoint.merchant_id, &endpoint.id).await?;
        let stored_kids: Vec<String> = stored
            .filter(|s| s.revision == endpoint.revision)
            .map(|s| s.signing_keys.into_iter().map(|k| k.kid).collect())
            .unwrap_or_default();
        let dropped: Vec<&String> = stored_kids
            .iter()
            .filter(|kid| !endpoint.signing_keys.iter().any(|k| &k.kid == *kid))
            .collect();
        if endpoint.signing_keys.is_empty() && dropped.is_empty() {
            let result = self
                .client
                .put_item()
                .table_name(table)
                .set_item(Some(item))
                .condition_expression(condition)
                .expression_attribute_names("#revision", "revision")
                .set_expression_attribute_values(values)
                .send()
                .await;
            return match conditional_put(result)? {
                true => Ok(()),
                false => Err(changed()),
            };
        }
        let endpoint_put = Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression(condition)
            .expression_attribute_names("#revision", "revision")
            .set_expression_attribute_values(values)
            .build()
            .map_err(unavailable)?;
        let mut request = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(endpoint_put).build());
        for key in &endpoint.signing_keys {
            let put = Put::builder()
                .table_name(table)
                .set_item(Some(registry_item(&key.published())?))
                .build()
                .map_err(unavailable)?;
            request = request.transact_items(TransactWriteItem::builder().put(put).build());
        }
        for kid in &dropped {
            request = request.transact_items(unpublish(table, kid)?);
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(err) if changed_meanwhile(&err) => Err(changed()),
            Err(err) => Err(failed_call(err)),
        }
    }

    async fn endpoint(&self, merchant: &MerchantId, id: &EndpointId) -> Result<Option<WebhookEndpoint>, StoreError> {
        let item = self
            .get(&self.tables.merchants, merchant_key(merchant, &endpoint_sk(id)))
            .await?;
        item.map(|item| doc(&item, "endpoint")).transpose()
    }

    async fn endpoints(&self, merchant: &MerchantId) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let mut endpoints: Vec<WebhookEndpoint> = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.tables.merchants)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(&format!("merchant#{merchant}")))
                .expression_attribute_values(":prefix", s("endpoint#"))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(failed_call)?;
            for item in out.items() {
                endpoints.push(doc(item, "endpoint")?);
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                checkout::webhook_endpoint::sort_oldest_first(&mut endpoints);
                return Ok(endpoints);
            }
        }
    }

    async fn delete_endpoint(&self, merchant: &MerchantId, id: &EndpointId) -> Result<bool, StoreError> {
        // Its keys leave the registry with it, in one transaction conditional on the endpoint
        // as read (a rotation between the read and the delete could add a key).
        for _ in 0..DELETE_TRIES {
            let Some(endpoint) = self.endpoint(merchant, id).await? else {
                return Ok(false);
            };
            let table = &self.tables.merchants;
            let (condition, values) = revision_condition(endpoint.revision);
            let delete = Delete::builder()
                .table_name(table)
                .set_key(Some(merchant_key(merchant, &endpoint_sk(id))))
                .condition_expression(condition)
                .expression_attribute_names("#revision", "revision")
                .set_expression_attribute_values(values)
                .build()
                .map_err(unavailable)?;
            let mut request = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().delete(delete).build());
            for key in &endpoint.signing_keys {
                request = request.transact_items(unpublish(table, &key.kid)?);
            }
            match request.send().await {
                Ok(_) => return Ok(true),
                Err(err) if changed_meanwhile(&err) => continue,
                Err(err) => return Err(failed_call(err)),
            }
        }
        Err(StoreError::Changed {
            what: "endpoint",
            id: id.to_string(),
        })
    }
}

#[async_trait]
impl KeyRegistry for DynamoStore {
    async fn published_keys(&self) -> Result<Vec<PublishedKey>, StoreError> {
        let mut keys = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.tables.merchants)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(KEY_REGISTRY))
                // Ended keys linger until the TTL sweep: not worth sending back.
                .filter_expression("attribute_not_exists(expires_at) OR expires_at > :now")
                .expression_attribute_values(":now", n(checkout::clock::now().timestamp()))
                // A receiver asks right after a key appeared (an unknown kid): it must be there.
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(failed_call)?;
            for item in out.items() {
                keys.push(doc(item, "published key")?);
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(keys);
            }
        }
    }
}

/// How often a delete is tried again when the endpoint changed between its read and the delete.
const DELETE_TRIES: usize = 20;
