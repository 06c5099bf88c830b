//! Why a command was refused. Every variant names what was wrong so the API can answer with a
//! message that points at the field and the rule.

use fulcrum_proto::internal::{CommandError, ErrorCode};

/// A refused change; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// A field breaks a rule.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// An object the request names does not exist (or belongs to another project).
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// The change would duplicate something unique.
    #[error("{0}")]
    Conflict(String),
    /// The change is not possible in the current state (e.g. it would orphan a reference).
    #[error("{0}")]
    Precondition(String),
    /// The project's quota for a kind of object is used up.
    #[error("quota has been met for resources: {kind} (limit {limit})")]
    QuotaExceeded { kind: &'static str, limit: i32 },
}

impl ModelError {
    /// Shorthand for [`ModelError::Invalid`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ModelError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`ModelError::NotFound`].
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        ModelError::NotFound {
            kind,
            id: id.into(),
        }
    }

    /// The replicated form of this error.
    pub fn to_proto(&self) -> CommandError {
        let code = match self {
            ModelError::Invalid { .. } => ErrorCode::InvalidArgument,
            ModelError::NotFound { .. } => ErrorCode::NotFound,
            ModelError::Conflict(_) => ErrorCode::AlreadyExists,
            ModelError::Precondition(_) => ErrorCode::FailedPrecondition,
            ModelError::QuotaExceeded { .. } => ErrorCode::ResourceExhausted,
        };
        CommandError {
            code: code as i32,
            message: self.to_string(),
        }
    }
}

/// Result of model operations.
pub type ModelResult<T> = Result<T, ModelError>;
