//! Options and helpers every resource shares: `--enable/--disable`, the tag options, `--wait`,
//! `k=v,k2=v2` lists, and the `unset` flag sets.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::bail;
use fulcrum_proto::v1::{ProvisioningStatus, StringList};
use tonic::{Code, Status};

use super::connection::ApiError;
use super::enums::enum_text;

/// How often `--wait` polls.
pub const WAIT_POLL: Duration = Duration::from_secs(1);
/// How long `--wait` waits at most.
pub const WAIT_LIMIT: Duration = Duration::from_secs(600);

/// `--enable` / `--disable` (admin_state_up); neither leaves the setting alone.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AdminState {
    /// Enable (admin_state_up = true).
    #[arg(long, conflicts_with = "disable")]
    pub enable: bool,
    /// Disable (admin_state_up = false).
    #[arg(long)]
    pub disable: bool,
}

impl AdminState {
    /// The requested admin_state_up, if any.
    pub fn value(&self) -> Option<bool> {
        if self.enable {
            Some(true)
        } else if self.disable {
            Some(false)
        } else {
            None
        }
    }
}

/// `--tag` (repeatable) / `--no-tag` on create and set.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TagArgs {
    /// Tag to add (repeat for several).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// No tags (create), or clear the existing tags before adding --tag ones (set).
    #[arg(long)]
    pub no_tag: bool,
}

impl TagArgs {
    /// Tags of a new object.
    pub fn for_create(&self) -> Vec<String> {
        dedup(self.tags.clone())
    }

    /// The full new tag list for a set command, or `None` to leave tags alone.
    pub fn for_set(&self, current: &[String]) -> Option<StringList> {
        if self.tags.is_empty() && !self.no_tag {
            return None;
        }
        let mut values = if self.no_tag {
            vec![]
        } else {
            current.to_vec()
        };
        values.extend(self.tags.iter().cloned());
        Some(StringList {
            values: dedup(values),
        })
    }
}

/// `--tag` (repeatable) / `--all-tag` on unset.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TagUnsetArgs {
    /// Tag to remove (repeat for several).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Clear all tags.
    #[arg(long)]
    pub all_tag: bool,
}

impl TagUnsetArgs {
    /// Whether anything is asked.
    pub fn any(&self) -> bool {
        self.all_tag || !self.tags.is_empty()
    }

    /// The full new tag list, or `None` to leave tags alone.
    pub fn for_unset(&self, current: &[String]) -> Option<StringList> {
        if self.all_tag {
            return Some(StringList { values: vec![] });
        }
        if self.tags.is_empty() {
            return None;
        }
        Some(StringList {
            values: current
                .iter()
                .filter(|t| !self.tags.contains(t))
                .cloned()
                .collect(),
        })
    }
}

/// The API fields an `unset` clears, or `None` when it asks for nothing at all (no flag and no
/// tag option): then the command does nothing, not even look the object up.
pub fn fields_to_unset(fields: Vec<String>, tags: &TagUnsetArgs) -> Option<Vec<String>> {
    (!fields.is_empty() || tags.any()).then_some(fields)
}

/// List filters on tags (comma-separated lists).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TagFilter {
    /// Only objects carrying all of these tags.
    #[arg(long, value_name = "TAG[,TAG,...]", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Only objects carrying any of these tags.
    #[arg(long, value_name = "TAG[,TAG,...]", value_delimiter = ',')]
    pub any_tags: Vec<String>,
    /// Leave out objects carrying all of these tags.
    #[arg(long, value_name = "TAG[,TAG,...]", value_delimiter = ',')]
    pub not_tags: Vec<String>,
    /// Leave out objects carrying any of these tags.
    #[arg(long, value_name = "TAG[,TAG,...]", value_delimiter = ',')]
    pub not_any_tags: Vec<String>,
}

impl TagFilter {
    /// Whether an object with these tags passes.
    pub fn matches(&self, tags: &[String]) -> bool {
        let has = |t: &String| tags.contains(t);
        self.tags.iter().all(has)
            && (self.any_tags.is_empty() || self.any_tags.iter().any(has))
            && (self.not_tags.is_empty() || !self.not_tags.iter().all(has))
            && !self.not_any_tags.iter().any(has)
    }
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(v.len());
    for t in v {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// A parsed `k=v,k2=v2` option value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvList(pub Vec<(String, String)>);

/// clap value parser for [`KvList`].
pub fn kv_list(s: &str) -> Result<KvList, String> {
    parse_kv(s).map(KvList)
}

/// Parses `k=v,k2=v2` (`--insert-headers`, `--session-persistence`).
pub fn parse_kv(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.contains('=') => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(format!("expected key=value[,key=value...], got {p:?}")),
        })
        .collect()
}

/// Whether a reference option asks to clear the setting (octaviaclient accepts these words).
pub fn is_none_word(s: &str) -> bool {
    matches!(s.to_ascii_lowercase().as_str(), "none" | "null" | "void")
}

/// octaviaclient's range check for ports.
pub fn check_port(option: &str, port: i32) -> anyhow::Result<()> {
    if !(1..=65535).contains(&port) {
        bail!(
            "Invalid input for field/attribute '{option}', Value: '{port}'. Value must be between 1 and 65535."
        );
    }
    Ok(())
}

/// Polls until the object is ACTIVE; fails when it goes ERROR (octaviaclient's
/// `wait_for_active`, every second instead of every three).
pub async fn wait_for_active<F, Fut>(status: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<i32, Status>>,
{
    wait_active_every(WAIT_POLL, status).await
}

async fn wait_active_every<F, Fut>(poll: Duration, mut status: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<i32, Status>>,
{
    let start = Instant::now();
    loop {
        let s = status().await.map_err(ApiError)?;
        if s == ProvisioningStatus::Active as i32 {
            return Ok(());
        }
        if s == ProvisioningStatus::Error as i32 {
            bail!("The resource did not successfully reach ACTIVE status (provisioning_status ERROR).");
        }
        if start.elapsed() > WAIT_LIMIT {
            bail!(
                "Timed out after {}s waiting for ACTIVE status (provisioning_status {}).",
                WAIT_LIMIT.as_secs(),
                enum_text::<ProvisioningStatus>(s)
            );
        }
        tokio::time::sleep(poll).await;
    }
}

/// Polls until the object is gone (NOT_FOUND or DELETED); fails when it goes ERROR.
pub async fn wait_for_delete<F, Fut>(status: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<i32, Status>>,
{
    wait_delete_every(WAIT_POLL, status).await
}

async fn wait_delete_every<F, Fut>(poll: Duration, mut status: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<i32, Status>>,
{
    let start = Instant::now();
    loop {
        match status().await {
            Err(e) if e.code() == Code::NotFound => return Ok(()),
            Err(e) => return Err(ApiError(e).into()),
            Ok(s) if s == ProvisioningStatus::Deleted as i32 => return Ok(()),
            Ok(s) if s == ProvisioningStatus::Error as i32 => {
                bail!("The resource could not be successfully deleted (provisioning_status ERROR).")
            }
            Ok(s) if start.elapsed() > WAIT_LIMIT => bail!(
                "Timed out after {}s waiting for the resource to be deleted (provisioning_status {}).",
                WAIT_LIMIT.as_secs(),
                enum_text::<ProvisioningStatus>(s)
            ),
            Ok(_) => tokio::time::sleep(poll).await,
        }
    }
}

/// Defines a clap struct of `unset` flags, each naming the API field it resets.
macro_rules! unset_flags {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident => $api:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                #[arg(long)]
                pub $field: bool,
            )*
        }

        impl $name {
            /// The API field names to reset.
            pub fn fields(&self) -> Vec<String> {
                let mut out = Vec::new();
                $(if self.$field { out.push($api.to_string()); })*
                out
            }
        }
    };
}
pub(crate) use unset_flags;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_lists_parse() {
        assert_eq!(
            parse_kv("X-Forwarded-For=true,X-Forwarded-Port=true").unwrap(),
            vec![
                ("X-Forwarded-For".to_string(), "true".to_string()),
                ("X-Forwarded-Port".to_string(), "true".to_string())
            ]
        );
        assert_eq!(
            parse_kv("type=APP_COOKIE,cookie_name=x").unwrap(),
            vec![
                ("type".to_string(), "APP_COOKIE".to_string()),
                ("cookie_name".to_string(), "x".to_string())
            ]
        );
        assert!(parse_kv("novalue").is_err());
        assert!(parse_kv("a=b=c").is_err());
        assert!(parse_kv("=v").is_err());
    }

    #[test]
    fn tags_merge_like_octaviaclient() {
        let cur = vec!["a".to_string(), "b".to_string()];
        let set = TagArgs {
            tags: vec!["c".into(), "a".into()],
            no_tag: false,
        };
        assert_eq!(set.for_set(&cur).unwrap().values, vec!["a", "b", "c"]);
        let replace = TagArgs {
            tags: vec!["c".into()],
            no_tag: true,
        };
        assert_eq!(replace.for_set(&cur).unwrap().values, vec!["c"]);
        assert!(TagArgs::default().for_set(&cur).is_none());
        let unset = TagUnsetArgs {
            tags: vec!["a".into()],
            all_tag: false,
        };
        assert_eq!(unset.for_unset(&cur).unwrap().values, vec!["b"]);
        let all = TagUnsetArgs {
            tags: vec![],
            all_tag: true,
        };
        assert!(all.for_unset(&cur).unwrap().values.is_empty());
    }

    #[test]
    fn tag_filters() {
        let f = TagFilter {
            tags: vec!["a".into()],
            not_any_tags: vec!["x".into()],
            ..TagFilter::default()
        };
        assert!(f.matches(&["a".into(), "b".into()]));
        assert!(!f.matches(&["a".into(), "x".into()]));
        assert!(!f.matches(&["b".into()]));
        let any = TagFilter {
            any_tags: vec!["a".into(), "b".into()],
            ..TagFilter::default()
        };
        assert!(any.matches(&["b".into()]));
        assert!(!any.matches(&[]));
    }

    #[test]
    fn port_range() {
        assert!(check_port("protocol-port", 80).is_ok());
        let e = check_port("protocol-port", 0).unwrap_err().to_string();
        assert_eq!(e, "Invalid input for field/attribute 'protocol-port', Value: '0'. Value must be between 1 and 65535.");
    }

    #[tokio::test]
    async fn wait_loops_until_active_or_error() {
        let zero = Duration::ZERO;
        let seq = std::cell::RefCell::new(vec![
            ProvisioningStatus::PendingCreate as i32,
            ProvisioningStatus::PendingCreate as i32,
            ProvisioningStatus::Active as i32,
        ]);
        wait_active_every(zero, || {
            let s = seq.borrow_mut().remove(0);
            async move { Ok(s) }
        })
        .await
        .unwrap();
        let err = wait_active_every(zero, || async { Ok(ProvisioningStatus::Error as i32) })
            .await
            .unwrap_err();
        assert!(err
            .to_string()
            .contains("did not successfully reach ACTIVE"));
        wait_delete_every(zero, || async { Err(Status::not_found("gone")) })
            .await
            .unwrap();
        let err = wait_delete_every(zero, || async { Err(Status::unavailable("down")) })
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "UNAVAILABLE: down");
    }
}
