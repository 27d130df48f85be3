//! Apply conflicts and Kubernetes' wording for them (apimachinery's `NewConflictError`).

use std::fmt;

use super::managed::Operation;

/// One field an apply would take from another manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldConflict {
    /// The other manager's name.
    pub manager: String,
    /// How the other manager wrote the field.
    pub operation: Operation,
    /// The API version the other manager used.
    pub api_version: String,
    /// The field, as Kubernetes prints it: `.spec.replicas`.
    pub field: String,
}

impl FieldConflict {
    /// The manager as Kubernetes names it: `"kubectl-edit" using apps/v1` for updaters, just
    /// `"kubectl"` for appliers.
    pub fn owner(&self) -> String {
        match self.operation {
            Operation::Update => format!("{:?} using {}", self.manager, self.api_version),
            Operation::Apply => format!("{:?}", self.manager),
        }
    }

    /// The message of the `FieldManagerConflict` cause in the 409 Status.
    pub fn message(&self) -> String {
        format!("conflict with {}", self.owner())
    }
}

impl fmt::Display for FieldConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.message(), self.field)
    }
}

/// Kubernetes' message: `Apply failed with 1 conflict: conflict with "m" using apps/v1: .spec.replicas`,
/// or for several, one `conflicts with "m" using v:` block per manager listing `- .path` lines.
pub fn conflict_message(conflicts: &[FieldConflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.owner(),
            only.field
        );
    }
    let mut lines = Vec::new();
    let mut previous: Option<String> = None;
    for conflict in conflicts {
        let owner = conflict.owner();
        if previous.as_ref() != Some(&owner) {
            lines.push(format!("conflicts with {owner}:"));
            previous = Some(owner);
        }
        lines.push(format!("- {}", conflict.field));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflict(manager: &str, operation: Operation, field: &str) -> FieldConflict {
        FieldConflict {
            manager: manager.to_owned(),
            operation,
            api_version: "v1".to_owned(),
            field: field.to_owned(),
        }
    }

    #[test]
    fn appliers_are_named_without_a_version() {
        let only = [conflict("kubectl", Operation::Apply, ".data.a")];
        assert_eq!(
            conflict_message(&only),
            "Apply failed with 1 conflict: conflict with \"kubectl\": .data.a"
        );
        assert_eq!(only[0].message(), "conflict with \"kubectl\"");
    }

    #[test]
    fn several_managers_get_one_block_each() {
        let conflicts = [
            conflict("alice", Operation::Apply, ".data.a"),
            conflict("bob", Operation::Update, ".data.b"),
            conflict("bob", Operation::Update, ".data.c"),
        ];
        assert_eq!(
            conflict_message(&conflicts),
            "Apply failed with 3 conflicts: conflicts with \"alice\":\n- .data.a\n\
             conflicts with \"bob\" using v1:\n- .data.b\n- .data.c"
        );
        assert_eq!(
            conflicts[1].to_string(),
            "conflict with \"bob\" using v1: .data.b"
        );
    }
}
