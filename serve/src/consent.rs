//! Who may do what with a character: the one access decision every route asks
//! ([`allowed`]), from the caller's relation to the character and its owner's rule.

use serde::{Deserialize, Serialize};

/// A character owner's rule for who may cast it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The owner alone (the default).
    OnlyMe,
    /// The owner and the users they approved.
    Approved,
    /// Every user of the server.
    Everyone,
}

impl Rule {
    /// Parses the API's name.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "only_me" => Ok(Rule::OnlyMe),
            "approved" => Ok(Rule::Approved),
            "everyone" => Ok(Rule::Everyone),
            other => Err(format!(
                "rule must be only_me, approved or everyone, got {other:?}"
            )),
        }
    }

    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::OnlyMe => "only_me",
            Rule::Approved => "approved",
            Rule::Everyone => "everyone",
        }
    }
}

/// The caller's relation to a character.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    /// The caller owns it.
    Owner,
    /// The owner approved the caller.
    Approved,
    /// Anyone else.
    Other,
}

impl Relation {
    /// The relation of `user` to a character owned by `owner` with `approved` users.
    pub fn of(user: &str, owner: &str, approved: &[String]) -> Self {
        if user == owner {
            Relation::Owner
        } else if approved.iter().any(|a| a == user) {
            Relation::Approved
        } else {
            Relation::Other
        }
    }
}

/// What the caller wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Cast the character into a new clip (create, remix, edit, extend; remixing a video
    /// that contains it).
    Cast,
    /// See the character (its name, rule and restrictions).
    View,
    /// List every video that contains it, whoever made it, and read its audit log.
    List,
    /// Delete it, change it, or delete a video that contains it.
    Delete,
    /// Download an unpublished video of someone else that contains it.
    Download,
}

/// The one access decision: whether a caller in `relation` to a character whose rule
/// is `rule` may do `action`. The owner may do everything; casting and viewing follow the
/// rule; listing, deleting and downloading others' drafts are the owner's alone.
pub fn allowed(rule: Rule, relation: Relation, action: Action) -> bool {
    match (relation, action) {
        (Relation::Owner, _) => true,
        (_, Action::List | Action::Delete | Action::Download) => false,
        (Relation::Approved, Action::Cast | Action::View) => {
            matches!(rule, Rule::Approved | Rule::Everyone)
        }
        (Relation::Other, Action::Cast | Action::View) => rule == Rule::Everyone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every relation × rule × action, written out: `C`ast, `V`iew, `L`ist, `D`elete,
    /// do`W`nload, upper case when allowed.
    #[test]
    fn the_access_table() {
        let table = [
            (Relation::Owner, Rule::OnlyMe, "CVLDW"),
            (Relation::Owner, Rule::Approved, "CVLDW"),
            (Relation::Owner, Rule::Everyone, "CVLDW"),
            (Relation::Approved, Rule::OnlyMe, "cvldw"),
            (Relation::Approved, Rule::Approved, "CVldw"),
            (Relation::Approved, Rule::Everyone, "CVldw"),
            (Relation::Other, Rule::OnlyMe, "cvldw"),
            (Relation::Other, Rule::Approved, "cvldw"),
            (Relation::Other, Rule::Everyone, "CVldw"),
        ];
        let actions = [
            Action::Cast,
            Action::View,
            Action::List,
            Action::Delete,
            Action::Download,
        ];
        for (rel, rule, want) in table {
            for (a, c) in actions.iter().zip(want.chars()) {
                assert_eq!(
                    allowed(rule, rel, *a),
                    c.is_uppercase(),
                    "{rel:?} × {rule:?} × {a:?}"
                );
            }
        }
    }

    #[test]
    fn relation_and_rule_names() {
        let approved = vec!["bea".to_string()];
        assert_eq!(Relation::of("ann", "ann", &approved), Relation::Owner);
        assert_eq!(Relation::of("bea", "ann", &approved), Relation::Approved);
        assert_eq!(Relation::of("cal", "ann", &approved), Relation::Other);
        for r in [Rule::OnlyMe, Rule::Approved, Rule::Everyone] {
            assert_eq!(Rule::parse(r.as_str()), Ok(r));
        }
        assert!(Rule::parse("friends").unwrap_err().contains("only_me"));
    }
}
