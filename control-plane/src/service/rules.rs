//! Create / update / delete of named items (rules, backends, content
//! sources) as edits through the one change path.

use switchyard_shared::config::{Backend, Config, ContentSource, Rule};

use super::{ChangeMeta, ChangeOutcome, Service};
use crate::error::{ErrorCode, ServiceError};

/// Largest `position` accepted (positions past the end mean "last"); the
/// same bound for REST `?position=` and gRPC `position`.
pub const MAX_POSITION: usize = 1_000_000;

/// One edit of a named list. `position` (rules only, where order matters)
/// is the 0-based index the item ends up at.
#[derive(Debug, Clone)]
pub enum NamedOp<T> {
    Create {
        item: T,
        position: Option<usize>,
    },
    Update {
        name: String,
        item: T,
        position: Option<usize>,
    },
    Delete {
        name: String,
    },
}

/// A list of named items inside a config.
pub trait Named: Clone + Send + 'static {
    /// `rule`, `backend`, `content source` (for messages).
    const KIND: &'static str;
    /// The key of the list in API answers (`rules`, `backends`, `sources`).
    const PLURAL: &'static str;
    fn name(&self) -> &str;
    fn list(config: &mut Config) -> &mut Vec<Self>;
    fn items(config: &Config) -> &[Self];
}

impl Named for Rule {
    const KIND: &'static str = "rule";
    const PLURAL: &'static str = "rules";
    fn name(&self) -> &str {
        &self.name
    }
    fn list(config: &mut Config) -> &mut Vec<Self> {
        &mut config.rules
    }
    fn items(config: &Config) -> &[Self] {
        &config.rules
    }
}

impl Named for Backend {
    const KIND: &'static str = "backend";
    const PLURAL: &'static str = "backends";
    fn name(&self) -> &str {
        &self.name
    }
    fn list(config: &mut Config) -> &mut Vec<Self> {
        &mut config.backends
    }
    fn items(config: &Config) -> &[Self] {
        &config.backends
    }
}

impl Named for ContentSource {
    const KIND: &'static str = "content source";
    const PLURAL: &'static str = "sources";
    fn name(&self) -> &str {
        &self.name
    }
    fn list(config: &mut Config) -> &mut Vec<Self> {
        &mut config.content_sources
    }
    fn items(config: &Config) -> &[Self] {
        &config.content_sources
    }
}

/// The audit log's action for an edit of `T` (`create_rule`,
/// `delete_backend`...), the same whichever API made it.
pub fn audit_action<T: Named>(verb: &str) -> &'static str {
    match (verb, T::PLURAL) {
        ("create", "rules") => "create_rule",
        ("update", "rules") => "update_rule",
        ("delete", "rules") => "delete_rule",
        ("create", "backends") => "create_backend",
        ("update", "backends") => "update_backend",
        ("delete", "backends") => "delete_backend",
        ("create", _) => "create_content_source",
        ("update", _) => "update_content_source",
        _ => "delete_content_source",
    }
}

/// Applies one edit to a copy of `config`.
pub fn edit_named<T: Named>(config: &Config, op: NamedOp<T>) -> Result<Config, ServiceError> {
    let mut next = config.clone();
    let list = T::list(&mut next);
    let find = |list: &[T], name: &str| list.iter().position(|x| x.name() == name);
    match op {
        NamedOp::Create { item, position } => {
            if find(list, item.name()).is_some() {
                return Err(ServiceError::new(
                    ErrorCode::AlreadyExists,
                    format!("a {} named `{}` already exists", T::KIND, item.name()),
                ));
            }
            // A position past the end appends.
            let at = position.map_or(list.len(), |p| p.min(list.len()));
            list.insert(at, item);
        }
        NamedOp::Update {
            name,
            item,
            position,
        } => {
            let at = find(list, &name)
                .ok_or_else(|| ServiceError::not_found(format!("no {} named `{name}`", T::KIND)))?;
            if item.name() != name && find(list, item.name()).is_some() {
                return Err(ServiceError::new(
                    ErrorCode::AlreadyExists,
                    format!("a {} named `{}` already exists", T::KIND, item.name()),
                ));
            }
            list.remove(at);
            let to = position.map_or(at, |p| p.min(list.len()));
            list.insert(to, item);
        }
        NamedOp::Delete { name } => {
            let at = find(list, &name)
                .ok_or_else(|| ServiceError::not_found(format!("no {} named `{name}`", T::KIND)))?;
            list.remove(at);
        }
    }
    Ok(next)
}

impl Service {
    /// Creates, updates or deletes one named item through [`Service::apply`].
    pub async fn edit<T: Named>(
        &self,
        meta: ChangeMeta,
        op: NamedOp<T>,
    ) -> Result<ChangeOutcome, ServiceError> {
        if let NamedOp::Create {
            position: Some(p), ..
        }
        | NamedOp::Update {
            position: Some(p), ..
        } = &op
        {
            if *p > MAX_POSITION {
                return Err(ServiceError::bad_request(format!(
                    "position {p} is above the maximum {MAX_POSITION}"
                )));
            }
        }
        self.apply(meta, move |current| edit_named(current, op))
            .await
    }

    /// One named item of the current version, with that version.
    pub fn named_item<T: Named>(&self, name: &str) -> Result<(u64, T), ServiceError> {
        let snap = self.current();
        T::items(&snap.config)
            .iter()
            .find(|i| i.name() == name)
            .map(|i| (snap.version, i.clone()))
            .ok_or_else(|| ServiceError::not_found(format!("no {} named `{name}`", T::KIND)))
    }
}
