//! Names or IDs: objects are found by ID (when the text looks like one) or by name, as
//! octaviaclient does; paging through list calls.

use std::future::Future;

use anyhow::bail;
use tonic::{Code, Status};

use super::connection::ApiError;

/// Whether text looks like an object ID (a UUID).
pub fn looks_like_id(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

/// Finds one object of `kind` (e.g. "load balancer") by ID or name. `get` fetches by ID;
/// `by_name` lists the objects with exactly that name.
pub async fn find<T, G, GF, L, LF>(kind: &str, input: &str, get: G, by_name: L) -> anyhow::Result<T>
where
    G: Fn(String) -> GF,
    GF: Future<Output = Result<T, Status>>,
    L: Fn(String) -> LF,
    LF: Future<Output = anyhow::Result<Vec<T>>>,
{
    if input.is_empty() {
        bail!("An empty name or ID does not name a {kind}.");
    }
    let id_like = looks_like_id(input);
    if id_like {
        if let Some(found) = try_get(&get, input).await? {
            return Ok(found);
        }
    }
    let mut named = by_name(input.to_string()).await?;
    match named.len() {
        1 => return Ok(named.remove(0)),
        0 => {}
        n => bail!(
            "More than one {kind} exists with the name '{input}' ({n} found). Please try again with an ID."
        ),
    }
    // IDs need not be UUIDs: try the text as an ID too.
    if !id_like {
        if let Some(found) = try_get(&get, input).await? {
            return Ok(found);
        }
    }
    bail!("No {kind} with name or ID '{input}' exists.")
}

/// Gets by ID; "not found" (or an ID the server refuses to parse) is `None`.
async fn try_get<T, G, GF>(get: &G, id: &str) -> anyhow::Result<Option<T>>
where
    G: Fn(String) -> GF,
    GF: Future<Output = Result<T, Status>>,
{
    match get(id.to_string()).await {
        Ok(t) => Ok(Some(t)),
        Err(s) if matches!(s.code(), Code::NotFound | Code::InvalidArgument) => Ok(None),
        Err(s) => Err(ApiError(s).into()),
    }
}

/// Calls a paged list until the last page. `page(marker)` returns a page and the next marker.
pub async fn list_all<T, F, Fut>(mut page: F) -> anyhow::Result<Vec<T>>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), Status>>,
{
    let mut all = Vec::new();
    let mut marker = String::new();
    loop {
        let (items, next) = page(marker.clone()).await.map_err(ApiError)?;
        let done = items.is_empty() || next.is_empty() || next == marker;
        all.extend(items);
        if done {
            return Ok(all);
        }
        marker = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Obj {
        id: String,
        name: String,
    }

    fn store() -> Vec<Obj> {
        let o = |id: &str, name: &str| Obj {
            id: id.into(),
            name: name.into(),
        };
        vec![
            o("6f9a5e4e-0c34-4b8a-9c1a-1f7b2d7c0a11", "lb_test_1"),
            o("0e1d2c3b-4a59-4687-9a8b-7c6d5e4f3a21", "dup"),
            o("1e1d2c3b-4a59-4687-9a8b-7c6d5e4f3a21", "dup"),
            o("plain-id", "other"),
        ]
    }

    async fn find_in(input: &str) -> anyhow::Result<Obj> {
        let s = store();
        find(
            "load balancer",
            input,
            |id| {
                let s = s.clone();
                async move {
                    s.into_iter()
                        .find(|o| o.id == id)
                        .ok_or_else(|| Status::not_found("nope"))
                }
            },
            |name| {
                let s = s.clone();
                async move { Ok(s.into_iter().filter(|o| o.name == name).collect()) }
            },
        )
        .await
    }

    #[tokio::test]
    async fn finds_by_id_or_name_and_refuses_ambiguity() {
        assert_eq!(
            find_in("lb_test_1").await.unwrap().id,
            "6f9a5e4e-0c34-4b8a-9c1a-1f7b2d7c0a11"
        );
        assert_eq!(
            find_in("6f9a5e4e-0c34-4b8a-9c1a-1f7b2d7c0a11")
                .await
                .unwrap()
                .name,
            "lb_test_1"
        );
        assert_eq!(find_in("plain-id").await.unwrap().name, "other");
        let e = find_in("dup").await.unwrap_err().to_string();
        assert!(
            e.starts_with("More than one load balancer exists with the name 'dup'"),
            "{e}"
        );
        let e = find_in("missing").await.unwrap_err().to_string();
        assert_eq!(e, "No load balancer with name or ID 'missing' exists.");
    }

    #[tokio::test]
    async fn pages_until_the_end() {
        let pages = std::cell::RefCell::new(vec![
            (vec![1, 2], "m1".to_string()),
            (vec![3], String::new()),
        ]);
        let all = list_all(|_m| {
            let p = pages.borrow_mut().remove(0);
            async move { Ok(p) }
        })
        .await
        .unwrap();
        assert_eq!(all, vec![1, 2, 3]);
    }
}
