use bytes::Bytes;
use cvops_core::ports::{ObjectStore, ObjectStoreError, ObjectStoreExt};

/// Everything the functions rely on from a bucket. `bucket` exists and `ns` is unused in it.
pub async fn object_store(store: &dyn ObjectStore, bucket: &str, ns: &str) {
    let key = format!("{ns}/a dir/ünï cödé + space.bin");
    let data = Bytes::from_static(b"hello, bucket");

    // put then get returns the same bytes; head agrees on the size.
    let meta = store.put(bucket, &key, data.clone()).await.expect("put");
    assert_eq!(meta.size, data.len() as u64, "put reports the size");
    assert_eq!(store.get(bucket, &key, 1024).await.expect("get"), data, "get returns what put stored");
    let head = store.head(bucket, &key).await.expect("head");
    assert_eq!((head.key.as_str(), head.size), (key.as_str(), data.len() as u64), "head describes the object");

    // A get over the byte limit is refused before the body is read.
    match store.get(bucket, &key, 4).await {
        Err(ObjectStoreError::TooLarge { size, limit, .. }) => assert_eq!((size, limit), (data.len() as u64, 4)),
        other => panic!("a get over the limit must be TooLarge, got {other:?}"),
    }

    // A put replaces the whole object and changes its etag.
    let replaced = store.put(bucket, &key, Bytes::from_static(b"v2")).await.expect("overwrite");
    assert_ne!(replaced.etag, head.etag, "the etag changes with the content");
    assert_eq!(store.get(bucket, &key, 1024).await.unwrap(), Bytes::from_static(b"v2"));

    // Missing objects are NotFound, for get and head alike.
    let missing = format!("{ns}/missing");
    assert!(matches!(store.get(bucket, &missing, 10).await, Err(ObjectStoreError::NotFound { .. })), "get of a missing key");
    assert!(matches!(store.head(bucket, &missing).await, Err(ObjectStoreError::NotFound { .. })), "head of a missing key");
    assert!(!store.exists(bucket, &missing).await.unwrap());

    // copy makes an independent object.
    let copied = format!("{ns}/copy/of.bin");
    store.copy(bucket, &key, bucket, &copied).await.expect("copy");
    assert_eq!(store.get(bucket, &copied, 1024).await.unwrap(), Bytes::from_static(b"v2"), "copy carries the bytes");
    assert!(matches!(store.copy(bucket, &missing, bucket, &copied).await, Err(ObjectStoreError::NotFound { .. })));

    // list by prefix, in key order, across pages.
    for i in 0..5 {
        store.put(bucket, &format!("{ns}/list/item-{i:02}"), Bytes::from(vec![b'x'; i])).await.unwrap();
    }
    store.put(bucket, &format!("{ns}/listing-not-under-prefix"), Bytes::from_static(b"x")).await.unwrap();
    let listed = store.list_all(bucket, &format!("{ns}/list/")).await.expect("list");
    let keys: Vec<_> = listed.iter().map(|m| m.key.clone()).collect();
    let expected: Vec<_> = (0..5).map(|i| format!("{ns}/list/item-{i:02}")).collect();
    assert_eq!(keys, expected, "list returns exactly the keys under the prefix, sorted");
    assert_eq!(listed[3].size, 3, "list reports sizes");
    let partial = store.list_all(bucket, &format!("{ns}/list/item-0")).await.unwrap();
    assert_eq!(partial.len(), 5, "a prefix may end inside a key segment");

    // delete removes; deleting again is fine.
    store.delete(bucket, &key).await.expect("delete");
    assert!(!store.exists(bucket, &key).await.unwrap(), "a deleted object is gone");
    store.delete(bucket, &key).await.expect("deleting an absent object succeeds");
    assert!(store.exists(bucket, &copied).await.unwrap(), "deleting the source leaves the copy");

    // Large objects round-trip intact.
    let big = Bytes::from((0..3_000_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    store.put(bucket, &format!("{ns}/big"), big.clone()).await.unwrap();
    assert_eq!(store.get(bucket, &format!("{ns}/big"), 4_000_000).await.unwrap(), big, "a 3 MB object round-trips");
}
