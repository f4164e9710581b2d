use std::collections::BTreeMap;
use std::time::Duration;

use cvops_core::ports::Queue;

use super::PassTime;

/// What the functions rely on from a queue. `queue` must be empty and redrive to the empty
/// `dead_letter` queue after `max_receives` receives (2 or more).
pub async fn queue(q: &dyn Queue, queue: &str, dead_letter: &str, max_receives: u32, pass_time: PassTime<'_>) {
    let second = Duration::from_secs(1);
    let attrs = BTreeMap::from([("reason".to_owned(), "tested".to_owned())]);

    // send, receive, ack.
    let id = q.send(queue, r#"{"hello":"queue"}"#, &attrs).await.expect("send");
    let got = receive_all(q, queue, 10, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1, "one message sent, one received");
    assert_eq!((got[0].id.as_str(), got[0].body.as_str()), (id.as_str(), r#"{"hello":"queue"}"#));
    assert_eq!(got[0].attributes.get("reason").map(String::as_str), Some("tested"), "attributes travel");
    assert_eq!(got[0].receive_count, 1);
    assert!(receive_all(q, queue, 10, Duration::from_secs(30)).await.is_empty(), "an in-flight message is invisible");
    q.ack(queue, &got[0].receipt).await.expect("ack");

    // A message not acknowledged comes back after its visibility timeout, with a new receipt.
    q.send(queue, "retry me", &BTreeMap::new()).await.unwrap();
    let first = receive_all(q, queue, 1, second).await;
    assert_eq!(first.len(), 1);
    pass_time(Duration::from_millis(1500));
    let again = receive_all(q, queue, 1, Duration::from_secs(30)).await;
    assert_eq!(again.len(), 1, "an unacknowledged message is redelivered");
    assert_eq!(again[0].body, "retry me");
    assert_eq!(again[0].receive_count, 2, "the receive count rises");
    assert_ne!(again[0].receipt, first[0].receipt, "each delivery has its own receipt");

    // change_visibility to zero releases it at once.
    q.change_visibility(queue, &again[0].receipt, Duration::ZERO).await.expect("change visibility");
    let released = receive_all(q, queue, 1, Duration::from_secs(30)).await;
    assert_eq!(released.len(), 1, "a released message is visible again");
    q.ack(queue, &released[0].receipt).await.unwrap();
    assert!(receive_all(q, queue, 10, Duration::ZERO).await.is_empty(), "the queue is empty after the ack");

    // After max_receives deliveries without an ack, the message moves to the dead-letter queue.
    q.send(queue, "poison", &BTreeMap::new()).await.unwrap();
    for n in 1..=max_receives {
        let got = receive_all(q, queue, 1, second).await;
        assert_eq!(got.len(), 1, "delivery {n} of the poison message");
        pass_time(Duration::from_millis(1500));
    }
    assert!(receive_all(q, queue, 10, second).await.is_empty(), "past max receives it is not delivered again");
    let dead = receive_all(q, dead_letter, 10, Duration::from_secs(30)).await;
    assert_eq!(dead.len(), 1, "it is in the dead-letter queue");
    assert_eq!(dead[0].body, "poison", "with its body intact");
    q.ack(dead_letter, &dead[0].receipt).await.unwrap();

    // A batch receive returns several messages.
    for i in 0..5 {
        q.send(queue, &format!("m{i}"), &BTreeMap::new()).await.unwrap();
    }
    let batch = receive_all(q, queue, 10, Duration::from_secs(30)).await;
    let mut bodies: Vec<_> = batch.iter().map(|m| m.body.clone()).collect();
    bodies.sort();
    assert_eq!(bodies, ["m0", "m1", "m2", "m3", "m4"], "every message of a batch arrives once");
    for m in &batch {
        q.ack(queue, &m.receipt).await.unwrap();
    }
}

/// SQS may return fewer messages than are visible on one call: ask a few times.
async fn receive_all(q: &dyn Queue, queue: &str, max: usize, visibility: Duration) -> Vec<cvops_core::ports::Message> {
    let mut out = Vec::new();
    for _ in 0..3 {
        if out.len() >= max {
            break;
        }
        out.extend(q.receive(queue, max - out.len(), visibility).await.expect("receive"));
    }
    out
}
