//! The JSON messages of etcd v3's gRPC gateway that the coordinator uses: the
//! protobuf messages of `etcdserverpb` in proto3's JSON mapping, in which 64-bit
//! integers are strings, bytes are base64, and fields at their default value are left
//! out (a transaction that failed has no `succeeded`; a missing key has no `kvs`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes, base64 in JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map(Bytes)
            .map_err(serde::de::Error::custom)
    }
}

/// An int64, a string in JSON (a number is accepted too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Int(pub i64);

impl Serialize for Int {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Number(i64),
        }
        match Either::deserialize(d)? {
            Either::Number(n) => Ok(Int(n)),
            Either::Text(text) => text.parse().map(Int).map_err(serde::de::Error::custom),
        }
    }
}

/// `ResponseHeader`: the store's revision when the request was served.
#[derive(Debug, Default, Deserialize)]
pub struct Header {
    /// The revision.
    #[serde(default)]
    pub revision: Int,
}

/// `KeyValue`.
#[derive(Debug, Default, Deserialize)]
pub struct KeyValue {
    /// The key.
    #[serde(default)]
    pub key: Bytes,
    /// The value.
    #[serde(default)]
    pub value: Bytes,
    /// The revision of the key's creation.
    #[serde(default)]
    pub create_revision: Int,
    /// The revision of its last change.
    #[serde(default)]
    pub mod_revision: Int,
    /// The number of changes since its creation (1 when created).
    #[serde(default)]
    pub version: Int,
    /// The lease it is bound to (0: none).
    #[serde(default)]
    pub lease: Int,
}

/// `RangeRequest`: one key, or the keys in `[key, range_end)`.
#[derive(Debug, Serialize)]
pub struct RangeRequest {
    /// The first key.
    pub key: Bytes,
    /// The end of the range (exclusive); absent for one key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range_end: Option<Bytes>,
}

/// `RangeResponse`.
#[derive(Debug, Default, Deserialize)]
pub struct RangeResponse {
    /// When it was served.
    #[serde(default)]
    pub header: Header,
    /// The keys found.
    #[serde(default)]
    pub kvs: Vec<KeyValue>,
}

/// `PutRequest`.
#[derive(Debug, Serialize)]
pub struct PutRequest {
    /// The key.
    pub key: Bytes,
    /// The value.
    pub value: Bytes,
    /// The lease to bind the key to (0: none).
    pub lease: Int,
}

/// `DeleteRangeRequest` of one key.
#[derive(Debug, Serialize)]
pub struct DeleteRequest {
    /// The key.
    pub key: Bytes,
}

/// `Compare`: one condition of a transaction, always "equal".
#[derive(Debug, Serialize)]
pub struct Compare {
    /// The key compared.
    pub key: Bytes,
    /// `"CREATE"`, `"VERSION"` or `"VALUE"`.
    pub target: &'static str,
    /// Always `"EQUAL"`.
    pub result: &'static str,
    /// For `CREATE`: the create revision (0: the key is absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_revision: Option<Int>,
    /// For `VERSION`: the number of changes (0: the key is absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Int>,
    /// For `VALUE`: the value (fails on an absent key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Bytes>,
}

impl Compare {
    /// The key was created at `revision` (0: it is absent).
    pub fn created_at(key: &[u8], revision: i64) -> Self {
        Compare {
            key: Bytes(key.to_vec()),
            target: "CREATE",
            result: "EQUAL",
            create_revision: Some(Int(revision)),
            version: None,
            value: None,
        }
    }

    /// The key was changed `version` times since created (0: it is absent).
    pub fn version_is(key: &[u8], version: i64) -> Self {
        Compare {
            key: Bytes(key.to_vec()),
            target: "VERSION",
            result: "EQUAL",
            create_revision: None,
            version: Some(Int(version)),
            value: None,
        }
    }

    /// The key holds exactly `value`.
    pub fn value_is(key: &[u8], value: Vec<u8>) -> Self {
        Compare {
            key: Bytes(key.to_vec()),
            target: "VALUE",
            result: "EQUAL",
            create_revision: None,
            version: None,
            value: Some(Bytes(value)),
        }
    }
}

/// `RequestOp`: one operation of a transaction's branch.
#[derive(Debug, Serialize)]
pub enum RequestOp {
    /// Read keys.
    #[serde(rename = "request_range")]
    Range(RangeRequest),
    /// Write a key.
    #[serde(rename = "request_put")]
    Put(PutRequest),
    /// Delete a key.
    #[serde(rename = "request_delete_range")]
    Delete(DeleteRequest),
}

impl RequestOp {
    /// Reads one key.
    pub fn get(key: &[u8]) -> Self {
        RequestOp::Range(RangeRequest {
            key: Bytes(key.to_vec()),
            range_end: None,
        })
    }

    /// Writes one key, bound to `lease` (0: none).
    pub fn put(key: &[u8], value: Vec<u8>, lease: i64) -> Self {
        RequestOp::Put(PutRequest {
            key: Bytes(key.to_vec()),
            value: Bytes(value),
            lease: Int(lease),
        })
    }

    /// Deletes one key.
    pub fn delete(key: &[u8]) -> Self {
        RequestOp::Delete(DeleteRequest {
            key: Bytes(key.to_vec()),
        })
    }
}

/// `TxnRequest`: if every compare holds, the success branch runs, else the failure
/// branch, atomically.
#[derive(Debug, Serialize)]
pub struct TxnRequest {
    /// The conditions.
    pub compare: Vec<Compare>,
    /// Run when all hold.
    pub success: Vec<RequestOp>,
    /// Run otherwise.
    pub failure: Vec<RequestOp>,
}

/// `ResponseOp`: the result of one operation of the branch that ran.
#[derive(Debug, Default, Deserialize)]
pub struct ResponseOp {
    /// The result of a range.
    #[serde(default)]
    pub response_range: Option<RangeResponse>,
}

/// `TxnResponse`.
#[derive(Debug, Default, Deserialize)]
pub struct TxnResponse {
    /// The revision after the transaction.
    #[serde(default)]
    pub header: Header,
    /// Whether the compares held (the success branch ran).
    #[serde(default)]
    pub succeeded: bool,
    /// One result per operation of the branch that ran.
    #[serde(default)]
    pub responses: Vec<ResponseOp>,
}

impl TxnResponse {
    /// The keys read by the `index`th operation of the branch that ran (empty if it
    /// found none).
    pub fn range(&self, index: usize) -> &[KeyValue] {
        self.responses
            .get(index)
            .and_then(|op| op.response_range.as_ref())
            .map_or(&[], |r| r.kvs.as_slice())
    }

    /// The first key read by the `index`th operation, taken out of the response.
    pub fn take_first(&mut self, index: usize) -> Option<KeyValue> {
        self.responses
            .get_mut(index)
            .and_then(|op| op.response_range.as_mut())
            .and_then(|r| (!r.kvs.is_empty()).then(|| r.kvs.swap_remove(0)))
    }
}

/// `LeaseGrantRequest`.
#[derive(Debug, Serialize)]
pub struct LeaseGrantRequest {
    /// The requested time to live, in seconds.
    #[serde(rename = "TTL")]
    pub ttl: Int,
    /// 0: let etcd choose the id.
    #[serde(rename = "ID")]
    pub id: Int,
}

/// `LeaseGrantResponse`.
#[derive(Debug, Default, Deserialize)]
pub struct LeaseGrantResponse {
    /// The lease's id.
    #[serde(rename = "ID", default)]
    pub id: Int,
    /// The granted time to live, in seconds (possibly more than requested).
    #[serde(rename = "TTL", default)]
    pub ttl: Int,
    /// Set when the grant failed.
    #[serde(default)]
    pub error: String,
}

/// `LeaseKeepAliveRequest` and `LeaseRevokeRequest`: a lease's id.
#[derive(Debug, Serialize)]
pub struct LeaseId {
    /// The lease.
    #[serde(rename = "ID")]
    pub id: Int,
}

/// `LeaseKeepAliveResponse`.
#[derive(Debug, Default, Deserialize)]
pub struct LeaseKeepAliveResponse {
    /// The remaining time to live in seconds after the refresh; 0 (absent) when the
    /// lease no longer exists.
    #[serde(rename = "TTL", default)]
    pub ttl: Int,
}

/// The keep-alive stream's answer to one request: `{"result": ...}`, or an error
/// object in the stream.
#[derive(Debug, Default, Deserialize)]
pub struct KeepAliveStreamItem {
    /// The answer.
    #[serde(default)]
    pub result: Option<LeaseKeepAliveResponse>,
    /// An error reported inside the stream.
    #[serde(default)]
    pub error: Option<serde_json::Value>,
}

/// An empty answer (`DeleteRange`, `LeaseRevoke`: only the header matters).
#[derive(Debug, Default, Deserialize)]
pub struct Empty {}

/// The gateway's error body: `{"error": ..., "message": ..., "code": ...}`.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorBody {
    /// The message.
    #[serde(default)]
    pub message: String,
    /// The gRPC status code (5: not found).
    #[serde(default)]
    pub code: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_transaction_reads_as_not_succeeded_with_its_ranges() {
        let body = r#"{"header":{"revision":"2"},"responses":[{"response_range":{"header":{"revision":"2"},"kvs":[{"key":"L3dlaXIveA==","create_revision":"2","mod_revision":"2","version":"1","value":"aGVsbG8=","lease":"4111120392153036551"}],"count":"1"}}]}"#;
        let txn: TxnResponse = serde_json::from_str(body).unwrap();
        assert!(!txn.succeeded);
        let kv = &txn.range(0)[0];
        assert_eq!(kv.key.0, b"/weir/x");
        assert_eq!(kv.value.0, b"hello");
        assert_eq!(kv.create_revision, Int(2));
        assert_eq!(kv.lease, Int(4_111_120_392_153_036_551));
        assert!(txn.range(1).is_empty());
    }

    #[test]
    fn a_compare_serialises_in_the_gateway_mapping() {
        let json = serde_json::to_string(&Compare::created_at(b"k", 0)).unwrap();
        assert_eq!(
            json,
            r#"{"key":"aw==","target":"CREATE","result":"EQUAL","create_revision":"0"}"#
        );
        let op = serde_json::to_string(&RequestOp::put(b"k", b"v".to_vec(), 7)).unwrap();
        assert_eq!(
            op,
            r#"{"request_put":{"key":"aw==","value":"dg==","lease":"7"}}"#
        );
    }
}
