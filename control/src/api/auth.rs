//! Who is calling: bearer tokens mapped to a project and a role. Tokens are kept only as
//! SHA-256 digests.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use tonic::Status;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees and changes every project, manages quotas and the cluster.
    Admin,
    /// Sees and changes its own project.
    Member,
    /// Sees its own project.
    Reader,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub project_id: String,
    pub role: Role,
}

impl Caller {
    /// Whether the caller may see objects of `project_id`.
    pub fn can_see(&self, project_id: &str) -> bool {
        self.role == Role::Admin || self.project_id == project_id
    }

    /// Refuses readers.
    pub fn require_write(&self) -> Result<(), Status> {
        if self.role == Role::Reader {
            return Err(Status::permission_denied(
                "the reader role cannot change objects",
            ));
        }
        Ok(())
    }

    /// Refuses everyone but admins.
    pub fn require_admin(&self, what: &str) -> Result<(), Status> {
        if self.role != Role::Admin {
            return Err(Status::permission_denied(format!(
                "{what} needs the admin role"
            )));
        }
        Ok(())
    }

    /// The project a new object goes to: the caller's, or (admins only) the one asked for.
    pub fn target_project(&self, asked: &str) -> Result<String, Status> {
        if asked.is_empty() || asked == self.project_id {
            return Ok(self.project_id.clone());
        }
        if self.role == Role::Admin {
            return Ok(asked.to_string());
        }
        Err(Status::permission_denied(format!(
            "project_id: only admins may act on project {asked}"
        )))
    }
}

/// One configured token: its digest and whom it stands for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenEntry {
    /// Hex SHA-256 of the token.
    pub sha256: String,
    pub project_id: String,
    pub role: Role,
}

/// Hex SHA-256 digest of a token, as stored in configs.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The tokens a node accepts.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    by_digest: HashMap<String, Caller>,
}

impl Authenticator {
    /// Builds the lookup table from configured entries.
    pub fn new(entries: &[TokenEntry]) -> Self {
        let by_digest = entries
            .iter()
            .map(|e| {
                (
                    e.sha256.to_ascii_lowercase(),
                    Caller {
                        project_id: e.project_id.clone(),
                        role: e.role,
                    },
                )
            })
            .collect();
        Self { by_digest }
    }

    /// The caller behind a request's `authorization: Bearer <token>` metadata.
    pub fn authenticate(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Caller, Status> {
        let header = metadata
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <token>"))?;
        let value = header
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization metadata is not text"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be 'Bearer <token>'"))?
            .trim();
        self.by_digest
            .get(&hash_token(token))
            .cloned()
            .ok_or_else(|| Status::unauthenticated("unknown token"))
    }
}
