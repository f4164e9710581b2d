//! The table port on DynamoDB: one table, string keys `pk` and `sk`, a `version` number for
//! optimistic concurrency, and `expires_at` (Unix seconds) as the TTL attribute. The item's
//! attributes sit beside those four as native DynamoDB attributes, so the console shows them.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use cvops_core::ports::{Item, Page, Table, TableError, RESERVED_ATTRIBUTES};
use serde_json::{Map, Number, Value};

use crate::errors::{describe, is_retryable};

const PK: &str = "pk";
const SK: &str = "sk";
const VERSION: &str = "version";
/// The attribute the table's TimeToLiveSpecification names.
pub const TTL_ATTRIBUTE: &str = "expires_at";
const RESERVED: [&str; 4] = RESERVED_ATTRIBUTES;
/// How often `put` retries after another writer slipped in between its read and its write.
const PUT_RETRIES: usize = 10;

#[derive(Debug, Clone)]
pub struct DynamoTable {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoTable {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn now_secs() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
    }

    /// PutItem under `condition`, writing `version`.
    async fn put_conditionally(
        &self,
        item: Item,
        version: u64,
        condition: &str,
        values: HashMap<String, AttributeValue>,
    ) -> Result<u64, TableError> {
        let (pk, sk) = (item.pk.clone(), item.sk.clone());
        let mut attributes = to_attributes(&item)?;
        attributes.insert(VERSION.into(), number(version as i64));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(attributes))
            .condition_expression(condition)
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(version),
            Err(e) if is_condition_failure(&e) => Err(TableError::Conflict { pk, sk }),
            Err(e) => Err(backend("PutItem", e)),
        }
    }

    async fn stored_version(&self, pk: &str, sk: &str) -> Result<Option<u64>, TableError> {
        Ok(self.get(pk, sk).await?.map(|item| item.version))
    }
}

fn number(n: i64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn backend<E, R>(operation: &str, error: SdkError<E, R>) -> TableError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    TableError::Backend { message: describe(operation, &error), retryable: is_retryable(&error), source: Some(Box::new(error)) }
}

fn is_condition_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    matches!(error, SdkError::ServiceError(e) if e.err().code() == Some("ConditionalCheckFailedException"))
}

fn to_attribute(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(items) => AttributeValue::L(items.iter().map(to_attribute).collect()),
        Value::Object(map) => AttributeValue::M(map.iter().map(|(k, v)| (k.clone(), to_attribute(v))).collect()),
    }
}

fn from_attribute(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => n
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| n.parse::<u64>().map(Value::from))
            .unwrap_or_else(|_| n.parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number).unwrap_or(Value::Null)),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::L(items) => Value::Array(items.iter().map(from_attribute).collect()),
        AttributeValue::M(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), from_attribute(v))).collect()),
        AttributeValue::Ss(items) => Value::Array(items.iter().cloned().map(Value::String).collect()),
        _ => Value::Null,
    }
}

fn to_attributes(item: &Item) -> Result<HashMap<String, AttributeValue>, TableError> {
    let mut out = HashMap::with_capacity(item.attrs.len() + 4);
    for (name, value) in &item.attrs {
        if RESERVED.contains(&name.as_str()) {
            return Err(TableError::Malformed {
                pk: item.pk.clone(),
                sk: item.sk.clone(),
                why: format!("attribute name {name} is reserved"),
            });
        }
        out.insert(name.clone(), to_attribute(value));
    }
    out.insert(PK.into(), AttributeValue::S(item.pk.clone()));
    out.insert(SK.into(), AttributeValue::S(item.sk.clone()));
    if let Some(expires_at) = item.expires_at {
        out.insert(TTL_ATTRIBUTE.into(), number(expires_at));
    }
    Ok(out)
}

fn from_attributes(mut attributes: HashMap<String, AttributeValue>) -> Result<Item, TableError> {
    let mut take_string = |name: &str| match attributes.remove(name) {
        Some(AttributeValue::S(s)) => Ok(s),
        _ => Err(TableError::Malformed { pk: String::new(), sk: String::new(), why: format!("the item has no string {name}") }),
    };
    let (pk, sk) = (take_string(PK)?, take_string(SK)?);
    let as_i64 = |v: Option<AttributeValue>| v.and_then(|v| v.as_n().ok().and_then(|n| n.parse::<i64>().ok()));
    let version = as_i64(attributes.remove(VERSION)).unwrap_or(0).max(0) as u64;
    let expires_at = as_i64(attributes.remove(TTL_ATTRIBUTE));
    let attrs: Map<String, Value> = attributes.iter().map(|(k, v)| (k.clone(), from_attribute(v))).collect();
    Ok(Item { pk, sk, version, expires_at, attrs })
}

fn live(item: &Item, now: i64) -> bool {
    item.expires_at.is_none_or(|at| at > now)
}

#[async_trait]
impl Table for DynamoTable {
    /// DynamoDB cannot bump a number inside PutItem, so an unconditional put reads the version and
    /// writes conditionally on it, retrying if another writer got in between.
    async fn put(&self, item: Item) -> Result<u64, TableError> {
        for _ in 0..PUT_RETRIES {
            let result = match self.stored_version(&item.pk, &item.sk).await? {
                Some(version) => self.put_if_version(item.clone(), version).await,
                None => self.put_if_absent(item.clone()).await,
            };
            match result {
                Err(TableError::Conflict { .. }) => continue,
                other => return other,
            }
        }
        Err(TableError::Conflict { pk: item.pk, sk: item.sk })
    }

    /// One conditional PutItem. An expired item DynamoDB still holds counts as absent and is
    /// replaced at version 1.
    async fn put_if_absent(&self, item: Item) -> Result<u64, TableError> {
        let values = HashMap::from([(":now".to_owned(), number(Self::now_secs()))]);
        self.put_conditionally(item, 1, "attribute_not_exists(pk) OR expires_at <= :now", values).await
    }

    async fn put_if_version(&self, item: Item, expected_version: u64) -> Result<u64, TableError> {
        let values =
            HashMap::from([(":v".to_owned(), number(expected_version as i64)), (":now".to_owned(), number(Self::now_secs()))]);
        self.put_conditionally(
            item,
            expected_version + 1,
            "version = :v AND (attribute_not_exists(expires_at) OR expires_at > :now)",
            values,
        )
        .await
    }

    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, TableError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(pk.to_owned()))
            .key(SK, AttributeValue::S(sk.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("GetItem", e))?;
        let now = Self::now_secs();
        Ok(out.item.map(from_attributes).transpose()?.filter(|item| live(item, now)))
    }

    async fn query(&self, pk: &str, sk_prefix: &str, limit: usize, cursor: Option<String>) -> Result<Page, TableError> {
        let mut values =
            HashMap::from([(":pk".to_owned(), AttributeValue::S(pk.to_owned())), (":now".to_owned(), number(Self::now_secs()))]);
        // begins_with refuses an empty string: an empty prefix is the whole partition.
        let key_condition = if sk_prefix.is_empty() {
            "pk = :pk"
        } else {
            values.insert(":prefix".into(), AttributeValue::S(sk_prefix.to_owned()));
            "pk = :pk AND begins_with(sk, :prefix)"
        };
        let start = cursor
            .map(|sk| HashMap::from([(PK.to_owned(), AttributeValue::S(pk.to_owned())), (SK.to_owned(), AttributeValue::S(sk))]));
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(key_condition)
            .filter_expression("attribute_not_exists(expires_at) OR expires_at > :now")
            .set_expression_attribute_values(Some(values))
            .set_exclusive_start_key(start)
            .limit(limit.clamp(1, 1000) as i32)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("Query", e))?;
        let items = out.items.unwrap_or_default().into_iter().map(from_attributes).collect::<Result<Vec<_>, _>>()?;
        let next = out.last_evaluated_key.and_then(|mut key| match key.remove(SK) {
            Some(AttributeValue::S(sk)) => Some(sk),
            _ => None,
        });
        Ok(Page { items, next })
    }

    async fn add(&self, pk: &str, sk: &str, field: &str, delta: i64) -> Result<i64, TableError> {
        if RESERVED.contains(&field) {
            return Err(TableError::Malformed { pk: pk.into(), sk: sk.into(), why: format!("counter name {field} is reserved") });
        }
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(pk.to_owned()))
            .key(SK, AttributeValue::S(sk.to_owned()))
            .update_expression("ADD #field :delta, #version :one")
            .expression_attribute_names("#field", field)
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_values(":delta", number(delta))
            .expression_attribute_values(":one", number(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| backend("UpdateItem", e))?;
        out.attributes().and_then(|a| a.get(field)).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok()).ok_or_else(
            || TableError::Malformed { pk: pk.into(), sk: sk.into(), why: format!("ADD returned no number for {field}") },
        )
    }

    async fn add_all(&self, pk: &str, sk: &str, deltas: &[(String, i64)], expires_at: Option<i64>) -> Result<(), TableError> {
        if let Some((field, _)) = deltas.iter().find(|(field, _)| RESERVED.contains(&field.as_str())) {
            return Err(TableError::Malformed { pk: pk.into(), sk: sk.into(), why: format!("counter name {field} is reserved") });
        }
        if deltas.is_empty() {
            return Ok(());
        }
        // Placeholders (#f0, :d0, ...) keep any field name legal in the expression.
        let clauses: Vec<String> = (0..deltas.len()).map(|i| format!("#f{i} :d{i}")).collect();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(pk.to_owned()))
            .key(SK, AttributeValue::S(sk.to_owned()))
            .update_expression(format!("ADD {}, #version :one", clauses.join(", ")))
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_values(":one", number(1));
        if let Some(at) = expires_at {
            update = update
                .update_expression(format!("ADD {}, #version :one SET #ttl = :ttl", clauses.join(", ")))
                .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                .expression_attribute_values(":ttl", number(at));
        }
        for (i, (field, delta)) in deltas.iter().enumerate() {
            update = update
                .expression_attribute_names(format!("#f{i}"), field)
                .expression_attribute_values(format!(":d{i}"), number(*delta));
        }
        update.send().await.map_err(|e| backend("UpdateItem", e))?;
        Ok(())
    }

    async fn delete(&self, pk: &str, sk: &str) -> Result<(), TableError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(pk.to_owned()))
            .key(SK, AttributeValue::S(sk.to_owned()))
            .send()
            .await
            .map_err(|e| backend("DeleteItem", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_round_trip_through_attribute_values() {
        let value = serde_json::json!({"s": "x", "i": -3, "f": 1.5, "b": true, "n": null, "l": [1, "a"], "m": {"k": 2}});
        let Value::Object(map) = value.clone() else { unreachable!() };
        let item = Item { pk: "p".into(), sk: "s".into(), version: 0, expires_at: Some(9), attrs: map };
        let back = from_attributes(to_attributes(&item).unwrap()).unwrap();
        assert_eq!(Value::Object(back.attrs), value);
        assert_eq!((back.pk.as_str(), back.sk.as_str(), back.expires_at), ("p", "s", Some(9)));
    }
}
