//! Fulcrum control plane: the Octavia object model as a replicated state machine, its
//! validation rules, and the admin API services that turn requests into replicated commands.

pub mod api;
pub mod defaults;
pub mod error;
pub mod model;
pub mod names;
pub mod validate;

pub use error::{ModelError, ModelResult};
pub use model::State;
