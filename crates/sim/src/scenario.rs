//! The scenario file: `shared/design/scenario-format.md`, a public contract.
//!
//! [`Scenario::from_json`] reads a file strictly: unknown fields, unknown
//! endpoints, endpoints used before they join, invalid levels or counters are
//! errors that name the JSON path (`steps[3].authenticate.by: unknown endpoint "A9"`).

use std::collections::{BTreeMap, BTreeSet};

use atm_engine::{KeyMode, Policy, Propagation, TrustLevel};
use atm_tm::{BareJid, Encryption};
use serde::Deserialize;

/// A scenario that was read and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Shown in reports.
    pub name: String,
    /// The `encryption` of every trust message.
    pub encryption: Encryption,
    /// The security policy of every endpoint.
    pub policy: Policy,
    /// The rule set of every endpoint.
    pub propagation: Propagation,
    /// One key per endpoint or per account.
    pub keys: KeyMode,
    /// The endpoints, in declaration order.
    pub endpoints: Vec<EndpointSpec>,
    /// The timeline.
    pub steps: Vec<Step>,
}

/// An endpoint of the scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// Its short label (`A1`).
    pub name: String,
    /// Its account.
    pub jid: BareJid,
    /// `true` if it does not exist until a `join` step.
    pub joins_later: bool,
    /// Which implementation plays it (`"implementation"`, default `atm`).
    /// Only `--transport xmpp` can play a non-`atm` endpoint.
    pub implementation: Implementation,
}

/// The implementation that plays an endpoint: an extension of the format
/// (`docs/live-scenarios.md`, "Mixed scenarios").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Implementation {
    /// This project's engine (the default).
    #[default]
    Atm,
    /// A QXmpp peer process (`interop/qxmpp-peer`), over `--transport xmpp`
    /// with `--qxmpp-peer`.
    Qxmpp,
}

impl Implementation {
    /// The name in a scenario file.
    pub fn as_str(self) -> &'static str {
        match self {
            Implementation::Atm => "atm",
            Implementation::Qxmpp => "qxmpp",
        }
    }
}

impl Scenario {
    /// The first endpoint (index and spec) not played by this project's
    /// engine, if any.
    pub fn first_foreign_endpoint(&self) -> Option<(usize, &EndpointSpec)> {
        self.endpoints
            .iter()
            .enumerate()
            .find(|(_, e)| e.implementation != Implementation::Atm)
    }
}

/// The level an `expect` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedLevel {
    /// Exactly this level.
    Exactly(TrustLevel),
    /// Any trusted level except `undecided`.
    Trusted,
    /// Either distrusted level.
    Distrusted,
}

impl ExpectedLevel {
    /// Does `level` satisfy it?
    pub fn matches(self, level: TrustLevel) -> bool {
        match self {
            ExpectedLevel::Exactly(l) => l == level,
            ExpectedLevel::Trusted => level.is_trusted(),
            ExpectedLevel::Distrusted => level.is_distrusted(),
        }
    }

    /// The name used in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            ExpectedLevel::Exactly(l) => l.as_str(),
            ExpectedLevel::Trusted => "trusted",
            ExpectedLevel::Distrusted => "distrusted",
        }
    }
}

/// The order in which an endpoint coming back receives what was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// In the order sent.
    Sent,
    /// Newest first.
    Reverse,
}

/// Who an injected message claims to come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InjectFrom {
    /// An endpoint of the scenario.
    Endpoint(String),
    /// An outside sender: account and key name (an endpoint's key if `key`
    /// names one, otherwise a fresh key).
    Outside {
        /// The sender's account.
        jid: BareJid,
        /// The key name.
        key: String,
    },
}

/// One step of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The user of `by` authenticates the keys of `keys_of`, one action per key.
    Authenticate {
        /// The acting endpoint.
        by: String,
        /// Whose keys.
        keys_of: Vec<String>,
    },
    /// The user of `by` distrusts the keys of `keys_of`, one action per key.
    Distrust {
        /// The acting endpoint.
        by: String,
        /// Whose keys.
        keys_of: Vec<String>,
    },
    /// `by` scans the Trust Message URI of `uri_of`.
    Scan {
        /// The scanning endpoint.
        by: String,
        /// The endpoint showing its URI.
        uri_of: String,
    },
    /// The endpoint goes offline.
    Offline(String),
    /// The endpoint comes back and receives what was kept.
    Online {
        /// The endpoint.
        endpoint: String,
        /// In which order.
        order: Order,
    },
    /// An endpoint declared with `joins_later` appears.
    Join(String),
    /// Endpoints learn keys.
    Fetch {
        /// Who fetches (`None`: every endpoint that exists).
        by: Option<Vec<String>>,
        /// Whose keys.
        keys_of: Vec<String>,
    },
    /// The endpoint's process restarts from its store.
    Restart(String),
    /// Message `message` is delivered to `to` once more.
    Replay {
        /// Its sequence number.
        message: u64,
        /// The endpoint.
        to: String,
    },
    /// A crafted trust message arrives.
    Inject {
        /// The receiving endpoints.
        to: Vec<String>,
        /// The claimed sender.
        from: InjectFrom,
        /// The SCE time (`None`: the next network time).
        time: Option<chrono::DateTime<chrono::Utc>>,
        /// `false`: it arrives in plaintext.
        encrypted: bool,
        /// The element, with `{key:NAME}` placeholders.
        trust_message: String,
    },
    /// A level check.
    Expect {
        /// Where.
        at: String,
        /// About whose key.
        key_of: String,
        /// The expected level.
        level: ExpectedLevel,
    },
    /// A level check among every pair.
    ExpectMesh {
        /// The endpoints.
        among: Vec<String>,
        /// The expected level.
        level: ExpectedLevel,
    },
    /// Counter checks.
    ExpectCounts(BTreeMap<String, u64>),
}

/// The counters of the format, in the order they are reported.
pub const COUNTERS: [&str; 8] = [
    "manual_actions",
    "manual_authentications",
    "manual_distrusts",
    "automatic_authentications",
    "automatic_distrusts",
    "trust_messages_sent",
    "deliveries",
    "postponed",
];

/// Why a scenario file was refused: the JSON path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ScenarioError {
    /// Where, as a JSON path (`steps[3].authenticate.by`); `.` for the whole file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ScenarioError {
    fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        ScenarioError {
            path: path.into(),
            message: message.into(),
        }
    }
}

// ---- the raw file, as serde reads it ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    encryption: Option<String>,
    policy: Option<RawPolicy>,
    propagation: Option<RawPropagation>,
    keys: Option<RawKeys>,
    endpoints: Vec<RawEndpoint>,
    steps: Vec<RawStep>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawPolicy {
    Toakafa,
    Manual,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawPropagation {
    Complete,
    Xep,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawKeys {
    PerEndpoint,
    PerAccount,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    name: String,
    jid: String,
    #[serde(default)]
    joins_later: bool,
    #[serde(default)]
    implementation: Option<RawImplementation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawImplementation {
    Atm,
    Qxmpp,
}

/// A step: an object with exactly one key, the step kind. Read by hand (not
/// serde's derived enum reader) so that a step with no key, two keys or an
/// unknown kind is reported plainly, at its path.
enum RawStep {
    Authenticate(RawDecide),
    Distrust(RawDecide),
    Scan(RawScan),
    Offline(String),
    Online(RawOnline),
    Join(String),
    Fetch(RawFetch),
    Restart(String),
    Replay(RawReplay),
    Inject(RawInject),
    Expect(RawExpect),
    ExpectMesh(RawMesh),
    ExpectCounts(BTreeMap<String, u64>),
}

/// The step kinds, as written in a file.
const STEP_KINDS: [&str; 13] = [
    "authenticate",
    "distrust",
    "scan",
    "offline",
    "online",
    "join",
    "fetch",
    "restart",
    "replay",
    "inject",
    "expect",
    "expect_mesh",
    "expect_counts",
];

impl<'de> Deserialize<'de> for RawStep {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(StepVisitor)
    }
}

struct StepVisitor;

impl<'de> serde::de::Visitor<'de> for StepVisitor {
    type Value = RawStep;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "a step: an object with exactly one key, one of {}",
            STEP_KINDS.join(", ")
        )
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawStep, A::Error> {
        use serde::de::Error;
        let Some(kind) = map.next_key::<String>()? else {
            return Err(A::Error::custom(format!(
                "a step needs exactly one key, one of {}; found none",
                STEP_KINDS.join(", ")
            )));
        };
        let step = match kind.as_str() {
            "authenticate" => RawStep::Authenticate(map.next_value()?),
            "distrust" => RawStep::Distrust(map.next_value()?),
            "scan" => RawStep::Scan(map.next_value()?),
            "offline" => RawStep::Offline(map.next_value()?),
            "online" => RawStep::Online(map.next_value()?),
            "join" => RawStep::Join(map.next_value()?),
            "fetch" => RawStep::Fetch(map.next_value()?),
            "restart" => RawStep::Restart(map.next_value()?),
            "replay" => RawStep::Replay(map.next_value()?),
            "inject" => RawStep::Inject(map.next_value()?),
            "expect" => RawStep::Expect(map.next_value()?),
            "expect_mesh" => RawStep::ExpectMesh(map.next_value()?),
            "expect_counts" => RawStep::ExpectCounts(map.next_value()?),
            other => {
                return Err(A::Error::custom(format!(
                    "unknown step `{other}`, expected one of {}",
                    STEP_KINDS.join(", ")
                )))
            }
        };
        if let Some(second) = map.next_key::<String>()? {
            return Err(A::Error::custom(format!(
                "a step has exactly one key; found `{kind}` and `{second}` (write two steps)"
            )));
        }
        Ok(step)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecide {
    by: String,
    keys_of: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScan {
    by: String,
    uri_of: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawOnline {
    Name(String),
    Detailed(RawOnlineDetailed),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOnlineDetailed {
    endpoint: String,
    #[serde(default)]
    order: Option<RawOrder>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawOrder {
    Sent,
    Reverse,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFetch {
    by: RawFetchBy,
    keys_of: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawFetchBy {
    List(Vec<String>),
    All(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplay {
    message: u64,
    to: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInject {
    to: Vec<String>,
    from: RawInjectFrom,
    time: Option<String>,
    encrypted: Option<bool>,
    trust_message: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawInjectFrom {
    Endpoint(String),
    Outside(RawOutside),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutside {
    jid: String,
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    at: String,
    key_of: String,
    level: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMesh {
    among: Vec<String>,
    level: String,
}

// ---- reading and checking ----

impl Scenario {
    /// Reads a scenario from JSON text. `default_name` is used when the file
    /// has no `name` (the runner passes the file name).
    pub fn from_json(text: &str, default_name: &str) -> Result<Scenario, ScenarioError> {
        let deserializer = &mut serde_json::Deserializer::from_str(text);
        let raw: RawScenario = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            ScenarioError::at(
                if path.is_empty() || path == "?" {
                    ".".into()
                } else {
                    path
                },
                clean(&inner),
            )
        })?;
        Checker::default().check(raw, default_name)
    }
}

/// serde_json appends " at line L column C"; keep it, it helps, but say it plainly.
fn clean(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.contains("did not match any variant of untagged enum RawOnline") {
        return format!("expected an endpoint name or {{\"endpoint\": E, \"order\": \"sent\"|\"reverse\"}} (line {}, column {})", e.line(), e.column());
    }
    if text.contains("untagged enum RawFetchBy") {
        return format!(
            "expected \"all\" or a list of endpoint names (line {}, column {})",
            e.line(),
            e.column()
        );
    }
    if text.contains("untagged enum RawInjectFrom") {
        return format!(
            "expected an endpoint name or {{\"jid\": J, \"key\": NAME}} (line {}, column {})",
            e.line(),
            e.column()
        );
    }
    text
}

#[derive(Default)]
struct Checker {
    names: BTreeMap<String, usize>,
    joined: BTreeSet<String>,
}

impl Checker {
    fn check(mut self, raw: RawScenario, default_name: &str) -> Result<Scenario, ScenarioError> {
        let encryption = match raw.encryption {
            None => Encryption::OMEMO2,
            Some(e) => {
                Encryption::new(e).map_err(|e| ScenarioError::at("encryption", e.to_string()))?
            }
        };
        if raw.endpoints.is_empty() {
            return Err(ScenarioError::at(
                "endpoints",
                "at least one endpoint is needed",
            ));
        }
        let mut endpoints = Vec::new();
        for (i, e) in raw.endpoints.into_iter().enumerate() {
            let path = format!("endpoints[{i}]");
            if e.name.is_empty() {
                return Err(ScenarioError::at(
                    format!("{path}.name"),
                    "empty endpoint name",
                ));
            }
            if e.name.contains(['{', '}', ':']) {
                return Err(ScenarioError::at(
                    format!("{path}.name"),
                    format!(
                        "endpoint name {:?} may not contain '{{', '}}' or ':'",
                        e.name
                    ),
                ));
            }
            if self.names.insert(e.name.clone(), i).is_some() {
                return Err(ScenarioError::at(
                    format!("{path}.name"),
                    format!("duplicate endpoint name {:?}", e.name),
                ));
            }
            let jid: BareJid = e.jid.parse().map_err(|err| {
                ScenarioError::at(
                    format!("{path}.jid"),
                    format!("invalid bare JID {:?}: {err}", e.jid),
                )
            })?;
            if e.jid.contains('/') {
                return Err(ScenarioError::at(
                    format!("{path}.jid"),
                    format!("{:?} is a full JID; a bare JID is needed", e.jid),
                ));
            }
            if !e.joins_later {
                self.joined.insert(e.name.clone());
            }
            endpoints.push(EndpointSpec {
                name: e.name,
                jid,
                joins_later: e.joins_later,
                implementation: match e.implementation {
                    None | Some(RawImplementation::Atm) => Implementation::Atm,
                    Some(RawImplementation::Qxmpp) => Implementation::Qxmpp,
                },
            });
        }
        let mut steps = Vec::new();
        for (i, step) in raw.steps.into_iter().enumerate() {
            steps.push(self.step(i, step)?);
        }
        Ok(Scenario {
            name: raw.name.unwrap_or_else(|| default_name.to_owned()),
            encryption,
            policy: match raw.policy {
                None | Some(RawPolicy::Toakafa) => Policy::Toakafa,
                Some(RawPolicy::Manual) => Policy::Manual,
            },
            propagation: match raw.propagation {
                None | Some(RawPropagation::Complete) => Propagation::Complete,
                Some(RawPropagation::Xep) => Propagation::Xep,
            },
            keys: match raw.keys {
                None | Some(RawKeys::PerEndpoint) => KeyMode::PerEndpoint,
                Some(RawKeys::PerAccount) => KeyMode::PerAccount,
            },
            endpoints,
            steps,
        })
    }

    /// A name that exists and has joined.
    fn joined(&self, path: &str, name: &str) -> Result<String, ScenarioError> {
        if !self.names.contains_key(name) {
            return Err(ScenarioError::at(
                path,
                format!("unknown endpoint {name:?}"),
            ));
        }
        if !self.joined.contains(name) {
            return Err(ScenarioError::at(
                path,
                format!("endpoint {name:?} has not joined yet"),
            ));
        }
        Ok(name.to_owned())
    }

    fn joined_list(&self, path: &str, names: &[String]) -> Result<Vec<String>, ScenarioError> {
        if names.is_empty() {
            return Err(ScenarioError::at(path, "at least one endpoint is needed"));
        }
        names
            .iter()
            .enumerate()
            .map(|(i, n)| self.joined(&format!("{path}[{i}]"), n))
            .collect()
    }

    fn level(path: &str, text: &str) -> Result<ExpectedLevel, ScenarioError> {
        match text {
            "trusted" => Ok(ExpectedLevel::Trusted),
            "distrusted" => Ok(ExpectedLevel::Distrusted),
            _ => text
                .parse::<TrustLevel>()
                .map(ExpectedLevel::Exactly)
                .map_err(|e| ScenarioError::at(path, format!("{e}, or trusted, or distrusted"))),
        }
    }

    fn step(&mut self, i: usize, step: RawStep) -> Result<Step, ScenarioError> {
        let p = format!("steps[{i}]");
        Ok(match step {
            RawStep::Authenticate(d) => Step::Authenticate {
                by: self.joined(&format!("{p}.authenticate.by"), &d.by)?,
                keys_of: self.joined_list(&format!("{p}.authenticate.keys_of"), &d.keys_of)?,
            },
            RawStep::Distrust(d) => Step::Distrust {
                by: self.joined(&format!("{p}.distrust.by"), &d.by)?,
                keys_of: self.joined_list(&format!("{p}.distrust.keys_of"), &d.keys_of)?,
            },
            RawStep::Scan(s) => Step::Scan {
                by: self.joined(&format!("{p}.scan.by"), &s.by)?,
                uri_of: self.joined(&format!("{p}.scan.uri_of"), &s.uri_of)?,
            },
            RawStep::Offline(e) => Step::Offline(self.joined(&format!("{p}.offline"), &e)?),
            RawStep::Online(RawOnline::Name(e)) => Step::Online {
                endpoint: self.joined(&format!("{p}.online"), &e)?,
                order: Order::Sent,
            },
            RawStep::Online(RawOnline::Detailed(d)) => Step::Online {
                endpoint: self.joined(&format!("{p}.online.endpoint"), &d.endpoint)?,
                order: match d.order {
                    None | Some(RawOrder::Sent) => Order::Sent,
                    Some(RawOrder::Reverse) => Order::Reverse,
                },
            },
            RawStep::Join(e) => {
                let path = format!("{p}.join");
                if !self.names.contains_key(&e) {
                    return Err(ScenarioError::at(path, format!("unknown endpoint {e:?}")));
                }
                if self.joined.contains(&e) {
                    return Err(ScenarioError::at(path, format!("endpoint {e:?} already exists (only an endpoint declared with joins_later can join, once)")));
                }
                self.joined.insert(e.clone());
                Step::Join(e)
            }
            RawStep::Fetch(f) => Step::Fetch {
                by: match f.by {
                    RawFetchBy::All(all) if all == "all" => None,
                    RawFetchBy::All(other) => {
                        return Err(ScenarioError::at(
                            format!("{p}.fetch.by"),
                            format!("expected \"all\" or a list of endpoint names, got {other:?}"),
                        ));
                    }
                    RawFetchBy::List(list) => {
                        Some(self.joined_list(&format!("{p}.fetch.by"), &list)?)
                    }
                },
                keys_of: self.joined_list(&format!("{p}.fetch.keys_of"), &f.keys_of)?,
            },
            RawStep::Restart(e) => Step::Restart(self.joined(&format!("{p}.restart"), &e)?),
            RawStep::Replay(r) => {
                if r.message == 0 {
                    return Err(ScenarioError::at(
                        format!("{p}.replay.message"),
                        "message sequence numbers start at 1",
                    ));
                }
                Step::Replay {
                    message: r.message,
                    to: self.joined(&format!("{p}.replay.to"), &r.to)?,
                }
            }
            RawStep::Inject(inj) => {
                let to = self.joined_list(&format!("{p}.inject.to"), &inj.to)?;
                let from = match inj.from {
                    RawInjectFrom::Endpoint(e) => {
                        InjectFrom::Endpoint(self.joined(&format!("{p}.inject.from"), &e)?)
                    }
                    RawInjectFrom::Outside(o) => InjectFrom::Outside {
                        jid: o.jid.parse().map_err(|err| {
                            ScenarioError::at(
                                format!("{p}.inject.from.jid"),
                                format!("invalid bare JID {:?}: {err}", o.jid),
                            )
                        })?,
                        key: if o.key.is_empty() {
                            return Err(ScenarioError::at(
                                format!("{p}.inject.from.key"),
                                "empty key name",
                            ));
                        } else {
                            o.key
                        },
                    },
                };
                let time = match inj.time {
                    None => None,
                    Some(t) => Some(
                        chrono::DateTime::parse_from_rfc3339(&t)
                            .map_err(|e| {
                                ScenarioError::at(
                                    format!("{p}.inject.time"),
                                    format!("invalid RFC 3339 time {t:?}: {e}"),
                                )
                            })?
                            .with_timezone(&chrono::Utc),
                    ),
                };
                check_placeholders(&format!("{p}.inject.trust_message"), &inj.trust_message)?;
                Step::Inject {
                    to,
                    from,
                    time,
                    encrypted: inj.encrypted.unwrap_or(true),
                    trust_message: inj.trust_message,
                }
            }
            RawStep::Expect(e) => Step::Expect {
                at: self.joined(&format!("{p}.expect.at"), &e.at)?,
                key_of: self.joined(&format!("{p}.expect.key_of"), &e.key_of)?,
                level: Self::level(&format!("{p}.expect.level"), &e.level)?,
            },
            RawStep::ExpectMesh(m) => Step::ExpectMesh {
                among: self.joined_list(&format!("{p}.expect_mesh.among"), &m.among)?,
                level: Self::level(&format!("{p}.expect_mesh.level"), &m.level)?,
            },
            RawStep::ExpectCounts(counts) => {
                for name in counts.keys() {
                    if !COUNTERS.contains(&name.as_str()) {
                        return Err(ScenarioError::at(
                            format!("{p}.expect_counts.{name}"),
                            format!(
                                "unknown counter {name:?} (expected one of {})",
                                COUNTERS.join(", ")
                            ),
                        ));
                    }
                }
                Step::ExpectCounts(counts)
            }
        })
    }
}

/// `{key:NAME}` placeholders must be closed and name something.
fn check_placeholders(path: &str, xml: &str) -> Result<(), ScenarioError> {
    let mut rest = xml;
    while let Some(start) = rest.find("{key:") {
        let after = &rest[start + 5..];
        let Some(end) = after.find('}') else {
            return Err(ScenarioError::at(path, "unclosed {key:NAME} placeholder"));
        };
        if after[..end].is_empty() {
            return Err(ScenarioError::at(path, "empty {key:} placeholder"));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}
