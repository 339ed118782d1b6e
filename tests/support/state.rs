//! Waiting on a connection's state, and on a node's handlers, in fault tests.

use std::time::{Duration, Instant, SystemTime};
use warren::{Connection, ConnectionState, Node};

/// Waits until `conn` is connected by a connection made after `after`,
/// and says when.
pub async fn reconnected(conn: &Connection, after: SystemTime, within: Duration) -> Instant {
    let mut state = conn.state();
    tokio::time::timeout(
        within,
        state
            .wait_for(|s| matches!(s, ConnectionState::Connected { since, .. } if *since >= after)),
    )
    .await
    .expect("not connected again in time")
    .unwrap();
    Instant::now()
}

/// Waits until `conn` noticed it lost its connection, and says when.
pub async fn lost(conn: &Connection, within: Duration) -> Instant {
    let mut state = conn.state();
    tokio::time::timeout(within, state.wait_for(|s| !s.is_connected()))
        .await
        .expect("the loss was not noticed in time")
        .unwrap();
    Instant::now()
}

/// Waits until no handler of `node` runs: none may stay stuck on a dead
/// channel, holding its permit (lapin may never settle an ack whose
/// connection died).
pub async fn handlers_settle(node: &Node) {
    let start = Instant::now();
    while node.in_flight() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{} handlers stuck",
            node.in_flight()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
