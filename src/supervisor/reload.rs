//! Live config reload (README "Changing the config"): where the config is read again from, and
//! the plan that compares the running servers with the new config, server by server. Pure
//! except for [`ConfigSource::load`] (which reads the config files); the supervisor applies the
//! plan. Never signals or spawns anything.
//!
//! The plan sorts every server id into one of five lists. What decides the list is which keys
//! changed: a key that shapes the process (how it is started, what it is given, how it is
//! stopped, what it waits for) needs a new process; a key that only tells tend how to supervise
//! is applied to the process that runs. [`process_changes`] and [`supervision_changes`] take a
//! server apart field by field, so a new key cannot be added without deciding which it is.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use crate::cli::UpOptions;
use crate::config::{self, Config, ConfigErrors, ServerConfig, procfile};
use crate::groups;
use crate::model::ReloadPlan;

/// The config tend was started with, and the command-line options that override it, so a
/// reload reads the same file and applies the same overrides (`--listen` must not look like a
/// change of `listen`).
#[derive(Debug, Clone)]
pub struct ConfigSource {
    path: PathBuf,
    port: Option<u16>,
    listen: Option<SocketAddr>,
    state_file: Option<PathBuf>,
    log_dir: Option<PathBuf>,
}

impl ConfigSource {
    /// `path` is the file `tend up` found; the options' paths resolve against `cwd` (docs/DESIGN.md §2).
    pub fn new(path: &Path, options: &UpOptions, cwd: &Path) -> ConfigSource {
        ConfigSource {
            path: path.to_path_buf(),
            port: options.port,
            listen: options.listen,
            state_file: options.state.as_ref().map(|p| cwd.join(p)),
            log_dir: options.log_dir.as_ref().map(|p| cwd.join(p)),
        }
    }

    /// Reads and validates the config again (a Procfile with its `.env`), with `tend up`'s
    /// options applied. Every problem is reported, none is fixed.
    pub fn load(&self) -> Result<Config, ConfigErrors> {
        let mut config = if procfile::is_procfile(&self.path) {
            procfile::load(&self.path, self.port)?
        } else {
            config::load(&self.path)?
        };
        self.apply(&mut config);
        Ok(config)
    }

    /// Applies the command line's overrides to a loaded config.
    pub fn apply(&self, config: &mut Config) {
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(state_file) = &self.state_file {
            config.state_file = state_file.clone();
        }
        if let Some(log_dir) = &self.log_dir {
            config.log_dir = log_dir.clone();
        }
    }
}

/// The servers HTTP handlers may answer for without asking the supervisor (log routes): ids in
/// config order, each with its group. The supervisor replaces them when a reload changes them.
#[derive(Debug, Default)]
pub struct KnownIds(RwLock<Vec<(String, Option<String>)>>);

impl KnownIds {
    pub fn new(servers: impl IntoIterator<Item = (String, Option<String>)>) -> KnownIds {
        KnownIds(RwLock::new(servers.into_iter().collect()))
    }

    /// Every server of `config`, with its group.
    pub fn of(config: &Config) -> KnownIds {
        KnownIds::new(roster(config))
    }

    pub fn contains(&self, id: &str) -> bool {
        self.read().iter().any(|(known, _)| known == id)
    }

    pub fn replace(&self, config: &Config) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = roster(config);
    }

    /// The ids `selector` names, in config order; every id when it names nothing.
    pub fn select(&self, selector: &groups::Selector) -> Result<Vec<String>, groups::Unknown> {
        let servers = self.read();
        if selector.is_empty() {
            return Ok(servers.iter().map(|(id, _)| id.clone()).collect());
        }
        let list: Vec<(&str, Option<&str>)> = servers
            .iter()
            .map(|(id, group)| (id.as_str(), group.as_deref()))
            .collect();
        let chosen = groups::select(&list, selector)?;
        Ok(chosen.into_iter().map(|i| servers[i].0.clone()).collect())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<(String, Option<String>)>> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }
}

fn roster(config: &Config) -> Vec<(String, Option<String>)> {
    config
        .servers
        .iter()
        .map(|s| (s.id.clone(), s.group.clone()))
        .collect()
}

/// What the plan needs to know of a server that tend runs now.
#[derive(Debug, Clone, Copy)]
pub struct Current<'a> {
    pub config: &'a ServerConfig,
    /// The `env_file` text its running process was started with (`None`: no env_file, no
    /// process, or a process adopted from an earlier tend, whose start tend did not see).
    pub env_file_text: Option<&'a str>,
    /// It runs, or is meant to (starting, backing off, crashed or fatal and due a retry), and
    /// nobody is stopping it: a change that needs a new process restarts it.
    pub wants_process: bool,
}

/// The keys of `new` that shape the process and differ from `old`, in config-file words.
pub fn process_changes(old: &ServerConfig, new: &ServerConfig) -> Vec<&'static str> {
    let ServerConfig {
        id: _,
        command,
        cwd,
        env,
        env_file,
        ports,
        autostart: _,
        restart: _,
        max_restarts: _,
        backoff: _,
        stop_signal,
        stop_timeout: _,
        start_timeout: _,
        retry_fatal: _,
        depends_on,
        group: _,
        line: _,
        max_memory: _,
        health: _,
        watch: _,
        restart_every: _,
        restart_at: _,
    } = new;
    let mut changed = Vec::new();
    if *command != old.command {
        changed.push("command");
    }
    if *cwd != old.cwd {
        changed.push("cwd");
    }
    if *env != old.env {
        changed.push("env");
    }
    if *env_file != old.env_file {
        changed.push("env_file");
    }
    if *ports != old.ports {
        changed.push("ports");
    }
    if *stop_signal != old.stop_signal {
        changed.push("stop_signal");
    }
    // A set: listing the same dependencies in another order changes nothing.
    let deps = |list: &[String]| list.iter().cloned().collect::<BTreeSet<String>>();
    if deps(depends_on) != deps(&old.depends_on) {
        changed.push("depends_on");
    }
    changed
}

/// The keys of `new` that only say how tend supervises, and differ from `old`.
pub fn supervision_changes(old: &ServerConfig, new: &ServerConfig) -> Vec<&'static str> {
    let ServerConfig {
        id: _,
        command: _,
        cwd: _,
        env: _,
        env_file: _,
        ports: _,
        autostart,
        restart,
        max_restarts,
        backoff,
        stop_signal: _,
        stop_timeout,
        start_timeout,
        retry_fatal,
        depends_on: _,
        group,
        line: _,
        max_memory,
        health,
        watch,
        restart_every,
        restart_at,
    } = new;
    let mut changed = Vec::new();
    if *autostart != old.autostart {
        changed.push("autostart");
    }
    if *restart != old.restart {
        changed.push("restart");
    }
    if *max_restarts != old.max_restarts {
        changed.push("max_restarts");
    }
    if *backoff != old.backoff {
        changed.push("backoff_ms");
    }
    if *stop_timeout != old.stop_timeout {
        changed.push("stop_timeout_ms");
    }
    if *start_timeout != old.start_timeout {
        changed.push("start_timeout_ms");
    }
    if *retry_fatal != old.retry_fatal {
        changed.push("retry_fatal_ms");
    }
    // Only which servers `@name` selects and how the dashboard files them.
    if *group != old.group {
        changed.push("group");
    }
    if *max_memory != old.max_memory {
        changed.push("max_memory");
    }
    // A new check runs against the same process: the monitor is told at the swap.
    if *health != old.health {
        changed.push("health");
    }
    // The watcher is told at the swap, and the next planned restart is worked out anew from
    // the running process's start.
    if *watch != old.watch {
        changed.push("watch");
    }
    if *restart_every != old.restart_every {
        changed.push("restart_every");
    }
    if *restart_at != old.restart_at {
        changed.push("restart_at");
    }
    changed
}

/// Top-level keys that differ and cannot change under a running tend: the listening socket,
/// the state file and its lock, the log folder (children hold files in it), the token and the
/// host policy every connection is checked against, and the monitor's interval. (`on_exit`,
/// `max_sse_clients`, `log_max_bytes` and `log_keep` are applied by the supervisor;
/// `adopt_orphans` only ever acts on `tend up`.)
pub fn fixed_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let Config {
        path: _,
        base_dir: _,
        listen,
        state_file,
        log_dir,
        health_interval,
        auth,
        allowed_hosts,
        on_exit: _,
        log_max_bytes: _,
        log_keep: _,
        max_connections,
        max_sse_clients: _,
        adopt_orphans: _,
        alerts,
        servers: _,
    } = new;
    let mut changed = Vec::new();
    let mut check = |differs: bool, key: &'static str| {
        if differs {
            changed.push(key);
        }
    };
    check(*listen != old.listen, "listen");
    check(*state_file != old.state_file, "state_file");
    check(*log_dir != old.log_dir, "log_dir");
    check(
        *health_interval != old.health_interval,
        "health_interval_ms",
    );
    check(*auth != old.auth, "auth_token");
    check(*allowed_hosts != old.allowed_hosts, "allowed_hosts");
    check(*max_connections != old.max_connections, "max_connections");
    // The alert thread is started once with its rules (and its Alertmanager conditions).
    check(*alerts != old.alerts, "alerts");
    changed
}

/// Sorts every server of `current` and `new` into the plan's lists. `read_env_file` reads an
/// env_file now (`None` when it cannot: the next start reports that, a reload does not restart
/// a running server over it).
pub fn plan(
    current: &[Current],
    new: &Config,
    read_env_file: impl Fn(&Path) -> Option<String>,
) -> ReloadPlan {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Verdict {
        Added,
        Restarted,
        Updated,
        Unchanged,
    }
    let by_id: HashMap<&str, &Current> =
        current.iter().map(|c| (c.config.id.as_str(), c)).collect();
    let mut verdicts: HashMap<&str, Verdict> = HashMap::new();
    let mut changes = BTreeMap::new();
    for server in &new.servers {
        let Some(now) = by_id.get(server.id.as_str()) else {
            verdicts.insert(&server.id, Verdict::Added);
            continue;
        };
        let mut process = process_changes(now.config, server);
        if let (Some(path), Some(started_with)) = (&server.env_file, now.env_file_text) {
            let same_file = now.config.env_file.as_ref() == Some(path);
            if same_file && read_env_file(path).is_some_and(|text| text != started_with) {
                process.push("env_file contents");
            }
        }
        let supervision = supervision_changes(now.config, server);
        let verdict = if !process.is_empty() && now.wants_process {
            changes.insert(server.id.clone(), format!("{} changed", process.join(", ")));
            Verdict::Restarted
        } else if !process.is_empty() || !supervision.is_empty() {
            // A server with no process takes its new settings and stays as it is.
            let mut keys = process;
            keys.extend(supervision);
            changes.insert(server.id.clone(), format!("{} changed", keys.join(", ")));
            Verdict::Updated
        } else {
            Verdict::Unchanged
        };
        verdicts.insert(&server.id, verdict);
    }
    // A server that depends on a restarted one is restarted after it: it was started against
    // the old instance (its address, its data) and must not keep talking to a process that is
    // gone. Only dependents, never the rest of a group (supervisor#1411).
    loop {
        let mut moved = false;
        for server in &new.servers {
            if verdicts[server.id.as_str()] == Verdict::Restarted
                || !by_id
                    .get(server.id.as_str())
                    .is_some_and(|c| c.wants_process)
            {
                continue;
            }
            let restarted_dep = server
                .depends_on
                .iter()
                .find(|d| verdicts.get(d.as_str()) == Some(&Verdict::Restarted));
            if let Some(dep) = restarted_dep {
                verdicts.insert(&server.id, Verdict::Restarted);
                let own = changes
                    .remove(&server.id)
                    .map(|c| format!("; {c}"))
                    .unwrap_or_default();
                changes.insert(server.id.clone(), format!("follows '{dep}'{own}"));
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    let mut plan = ReloadPlan {
        config: new.path.display().to_string(),
        changes,
        ..ReloadPlan::default()
    };
    for server in &new.servers {
        let list = match verdicts[server.id.as_str()] {
            Verdict::Added => &mut plan.added,
            Verdict::Restarted => &mut plan.restarted,
            Verdict::Updated => &mut plan.updated,
            Verdict::Unchanged => &mut plan.unchanged,
        };
        list.push(server.id.clone());
    }
    let kept: HashSet<&str> = new.servers.iter().map(|s| s.id.as_str()).collect();
    plan.removed = current
        .iter()
        .map(|c| c.config.id.clone())
        .filter(|id| !kept.contains(id.as_str()))
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    fn config(servers: &str) -> Config {
        let text = format!(r#"{{"servers": [{servers}]}}"#);
        config::parse(&text, Path::new("/p/tend.json"), Path::new("/p"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn running(config: &Config) -> Vec<Current<'_>> {
        config
            .servers
            .iter()
            .map(|s| Current {
                config: s,
                env_file_text: None,
                wants_process: true,
            })
            .collect()
    }

    fn lists(plan: &ReloadPlan) -> [Vec<&str>; 5] {
        fn ids(v: &[String]) -> Vec<&str> {
            v.iter().map(String::as_str).collect()
        }
        [
            ids(&plan.added),
            ids(&plan.removed),
            ids(&plan.restarted),
            ids(&plan.updated),
            ids(&plan.unchanged),
        ]
    }

    const NO_FILES: fn(&Path) -> Option<String> = |_| None;

    #[test]
    fn each_kind_of_change_lands_in_its_list() {
        let old = config(
            r#"{"id": "a", "command": "x"}, {"id": "b", "command": "x"},
               {"id": "c", "command": "x"}, {"id": "gone", "command": "x"}"#,
        );
        let new = config(
            r#"{"id": "a", "command": "x"}, {"id": "b", "command": "y"},
               {"id": "c", "command": "x", "max_restarts": 3}, {"id": "new", "command": "x"}"#,
        );
        let plan = plan(&running(&old), &new, NO_FILES);
        assert_eq!(
            lists(&plan),
            [vec!["new"], vec!["gone"], vec!["b"], vec!["c"], vec!["a"]]
        );
        assert_eq!(plan.changes["b"], "command changed");
        assert_eq!(plan.changes["c"], "max_restarts changed");
        assert_eq!(plan.config, "/p/tend.json");
    }

    #[test]
    fn the_same_config_is_all_unchanged_whatever_its_lines() {
        let old = config(
            r#"{"id": "a", "command": "x", "depends_on": ["b", "c"]},
               {"id": "b", "command": "x"}, {"id": "c", "command": "x"}"#,
        );
        let new = config(
            r#"
            {"id": "a", "command": "x", "depends_on": ["c", "b"]},
            {"id": "b", "command": "x"}, {"id": "c", "command": "x"}"#,
        );
        assert_ne!(old.servers[0].line, new.servers[0].line);
        let plan = plan(&running(&old), &new, NO_FILES);
        assert_eq!(plan.unchanged, ["a", "b", "c"]);
        assert!(plan.changes.is_empty());
    }

    #[test]
    fn every_process_key_restarts_and_every_supervision_key_updates() {
        let restarts = [
            r#""command": ["x"]"#,
            r#""command": "x", "cwd": "sub""#,
            r#""command": "x", "env": {"A": "1"}"#,
            r#""command": "x", "env_file": ".env""#,
            r#""command": "x", "ports": [9000]"#,
            r#""command": "x", "stop_signal": "SIGINT""#,
            r#""command": "x", "depends_on": ["d"]"#,
        ];
        let updates = [
            r#""command": "x", "autostart": false"#,
            r#""command": "x", "restart": "always""#,
            r#""command": "x", "max_restarts": 1"#,
            r#""command": "x", "backoff_ms": 1"#,
            r#""command": "x", "stop_timeout_ms": 1"#,
            r#""command": "x", "start_timeout_ms": 1"#,
            r#""command": "x", "retry_fatal_ms": 0"#,
            r#""command": "x", "max_memory": "64M""#,
            r#""command": "x", "health": {"log": "ready"}"#,
        ];
        let with = |body: &str| {
            config(&format!(
                r#"{{"id": "s", {body}}}, {{"id": "d", "command": "x"}}"#
            ))
        };
        let old = with(r#""command": "x""#);
        let cases = restarts.iter().map(|b| (b, "restarted"));
        for (body, expected) in cases.chain(updates.iter().map(|b| (b, "updated"))) {
            let plan = plan(&running(&old), &with(body), NO_FILES);
            let got = if plan.restarted == ["s"] {
                "restarted"
            } else if plan.updated == ["s"] {
                "updated"
            } else {
                "unchanged"
            };
            assert_eq!(got, expected, "{body}");
        }
    }

    #[test]
    fn new_env_file_contents_restart_a_running_server_only() {
        let old = config(r#"{"id": "s", "command": "x", "env_file": ".env"}"#);
        let new = old.clone();
        let mut current = running(&old);
        current[0].env_file_text = Some("A=1\n");
        let read = |path: &Path| {
            assert_eq!(path, Path::new("/p/.env"));
            Some("A=2\n".to_string())
        };
        let plan = plan(&current, &new, read);
        assert_eq!(plan.restarted, ["s"]);
        assert_eq!(plan.changes["s"], "env_file contents changed");

        let same = |_: &Path| Some("A=1\n".to_string());
        assert_eq!(super::plan(&current, &new, same).unchanged, ["s"]);
        // Unreadable now: the next start says so; a running server is not restarted over it.
        assert_eq!(super::plan(&current, &new, NO_FILES).unchanged, ["s"]);
        // Not started by this tend: what it was given is not known.
        current[0].env_file_text = None;
        assert_eq!(super::plan(&current, &new, read).unchanged, ["s"]);
    }

    #[test]
    fn dependents_of_a_restarted_server_follow_it_and_nothing_else_moves() {
        let old = config(
            r#"{"id": "db", "command": "x"}, {"id": "api", "command": "x", "depends_on": ["db"]},
               {"id": "web", "command": "x", "depends_on": ["api"]},
               {"id": "side", "command": "x", "depends_on": ["db"]}"#,
        );
        let new = config(
            r#"{"id": "db", "command": "x"}, {"id": "api", "command": "y", "depends_on": ["db"]},
               {"id": "web", "command": "x", "depends_on": ["api"], "max_restarts": 2},
               {"id": "side", "command": "x", "depends_on": ["db"]}"#,
        );
        let plan = plan(&running(&old), &new, NO_FILES);
        assert_eq!(plan.restarted, ["api", "web"]);
        assert_eq!(plan.unchanged, ["db", "side"]);
        assert_eq!(plan.changes["web"], "follows 'api'; max_restarts changed");
    }

    #[test]
    fn a_server_without_a_process_takes_new_settings_without_starting() {
        let old = config(
            r#"{"id": "s", "command": "x"}, {"id": "t", "command": "x", "depends_on": ["s"]}"#,
        );
        let new = config(
            r#"{"id": "s", "command": "y"}, {"id": "t", "command": "x", "depends_on": ["s"]}"#,
        );
        let mut current = running(&old);
        current[0].wants_process = false;
        current[1].wants_process = false;
        let plan = plan(&current, &new, NO_FILES);
        assert_eq!(plan.updated, ["s"]);
        assert_eq!(plan.unchanged, ["t"]);
    }

    #[test]
    fn fixed_top_level_keys_are_named() {
        let old = config("");
        let mut new = old.clone();
        assert!(fixed_changes(&old, &new).is_empty());
        new.listen = "127.0.0.1:1".parse().unwrap();
        new.health_interval = Duration::from_secs(1);
        new.on_exit = config::OnExit::Keep;
        new.max_sse_clients = 1;
        new.log_keep = 1;
        assert_eq!(fixed_changes(&old, &new), ["listen", "health_interval_ms"]);
    }
}
