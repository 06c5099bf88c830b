//! The model as storage records: one record per object, quota and remembered request, so a
//! change writes only what it touched. Values are protobuf-encoded.

use fulcrum_proto::v1::{
    HealthMonitor, L7Policy, L7Rule, Listener, LoadBalancer, Member, Pool, Quota,
};
use prost::Message;

use super::{Kind, Object, State};

/// Identifies one storage record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RecordKey {
    Object(Kind, String),
    Quota(String),
    QuotaDefaults,
    Revision,
    Request(String),
}

const QUOTA: &str = "quota/";
const QUOTA_DEFAULTS: &str = "meta/quota_defaults";
const REVISION: &str = "meta/revision";
const REQUEST: &str = "req/";

impl RecordKey {
    fn encode(&self) -> Vec<u8> {
        match self {
            RecordKey::Object(kind, id) => format!("{}{id}", kind.prefix()),
            RecordKey::Quota(project) => format!("{QUOTA}{project}"),
            RecordKey::QuotaDefaults => QUOTA_DEFAULTS.to_string(),
            RecordKey::Revision => REVISION.to_string(),
            RecordKey::Request(id) => format!("{REQUEST}{id}"),
        }
        .into_bytes()
    }
}

/// A record that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("bad state record {key}: {reason}")]
pub struct RecordError {
    key: String,
    reason: String,
}

fn bad(key: &str, reason: impl ToString) -> RecordError {
    RecordError {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

impl State {
    /// The value a record key currently has (`None` = deleted).
    fn record_value(&self, key: &RecordKey) -> Option<Vec<u8>> {
        match key {
            RecordKey::Object(kind, id) => match kind {
                Kind::LoadBalancer => self.get::<LoadBalancer>(id).map(Message::encode_to_vec),
                Kind::Listener => self.get::<Listener>(id).map(Message::encode_to_vec),
                Kind::Pool => self.get::<Pool>(id).map(Message::encode_to_vec),
                Kind::Member => self.get::<Member>(id).map(Message::encode_to_vec),
                Kind::HealthMonitor => self.get::<HealthMonitor>(id).map(Message::encode_to_vec),
                Kind::L7Policy => self.get::<L7Policy>(id).map(Message::encode_to_vec),
                Kind::L7Rule => self.get::<L7Rule>(id).map(Message::encode_to_vec),
            },
            RecordKey::Quota(project) => self.quotas.get(project).map(Message::encode_to_vec),
            RecordKey::QuotaDefaults => Some(self.quota_defaults.encode_to_vec()),
            RecordKey::Revision => Some(self.revision.to_be_bytes().to_vec()),
            RecordKey::Request(id) => self.requests.get(id).map(|(index, result)| {
                let mut v = index.to_be_bytes().to_vec();
                v.extend_from_slice(result);
                v
            }),
        }
    }

    pub(crate) fn touch(&mut self, key: RecordKey) {
        self.touched.insert(key);
    }

    /// Records changed since the last call: (key, Some(value)) to write, (key, None) to delete.
    pub fn take_changes(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let touched = std::mem::take(&mut self.touched);
        touched
            .into_iter()
            .map(|key| (key.encode(), self.record_value(&key)))
            .collect()
    }

    /// Every record of the state (for snapshots).
    pub fn records(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut keys = vec![RecordKey::QuotaDefaults, RecordKey::Revision];
        for kind in Kind::ALL {
            let ids: Vec<String> = match kind {
                Kind::LoadBalancer => self.loadbalancers.keys().cloned().collect(),
                Kind::Listener => self.listeners.keys().cloned().collect(),
                Kind::Pool => self.pools.keys().cloned().collect(),
                Kind::Member => self.members.keys().cloned().collect(),
                Kind::HealthMonitor => self.healthmonitors.keys().cloned().collect(),
                Kind::L7Policy => self.l7policies.keys().cloned().collect(),
                Kind::L7Rule => self.l7rules.keys().cloned().collect(),
            };
            keys.extend(ids.into_iter().map(|id| RecordKey::Object(kind, id)));
        }
        keys.extend(self.quotas.keys().cloned().map(RecordKey::Quota));
        keys.extend(self.requests.keys().cloned().map(RecordKey::Request));
        keys.into_iter()
            .filter_map(|k| self.record_value(&k).map(|v| (k.encode(), v)))
            .collect()
    }

    /// Rebuilds a state from its records (derived indexes included).
    pub fn from_records(
        records: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<State, RecordError> {
        let mut state = State::new();
        for (key, value) in records {
            let key = String::from_utf8(key).map_err(|e| bad("?", e))?;
            state.load_record(&key, &value)?;
        }
        let mut order: Vec<(u64, String)> = state
            .requests
            .iter()
            .map(|(id, (index, _))| (*index, id.clone()))
            .collect();
        order.sort();
        state.request_order = order.into();
        state.placement_log.clear();
        state.placement_log_start = state.revision;
        state.journal.clear();
        state.touched.clear();
        Ok(state)
    }

    fn load_record(&mut self, key: &str, value: &[u8]) -> Result<(), RecordError> {
        fn decode<T: Object>(
            state: &mut State,
            key: &str,
            value: &[u8],
        ) -> Result<(), RecordError> {
            let object = T::decode(value).map_err(|e| bad(key, e))?;
            state.put(object);
            Ok(())
        }
        if key == QUOTA_DEFAULTS {
            self.quota_defaults = Quota::decode(value).map_err(|e| bad(key, e))?;
        } else if key == REVISION {
            let bytes: [u8; 8] = value.try_into().map_err(|_| bad(key, "not 8 bytes"))?;
            self.revision = u64::from_be_bytes(bytes);
        } else if let Some(project) = key.strip_prefix(QUOTA) {
            let quota = Quota::decode(value).map_err(|e| bad(key, e))?;
            self.quotas.insert(project.to_string(), quota);
        } else if let Some(id) = key.strip_prefix(REQUEST) {
            if value.len() < 8 {
                return Err(bad(key, "too short"));
            }
            let (index, result) = value.split_at(8);
            let index = u64::from_be_bytes(index.try_into().map_err(|_| bad(key, "index"))?);
            self.requests
                .insert(id.to_string(), (index, result.to_vec()));
        } else {
            let kind = Kind::ALL
                .into_iter()
                .find(|k| key.starts_with(k.prefix()))
                .ok_or_else(|| bad(key, "unknown key prefix"))?;
            match kind {
                Kind::LoadBalancer => decode::<LoadBalancer>(self, key, value)?,
                Kind::Listener => decode::<Listener>(self, key, value)?,
                Kind::Pool => decode::<Pool>(self, key, value)?,
                Kind::Member => decode::<Member>(self, key, value)?,
                Kind::HealthMonitor => decode::<HealthMonitor>(self, key, value)?,
                Kind::L7Policy => decode::<L7Policy>(self, key, value)?,
                Kind::L7Rule => decode::<L7Rule>(self, key, value)?,
            }
        }
        Ok(())
    }

    /// Remembers the encoded result of a request id, forgetting the oldest beyond the limit.
    pub(crate) fn remember_request(&mut self, request_id: &str, result: Vec<u8>) {
        if request_id.is_empty() {
            return;
        }
        self.requests
            .insert(request_id.to_string(), (self.revision, result));
        self.request_order
            .push_back((self.revision, request_id.to_string()));
        self.touch(RecordKey::Request(request_id.to_string()));
        while self.request_order.len() > super::REMEMBERED_REQUESTS {
            if let Some((_, old)) = self.request_order.pop_front() {
                self.requests.remove(&old);
                self.touch(RecordKey::Request(old));
            }
        }
    }

    /// The remembered result of an already applied request id.
    pub(crate) fn remembered(&self, request_id: &str) -> Option<&[u8]> {
        if request_id.is_empty() {
            return None;
        }
        self.requests.get(request_id).map(|(_, r)| r.as_slice())
    }
}
