//! Server groups (`group` in tend.json): which servers `@backend`, `group=backend` or a mix of
//! groups and ids select. Pure functions over the server list in config order; the supervisor
//! uses them for actions and the HTTP threads for logs, so both resolve a name the same way.
//! No I/O, no state.

use std::fmt;

/// What a person named: groups and ids, in any mix. Empty means nothing was named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub groups: Vec<String>,
    pub ids: Vec<String>,
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.ids.is_empty()
    }
}

/// The servers an action is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActTarget {
    /// Every server (`--all`, `POST /api/servers?action=…`).
    All,
    /// One server by id: refusals (already running, …) are errors, not skips.
    One(String),
    /// Groups and ids (`@backend web`, `?group=backend&id=web`): like `All` on a subset.
    Selected(Selector),
}

/// A name in a selector that matches nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unknown {
    Id(String),
    /// The group asked for, and every group the config has (sorted), for the message.
    Group {
        name: String,
        known: Vec<String>,
    },
}

impl fmt::Display for Unknown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unknown::Id(id) => write!(f, "no server with id '{id}'"),
            Unknown::Group { name, known } if known.is_empty() => write!(
                f,
                "no group '{name}': no server in the config has a \"group\""
            ),
            Unknown::Group { name, known } => {
                write!(f, "no group '{name}' (known groups: {})", known.join(", "))
            }
        }
    }
}

/// The distinct group names of `servers` (`(id, group)` in config order), sorted.
pub fn known<'a>(servers: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Vec<String> {
    let mut names: Vec<String> = servers
        .into_iter()
        .filter_map(|(_, group)| group.map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The indexes (into `servers`, config order, each once) of every server `selector` names: the
/// members of each group plus each id. The first unknown name is the error; nothing is chosen
/// in part.
pub fn select<'a>(
    servers: &[(&'a str, Option<&'a str>)],
    selector: &Selector,
) -> Result<Vec<usize>, Unknown> {
    let mut chosen = vec![false; servers.len()];
    for name in &selector.groups {
        let mut found = false;
        for (index, (_, group)) in servers.iter().enumerate() {
            if *group == Some(name.as_str()) {
                chosen[index] = true;
                found = true;
            }
        }
        if !found {
            return Err(Unknown::Group {
                name: name.clone(),
                known: known(servers.iter().copied()),
            });
        }
    }
    for id in &selector.ids {
        match servers.iter().position(|(known, _)| known == id) {
            Some(index) => chosen[index] = true,
            None => return Err(Unknown::Id(id.clone())),
        }
    }
    Ok(chosen
        .iter()
        .enumerate()
        .filter_map(|(index, &on)| on.then_some(index))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVERS: &[(&str, Option<&str>)] = &[
        ("db", Some("backend")),
        ("web", None),
        ("api", Some("backend")),
        ("mailer", Some("workers")),
    ];

    fn selector(groups: &[&str], ids: &[&str]) -> Selector {
        Selector {
            groups: groups.iter().map(|s| s.to_string()).collect(),
            ids: ids.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn groups_and_ids_mix_in_config_order_without_repeats() {
        assert_eq!(
            select(SERVERS, &selector(&["backend"], &[])),
            Ok(vec![0, 2])
        );
        assert_eq!(
            select(SERVERS, &selector(&["workers"], &["web", "api"])),
            Ok(vec![1, 2, 3])
        );
        assert_eq!(select(SERVERS, &selector(&[], &[])), Ok(vec![]));
    }

    #[test]
    fn an_unknown_name_is_an_error_that_lists_the_groups() {
        let error = select(SERVERS, &selector(&["backend", "front"], &[])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no group 'front' (known groups: backend, workers)"
        );
        let error = select(SERVERS, &selector(&[], &["nope"])).unwrap_err();
        assert_eq!(error.to_string(), "no server with id 'nope'");
        let error = select(&[("a", None)], &selector(&["x"], &[])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no group 'x': no server in the config has a \"group\""
        );
    }
}
