use serde_json::{json, Value};

use super::*;

fn data() -> Value {
    json!({
        "status": "completed",
        "duration": 42,
        "cost": 0.5,
        "ended_at": "2026-01-02T10:00:00Z",
        "agent": {"tier": "gold", "name": "Ada"},
        "tags": ["vip", "renewal"],
        "transcript": "Hello, I would like to cancel.",
        "voicemail": null,
        "legs": [{"to": "+15550100", "answered": true}, {"to": "+15550101", "answered": false}],
        "matrix": [[1, 2], [3, 4]]
    })
}

fn holds(filter: Value) -> bool {
    Filter::parse(&filter).unwrap_or_else(|e| panic!("{filter}: {e:?}")).matches(&data())
}

fn refused(filter: Value) -> FilterError {
    Filter::parse(&filter).expect_err("refused")
}

#[test]
fn a_literal_is_equality_and_numbers_compare_by_value() {
    assert!(holds(json!({"status": "completed"})));
    assert!(!holds(json!({"status": "failed"})));
    assert!(holds(json!({"duration": 42.0})));
    assert!(holds(json!({"agent": {"name": "Ada", "tier": "gold"}})), "objects compare whole");
    assert!(holds(json!({"tags": ["vip", "renewal"]})));
    assert!(!holds(json!({"tags": "vip"})), "a literal is not an element test");
    assert!(holds(json!({"voicemail": null})));
    assert!(!holds(json!({"missing": null})), "missing is not null");
}

#[test]
fn eq_and_neq() {
    assert!(holds(json!({"agent.tier": {"$eq": "gold"}})));
    assert!(!holds(json!({"agent.tier": {"$neq": "gold"}})));
    assert!(holds(json!({"agent.tier": {"$neq": "silver"}})));
    assert!(holds(json!({"nowhere.at.all": {"$neq": "gold"}})), "a missing path is not equal");
    assert!(!holds(json!({"duration": {"$eq": "42"}})), "types differ: not equal");
}

#[test]
fn in_and_nin() {
    assert!(holds(json!({"status": {"$in": ["failed", "completed"]}})));
    assert!(!holds(json!({"status": {"$in": []}})));
    assert!(holds(json!({"status": {"$nin": ["failed"]}})));
    assert!(!holds(json!({"status": {"$nin": ["completed"]}})));
    assert!(holds(json!({"missing": {"$nin": ["x"]}})));
    assert!(!holds(json!({"missing": {"$in": ["x"]}})));
    assert!(holds(json!({"duration": {"$in": [41, 42.0]}})));
}

#[test]
fn comparisons_hold_between_numbers_or_between_strings() {
    assert!(holds(json!({"duration": {"$gt": 41}})));
    assert!(!holds(json!({"duration": {"$gt": 42}})));
    assert!(holds(json!({"duration": {"$gte": 42}})));
    assert!(holds(json!({"duration": {"$lt": 42.5}})));
    assert!(!holds(json!({"duration": {"$lt": 42}})));
    assert!(holds(json!({"duration": {"$lte": 42}})));
    assert!(holds(json!({"cost": {"$gt": 0.25, "$lt": 1}})), "operators of one path all hold");
    assert!(holds(json!({"ended_at": {"$gte": "2026-01-01T00:00:00Z"}})));
    assert!(!holds(json!({"ended_at": {"$lt": "2026-01-01"}})));
    // Type mismatches and missing paths never hold.
    assert!(!holds(json!({"duration": {"$gt": "10"}})));
    assert!(!holds(json!({"status": {"$lt": 5}})));
    assert!(!holds(json!({"tags": {"$gte": 0}})));
    assert!(!holds(json!({"missing": {"$lte": 100}})));
}

#[test]
fn exists() {
    assert!(holds(json!({"agent.tier": {"$exists": true}})));
    assert!(holds(json!({"voicemail": {"$exists": true}})), "null exists");
    assert!(holds(json!({"agent.region": {"$exists": false}})));
    assert!(!holds(json!({"status": {"$exists": false}})));
    assert!(holds(json!({"status.deeper": {"$exists": false}})), "a string has no fields");
}

#[test]
fn contains_looks_into_strings_and_arrays() {
    assert!(holds(json!({"tags": {"$contains": "vip"}})));
    assert!(!holds(json!({"tags": {"$contains": "vi"}})), "array elements compare whole");
    assert!(holds(json!({"transcript": {"$contains": "cancel"}})));
    assert!(!holds(json!({"transcript": {"$contains": "Cancel"}})), "case matters");
    assert!(holds(json!({"matrix": {"$contains": [3, 4]}})), "nested arrays are elements");
    assert!(!holds(json!({"duration": {"$contains": 4}})));
    assert!(!holds(json!({"transcript": {"$contains": 1}})));
    assert!(!holds(json!({"missing": {"$contains": "x"}})));
}

#[test]
fn paths_go_through_objects_and_array_positions() {
    assert!(holds(json!({"legs.0.answered": true})));
    assert!(holds(json!({"legs.1.to": "+15550101"})));
    assert!(holds(json!({"matrix.1.0": 3})));
    assert!(!holds(json!({"legs.2.to": {"$exists": true}})));
    assert!(!holds(json!({"legs.first.to": {"$exists": true}})));
    assert!(!holds(json!({"agent.0": {"$exists": true}})));
}

#[test]
fn and_or_not_combine() {
    assert!(holds(json!({"$and": [{"status": "completed"}, {"duration": {"$gte": 30}}]})));
    assert!(!holds(json!({"$and": [{"status": "completed"}, {"duration": {"$gte": 60}}]})));
    assert!(holds(json!({"$or": [{"agent.tier": "silver"}, {"tags": {"$contains": "vip"}}]})));
    assert!(!holds(json!({"$or": [{"agent.tier": "silver"}, {"tags": {"$contains": "x"}}]})));
    assert!(holds(json!({"$not": {"status": "failed"}})));
    assert!(!holds(json!({"$not": {"status": "completed"}})));
    assert!(holds(json!({"$not": {"$or": [{"duration": {"$lt": 10}}, {"missing": 1}]}})));
    // The spec's example: every entry must hold.
    let example = json!({"status": "completed", "duration": {"$gte": 30},
        "$or": [{"agent.tier": "gold"}, {"tags": {"$contains": "vip"}}]});
    assert!(holds(example.clone()));
    let mut short = data();
    short["duration"] = json!(12);
    assert!(!Filter::parse(&example).unwrap().matches(&short));
    assert!(holds(json!({})), "an empty filter passes everything");
}

#[test]
fn data_that_is_not_an_object_only_passes_missing_path_tests() {
    let filter = Filter::parse(&json!({"status": {"$neq": "x"}})).unwrap();
    assert!(filter.matches(&json!([1, 2])));
    assert!(filter.matches(&json!("text")));
    assert!(!Filter::parse(&json!({"status": "x"})).unwrap().matches(&Value::Null));
}

#[test]
fn an_invalid_filter_names_the_path_of_its_problem() {
    let at = |filter: Value| refused(filter).path;
    assert_eq!(at(json!("completed")), "filter");
    assert_eq!(at(json!({"duration": {"$gte": true}})), "filter.duration.$gte");
    assert_eq!(at(json!({"duration": {"$between": [1, 2]}})), "filter.duration.$between");
    assert_eq!(at(json!({"status": {"$in": "completed"}})), "filter.status.$in");
    assert_eq!(at(json!({"status": {"$exists": "yes"}})), "filter.status.$exists");
    assert_eq!(at(json!({"status": {"$eq": 1, "plain": 2}})), "filter.status");
    assert_eq!(at(json!({"$or": []})), "filter.$or");
    assert_eq!(at(json!({"$or": [{"a": 1}, 3]})), "filter.$or[1]");
    assert_eq!(at(json!({"$or": [{"a": {"$gt": null}}]})), "filter.$or[0].a.$gt");
    assert_eq!(at(json!({"$not": [1]})), "filter.$not");
    assert_eq!(at(json!({"$nor": []})), "filter.$nor");
    assert_eq!(at(json!({"agent..tier": 1})), "filter.agent..tier");
    let message = refused(json!({"d": {"$gte": []}})).message;
    assert!(message.contains("number or a string"), "{message}");
}

#[test]
fn filters_are_bounded_in_depth_size_and_tests() {
    let mut deep = json!({"a": 1});
    for _ in 0..=DEPTH_MAX {
        deep = json!({"$not": deep});
    }
    assert!(refused(deep).message.contains("deeply"));
    let many: serde_json::Map<String, Value> =
        (0..=TESTS_MAX).map(|i| (format!("f{i}"), json!(i))).collect();
    assert!(refused(Value::Object(many)).message.contains("too many"));
    let long = json!({"a": "x".repeat(TEXT_MAX)});
    assert!(refused(long).message.contains("too long"));
}

#[test]
fn a_stored_filter_reads_back_equal() {
    let filter = Filter::parse(&json!({"duration": {"$gte": 30}})).unwrap();
    let stored = Filter::from_stored(&filter.to_json()).unwrap();
    assert_eq!(stored, filter);
    assert!(stored.matches(&data()));
    assert!(Filter::from_stored("[1]").is_err());
}
