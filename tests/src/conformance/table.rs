use cvops_core::clock::Clock;
use cvops_core::ports::{Item, Table, TableError, TableExt, RESERVED_ATTRIBUTES};
use serde_json::json;

/// Everything the functions rely on from the single table. `ns` prefixes every partition key.
pub async fn table(table: &dyn Table, clock: &dyn Clock, ns: &str) {
    let pk = format!("{ns}#P");

    // put and get, with versions counting writes.
    let v1 = table.put(Item::new(&pk, "a").with("name", "first").with("n", 1)).await.expect("put");
    assert_eq!(v1, 1, "a new item is at version 1");
    let got = table.get(&pk, "a").await.expect("get").expect("the item is there");
    assert_eq!((got.str_attr("name"), got.i64_attr("n"), got.version), (Some("first"), Some(1), 1));
    assert_eq!(table.put(Item::new(&pk, "a").with("name", "second")).await.unwrap(), 2, "put bumps the version");
    let got = table.get(&pk, "a").await.unwrap().unwrap();
    assert_eq!(got.str_attr("name"), Some("second"));
    assert_eq!(got.i64_attr("n"), None, "put replaces the whole item");
    assert!(table.get(&pk, "missing").await.unwrap().is_none());

    // Nested values survive.
    let nested = json!({"list": [1, "two", true], "map": {"x": 1.5}});
    table.put(Item::new(&pk, "nested").with("doc", nested.clone())).await.unwrap();
    assert_eq!(table.get(&pk, "nested").await.unwrap().unwrap().attrs["doc"], nested, "lists and maps round-trip");

    // The table's own attribute names are refused on every backend, not only on DynamoDB.
    for reserved in RESERVED_ATTRIBUTES {
        let refused = table.put(Item::new(&pk, "reserved").with(reserved, 1)).await;
        assert!(matches!(refused, Err(TableError::Malformed { .. })), "attribute {reserved} must be refused, got {refused:?}");
        let counter = table.add(&pk, "reserved", reserved, 1).await;
        assert!(matches!(counter, Err(TableError::Malformed { .. })), "counter {reserved} must be refused, got {counter:?}");
    }

    // put_if_absent: only the first writer wins.
    table.put_if_absent(Item::new(&pk, "once").with("by", "first")).await.expect("first put_if_absent");
    match table.put_if_absent(Item::new(&pk, "once").with("by", "second")).await {
        Err(TableError::Conflict { .. }) => {}
        other => panic!("a second put_if_absent must conflict, got {other:?}"),
    }
    assert_eq!(table.get(&pk, "once").await.unwrap().unwrap().str_attr("by"), Some("first"));

    // put_if_version: optimistic concurrency.
    let current = table.get(&pk, "a").await.unwrap().unwrap().version;
    let next = table.put_if_version(Item::new(&pk, "a").with("name", "third"), current).await.expect("at the right version");
    assert_eq!(next, current + 1);
    let stale = table.put_if_version(Item::new(&pk, "a").with("name", "lost"), current).await;
    assert!(matches!(stale, Err(TableError::Conflict { .. })), "a stale version must conflict, got {stale:?}");
    let absent = table.put_if_version(Item::new(&pk, "never"), 1).await;
    assert!(matches!(absent, Err(TableError::Conflict { .. })), "put_if_version on an absent item must conflict");
    assert_eq!(table.get(&pk, "a").await.unwrap().unwrap().str_attr("name"), Some("third"));

    // Atomic counters, created on first use.
    assert_eq!(table.add(&pk, "counter", "hits", 5).await.expect("add"), 5);
    assert_eq!(table.add(&pk, "counter", "hits", -2).await.unwrap(), 3);
    assert_eq!(table.add(&pk, "counter", "misses", 1).await.unwrap(), 1, "another field of the same item");
    let counter = table.get(&pk, "counter").await.unwrap().unwrap();
    assert_eq!((counter.i64_attr("hits"), counter.i64_attr("misses")), (Some(3), Some(1)));
    // Concurrent adds all count.
    let adds = (0..20).map(|_| table.add(&pk, "counter", "hits", 1));
    for result in futures::future::join_all(adds).await {
        result.expect("concurrent add");
    }
    assert_eq!(table.get(&pk, "counter").await.unwrap().unwrap().i64_attr("hits"), Some(23), "no add is lost");
    // Many counters of one item in one atomic update, concurrently too.
    let deltas: Vec<(String, i64)> = vec![("hits".into(), 2), ("bin_03".into(), 1), ("bin_07".into(), 4)];
    let flushes = (0..5).map(|_| table.add_all(&pk, "counter", &deltas, None));
    for result in futures::future::join_all(flushes).await {
        result.expect("add_all");
    }
    let counter = table.get(&pk, "counter").await.unwrap().unwrap();
    assert_eq!(
        (counter.i64_attr("hits"), counter.i64_attr("bin_03"), counter.i64_attr("bin_07"), counter.i64_attr("misses")),
        (Some(33), Some(5), Some(20), Some(1)),
        "every delta of every add_all counts; other fields are kept"
    );
    let refused = table.add_all(&pk, "counter", &[("ok".into(), 1), ("version".into(), 1)], None).await;
    assert!(matches!(refused, Err(TableError::Malformed { .. })), "a reserved counter name is refused, got {refused:?}");
    assert_eq!(table.get(&pk, "counter").await.unwrap().unwrap().i64_attr("ok"), None, "a refused add_all adds nothing");

    // Query by partition and sort-key prefix, in order, with a cursor.
    let qpk = format!("{ns}#Q");
    for i in 0..7 {
        table.put(Item::new(&qpk, format!("IMG#{i:02}")).with("i", i)).await.unwrap();
    }
    table.put(Item::new(&qpk, "SHA#zz")).await.unwrap();
    table.put(Item::new(format!("{qpk}-other"), "IMG#00")).await.unwrap();
    let first = table.query(&qpk, "IMG#", 3, None).await.expect("query");
    assert_eq!(first.items.iter().map(|i| i.sk.as_str()).collect::<Vec<_>>(), ["IMG#00", "IMG#01", "IMG#02"]);
    assert!(first.next.is_some(), "a full page has a cursor");
    let second = table.query(&qpk, "IMG#", 3, first.next).await.unwrap();
    assert_eq!(second.items.iter().map(|i| i.sk.as_str()).collect::<Vec<_>>(), ["IMG#03", "IMG#04", "IMG#05"]);
    let all = table.query_all(&qpk, "IMG#").await.unwrap();
    assert_eq!(all.len(), 7, "the prefix excludes SHA# and other partitions");
    assert_eq!(all[6].i64_attr("i"), Some(6));
    assert_eq!(table.query_all(&qpk, "").await.unwrap().len(), 8, "an empty prefix is the whole partition");

    // Expiry: an item past its time reads as absent, even if the backend still holds it.
    let now = clock.now_millis() / 1000;
    table.put(Item::new(&pk, "expired").expiring_at(now - 10)).await.unwrap();
    table.put(Item::new(&pk, "fresh").expiring_at(now + 3600)).await.unwrap();
    assert!(table.get(&pk, "expired").await.unwrap().is_none(), "an expired item is not returned");
    assert!(table.get(&pk, "fresh").await.unwrap().is_some(), "an item before its expiry is returned");
    assert!(table.query_all(&pk, "").await.unwrap().iter().all(|i| i.sk != "expired"), "query skips expired items");
    table.put_if_absent(Item::new(&pk, "expired").with("reborn", true)).await.expect("an expired item counts as absent");
    table.add_all(&pk, "expiring-counter", &[("hits".into(), 1)], Some(now + 3600)).await.expect("add_all with an expiry");
    let counter = table.get(&pk, "expiring-counter").await.unwrap().expect("the counter is there");
    assert_eq!((counter.i64_attr("hits"), counter.expires_at), (Some(1), Some(now + 3600)), "add_all sets the expiry");

    // delete, idempotently.
    table.delete(&pk, "a").await.expect("delete");
    assert!(table.get(&pk, "a").await.unwrap().is_none());
    table.delete(&pk, "a").await.expect("deleting an absent item succeeds");
}
