//! Collects access log records in a test binary: a `tracing` layer installed
//! as the binary's global subscriber keeps every event of the access log
//! target. Tests run in parallel, so each looks only at its own listeners.

use std::collections::HashMap;
use std::sync::{Mutex, Once};

use fulcrum_dataplane::ACCESS_LOG_TARGET;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// One record: field name -> value as text, and `thread`: the name of the
/// thread that logged it.
pub type Record = HashMap<String, String>;

static RECORDS: Mutex<Vec<Record>> = Mutex::new(Vec::new());

/// Keeps every event of the access log target, as field name -> text.
struct Collect;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Collect {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != ACCESS_LOG_TARGET {
            return;
        }
        assert_eq!(*event.metadata().level(), tracing::Level::INFO);
        let mut fields = Fields(Record::new());
        event.record(&mut fields);
        if let Some(name) = std::thread::current().name() {
            fields.0.insert("thread".into(), name.into());
        }
        RECORDS.lock().unwrap().push(fields.0);
    }
}

struct Fields(Record);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
}

/// Installs the collecting layer as this binary's global subscriber, once.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Collect))
            .expect("no other subscriber");
    });
}

/// The records of `listener` so far.
pub fn records(listener: &str) -> Vec<Record> {
    RECORDS
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.get("listener").map(String::as_str) == Some(listener))
        .cloned()
        .collect()
}
