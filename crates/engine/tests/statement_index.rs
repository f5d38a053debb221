//! `StatementIndex` (sources kept as small integers, ids handed out again
//! once a source has no statement left) answers like a plain map of
//! (target, source) to statement, over random insertions and deletions.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;

use atm_engine::{
    Changeset, Decision, DecisionKind, KeyId, KeyRef, Statement, StatementIndex, Word,
};
use chrono::{DateTime, Utc};
use proptest::prelude::*;

fn key(n: u8) -> KeyRef {
    let owner = if n.is_multiple_of(2) {
        "alice@example.org"
    } else {
        "bob@example.org"
    };
    KeyRef::new(owner.parse().unwrap(), KeyId::from_bytes([n; 32]).unwrap())
}

fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + chrono::Duration::seconds(seconds)
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, u8, bool, i64, i64),
    Remove(u8, u8),
    /// A changeset: deletions first, then insertions.
    Commit(Vec<(u8, u8)>, Vec<(u8, u8, bool, i64)>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..6u8, 0..5u8, any::<bool>(), 0..20i64, 0..20i64)
            .prop_map(|(t, s, k, time, stamp)| Op::Insert(t, s, k, time, stamp)),
        3 => (0..6u8, 0..5u8).prop_map(|(t, s)| Op::Remove(t, s)),
        1 => (
            proptest::collection::vec((0..6u8, 0..5u8), 0..4),
            proptest::collection::vec((0..6u8, 0..5u8, any::<bool>(), 0..20i64), 0..4)
        )
            .prop_map(|(r, i)| Op::Commit(r, i)),
    ]
}

fn statement(target: u8, source: u8, trust: bool, time: i64, stamp: i64) -> Statement {
    Statement {
        source: key(source),
        decision: Decision {
            target: key(target),
            kind: if trust {
                DecisionKind::Trust
            } else {
                DecisionKind::Distrust
            },
            time: t(time),
        },
        stamp: t(stamp),
    }
}

type Model = BTreeMap<(KeyRef, KeyRef), Statement>;

fn check(index: &StatementIndex, model: &Model) {
    for a in 0..6u8 {
        let about: Vec<Statement> = model
            .values()
            .filter(|s| s.decision.target == key(a))
            .cloned()
            .collect::<Vec<_>>();
        let mut about_sorted = about.clone();
        about_sorted.sort_by(|x, y| x.source.cmp(&y.source));
        assert_eq!(index.about(&key(a)), about_sorted, "about {a}");
        let mut from: Vec<Statement> = model
            .values()
            .filter(|s| s.source == key(a))
            .cloned()
            .collect();
        from.sort_by(|x, y| x.decision.target.cmp(&y.decision.target));
        assert_eq!(index.from(&key(a)), from, "from {a}");
        for b in 0..6u8 {
            let expected = model.get(&(key(a), key(b)));
            assert_eq!(index.of(&key(a), &key(b)).as_ref(), expected, "of {a} {b}");
            assert_eq!(
                index.word_of(&key(a), &key(b)),
                expected.map(Word::of),
                "word_of {a} {b}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn statement_index_matches_a_plain_map(ops in proptest::collection::vec(op(), 1..60)) {
        let mut index = StatementIndex::default();
        let mut model = Model::new();
        for op in ops {
            match op {
                Op::Insert(target, source, trust, time, stamp) => {
                    let s = statement(target, source, trust, time, stamp);
                    index.insert(&s);
                    model.insert((key(target), key(source)), s);
                }
                Op::Remove(target, source) => {
                    index.remove(&key(target), &key(source));
                    model.remove(&(key(target), key(source)));
                }
                Op::Commit(removed, inserted) => {
                    let changes = Changeset {
                        unstate: removed.iter().map(|(t, s)| (key(*t), key(*s))).collect(),
                        statements: inserted
                            .iter()
                            .map(|(t, s, k, time)| statement(*t, *s, *k, *time, *time))
                            .collect(),
                        ..Changeset::default()
                    };
                    index.commit(&changes);
                    for (t, s) in &removed {
                        model.remove(&(key(*t), key(*s)));
                    }
                    for s in changes.statements {
                        model.insert((s.decision.target.clone(), s.source.clone()), s);
                    }
                }
            }
            check(&index, &model);
        }
    }
}
