//! fib-rpc on a real three-node RabbitMQ cluster (`scripts/cluster.sh`) with a durable quorum
//! queue, under load: 16 caller threads on one client given all three URLs, and two servers.
//! Nodes are killed with `kill -9` or restarted one by one while the load runs.
//!
//! With retries (the Fibonacci client's default) no call may fail and none may outlive its
//! deadline, both servers keep serving, and the queue is empty afterwards. Without retries only
//! the calls in flight when a node dies may fail, each with a typed error. With two of the three
//! nodes down (no quorum) calls end by their deadlines with a typed error, and service resumes
//! by itself once a node returns.
//!
//! The scenarios share one cluster, so they run one after another inside one test; each runs
//! to the end even if an earlier one failed, and the test fails listing every scenario that
//! did. Each prints a `FAULT` line and the summary table at the end (`--nocapture`).

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, CLUSTER_WAIT};
use common::load::{Load, LoadConfig, Run, MARGIN};
use common::{eventually, unique_connection_name};
use fib_rpc::{
    ClientOptions, FibonacciHandler, FibonacciRpcClient, QueueKind, RpcServer, ServerOptions,
};

/// The load: 16 callers, mostly small `n`, a 10 s deadline per call.
const LOAD: LoadConfig = LoadConfig {
    callers: 16,
    per_call: Duration::from_secs(10),
    pause: Duration::from_millis(2),
    big_every: 16,
};

/// One scenario's queue, client and servers, placed on chosen nodes.
struct Setup<'c> {
    cluster: &'c Cluster,
    queue: String,
    client: Arc<FibonacciRpcClient>,
    servers: Vec<RpcServer>,
}

impl<'c> Setup<'c> {
    /// A durable quorum queue whose leader is on `leader`, the client connected to
    /// `client_node` and both servers to `server_node`; each is given all three URLs.
    fn new(
        cluster: &'c Cluster,
        purpose: &str,
        (leader, client_node, server_node): (usize, usize, usize),
        retry: bool,
    ) -> Setup<'c> {
        let queue = format!(
            "fib-rpc-test-cluster-{purpose}-{}",
            uuid::Uuid::new_v4().simple()
        );
        cluster.declare_quorum(leader, &queue);
        assert_eq!(
            cluster.leader(&queue),
            leader,
            "the leader is where it was declared"
        );
        let servers = (0..2)
            .map(|i| {
                RpcServer::start_failover(
                    &cluster.urls_from(server_node),
                    ServerOptions::default()
                        .queue(queue.as_str())
                        .declare_as(QueueKind::DurableQuorum)
                        .workers(2)
                        .heartbeat(2)
                        .connect_timeout(Duration::from_secs(2))
                        .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(1))
                        .stop_timeout(Duration::from_secs(10))
                        .connection_name(unique_connection_name(&format!("cluster-server-{i}"))),
                    FibonacciHandler::default(),
                )
                .expect("server starts")
            })
            .collect();
        let client = FibonacciRpcClient::connect_failover(
            &cluster.urls_from(client_node),
            ClientOptions::default()
                .queue(queue.as_str())
                .idempotent(retry)
                .heartbeat(2)
                .connect_timeout(Duration::from_secs(2))
                .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(1))
                .connection_name(unique_connection_name("cluster-client")),
        )
        .expect("client connects");
        Setup {
            cluster,
            queue,
            client: Arc::new(client),
            servers,
        }
    }

    fn replied(&self) -> Vec<u64> {
        self.servers.iter().map(|s| s.stats().replied).collect()
    }

    /// Prints the summary line and returns the table row.
    fn report(&self, run: &Run, fault: &str, since: Instant) -> Row {
        let servers: Vec<(&str, String)> = ["server 1", "server 2"]
            .into_iter()
            .zip(&self.servers)
            .map(|(name, server)| (name, format!("{:?}", server.stats())))
            .collect();
        run.report(fault, since, &self.client.rpc().stats(), &servers);
        Row {
            fault: fault.to_owned(),
            calls: run.calls(),
            failed: run.calls() - run.right(),
            slowest: run.slowest(),
            recovery: run.recovery(since),
        }
    }

    /// Both servers answered since `before`; then stops them and checks that nothing is left
    /// in the queue (every request answered and acked, none stranded).
    fn finish(self, before: &[u64]) {
        let after = self.replied();
        for (i, (was, now)) in before.iter().zip(&after).enumerate() {
            assert!(
                now > was,
                "server {} stopped serving: {before:?} -> {after:?}",
                i + 1
            );
        }
        self.client.close();
        for server in self.servers {
            server.stop().expect("server stops");
        }
        let empty = eventually(Duration::from_secs(10), || {
            self.cluster.message_count(&self.queue) == 0
        });
        assert!(
            empty,
            "{} requests left in the queue",
            self.cluster.message_count(&self.queue)
        );
        self.cluster.delete(&self.queue);
    }
}

/// One line of the summary table.
struct Row {
    fault: String,
    calls: usize,
    failed: usize,
    slowest: Duration,
    recovery: Option<Duration>,
}

/// Checks shared by every run with retries: no call failed, none late, answers right.
fn assert_nothing_lost(run: &Run) {
    run.assert_answers_right();
    run.assert_within_deadlines(MARGIN);
    run.assert_failures_only(&[]);
}

/// When a node was killed: between these two instants (the script finds the node's process,
/// kills it and waits until its port is closed).
type Kill = (Instant, Instant);

/// Kills node `node`, and says when.
fn kill(cluster: &Cluster, node: usize) -> Kill {
    let before = Instant::now();
    cluster.kill(node);
    (before, Instant::now())
}

/// How long after a node's death calls may still be refused: until the quorum queue has a new
/// leader and the client has replaced a channel the broker left stale (see `Reader::refused`).
const AFTERMATH: Duration = Duration::from_secs(2);

/// Checks for a run without retries: only calls in flight at one of the `kills` failed (or
/// sent in its [`AFTERMATH`], refused by the broker), each with a typed error.
fn assert_only_in_flight_failed(run: &Run, kills: &[Kill]) {
    run.assert_answers_right();
    run.assert_within_deadlines(MARGIN);
    run.assert_failures_only(&[
        "ConnectionLost",
        "RequestRefused",
        "Unconfirmed",
        "Timeout",
        "NotConnected",
    ]);
    for call in run.failed() {
        let in_flight = |&(from, to): &Kill| call.started <= to && call.ended >= from;
        let aftermath = |&(from, to): &Kill| {
            call.failure() == Some("RequestRefused")
                && call.started >= from
                && call.started <= to + AFTERMATH
        };
        assert!(
            kills.iter().any(|kill| in_flight(kill) || aftermath(kill)),
            "a call not in flight at a kill failed: {call:?}"
        );
    }
}

/// Kill -9 the node holding the queue's leader; the client and both servers are elsewhere.
fn leader_node_killed(cluster: &Cluster) -> Row {
    let setup = Setup::new(cluster, "leader", (1, 2, 3), true);
    let load = Load::start(&setup.client, LOAD);
    load.warm_up(200, CLUSTER_WAIT);
    let (killed, _) = kill(cluster, 1);
    let before = setup.replied();
    assert!(load.wait_recovered(killed, CLUSTER_WAIT));
    sleep(Duration::from_secs(2));
    let run = load.finish();
    let row = setup.report(&run, "kill -9 the leader's node", killed);
    assert_nothing_lost(&run);
    setup.finish(&before);
    cluster.start_node(1);
    row
}

/// Kill -9 the client's node: the client reconnects to another, and its calls in flight go
/// again (with retries) or fail with `ConnectionLost` (without).
fn client_node_killed(cluster: &Cluster, retry: bool) -> Row {
    let setup = Setup::new(cluster, "client-node", (1, 2, 3), retry);
    let load = Load::start(&setup.client, LOAD);
    load.warm_up(200, CLUSTER_WAIT);
    let killing = kill(cluster, 2);
    let killed = killing.0;
    let before = setup.replied();
    assert!(load.wait_recovered(killed, CLUSTER_WAIT));
    sleep(Duration::from_secs(2));
    let run = load.finish();
    let fault = match retry {
        true => "kill -9 the client's node",
        false => "kill -9 the client's node, no retry",
    };
    let row = setup.report(&run, fault, killed);
    let stats = setup.client.rpc().stats();
    if retry {
        assert_nothing_lost(&run);
        assert!(stats.retries >= 1, "calls were in flight: {stats:?}");
    } else {
        assert_only_in_flight_failed(&run, &[killing]);
        assert_eq!(stats.retries, 0, "{stats:?}");
    }
    setup.finish(&before);
    cluster.start_node(2);
    row
}

/// Kill -9 the node holding the client, both servers and the leader; once it is back, kill
/// -9 the node that took over the leader.
fn everything_then_new_leader_killed(cluster: &Cluster, retry: bool) -> Row {
    let setup = Setup::new(cluster, "everything", (1, 1, 1), retry);
    let load = Load::start(&setup.client, LOAD);
    load.warm_up(200, CLUSTER_WAIT);
    let first = kill(cluster, 1);
    assert!(load.wait_recovered(first.0, CLUSTER_WAIT));
    cluster.start_node(1);
    let new_leader = cluster.leader(&setup.queue);
    assert_ne!(new_leader, 1, "another node took over the leader");
    load.warm_up(200, CLUSTER_WAIT);
    let second = kill(cluster, new_leader);
    let before = setup.replied();
    assert!(load.wait_recovered(second.0, CLUSTER_WAIT));
    sleep(Duration::from_secs(2));
    let run = load.finish();
    let fault = match retry {
        true => "kill -9 the node with everything, then the new leader's",
        false => "kill -9 the node with everything, then the new leader's, no retry",
    };
    let row = setup.report(&run, fault, second.0);
    if retry {
        assert_nothing_lost(&run);
    } else {
        assert_only_in_flight_failed(&run, &[first, second]);
    }
    setup.finish(&before);
    cluster.start_node(new_leader);
    row
}

/// Stops and starts each node in turn, gracefully, as an upgrade would.
fn rolling_restart(cluster: &Cluster) -> Row {
    let setup = Setup::new(cluster, "rolling", (1, 2, 3), true);
    let load = Load::start(&setup.client, LOAD);
    load.warm_up(200, CLUSTER_WAIT);
    let began = Instant::now();
    let mut before = setup.replied();
    for node in 1..=3 {
        cluster.stop_node(node);
        before = setup.replied();
        sleep(Duration::from_secs(2));
        cluster.start_node(node);
        let back = Instant::now();
        assert!(load.wait_recovered(back, CLUSTER_WAIT));
    }
    sleep(Duration::from_secs(2));
    let run = load.finish();
    let row = setup.report(&run, "rolling restart of all three nodes", began);
    assert_nothing_lost(&run);
    setup.finish(&before);
    row
}

/// Two of three nodes down: the queue has no quorum. Calls end by their deadlines with a typed
/// error and nothing hangs; once one node is back, service resumes by itself.
fn no_quorum(cluster: &Cluster) -> Row {
    const SHORT: LoadConfig = LoadConfig {
        callers: 16,
        per_call: Duration::from_secs(3),
        pause: Duration::from_millis(2),
        big_every: 16,
    };
    let setup = Setup::new(cluster, "no-quorum", (1, 1, 1), true);
    let load = Load::start(&setup.client, SHORT);
    load.warm_up(200, CLUSTER_WAIT);
    let lost = Instant::now();
    cluster.kill(2);
    cluster.kill(3);
    // Long enough for calls made without a quorum to reach their deadlines.
    sleep(SHORT.per_call + Duration::from_secs(2));
    assert!(
        load.waiting_longer_than(SHORT.per_call + MARGIN) == 0,
        "calls hang past their deadlines"
    );
    let before = setup.replied();
    cluster.start_node(2);
    let back = Instant::now();
    assert!(
        load.wait_recovered(back, CLUSTER_WAIT),
        "service resumes once a quorum is back"
    );
    sleep(Duration::from_secs(2));
    let run = load.finish();
    let row = setup.report(&run, "two of three nodes down, then one back", back);
    run.assert_answers_right();
    run.assert_within_deadlines(MARGIN);
    run.assert_failures_only(&["Unconfirmed", "Timeout"]);
    assert!(
        run.failed().iter().all(|call| call.ended >= lost),
        "only calls made after the quorum was lost failed"
    );
    assert!(
        !run.failed().is_empty(),
        "calls failed while there was no quorum"
    );
    setup.finish(&before);
    cluster.start_node(3);
    let _ = row.recovery.expect("recovered");
    row
}

#[test]
fn a_cluster_loses_no_call_when_nodes_die() {
    let cluster = Cluster::start();
    type Scenario<'a> = (&'static str, Box<dyn Fn() -> Row + 'a>);
    let scenarios: Vec<Scenario<'_>> = vec![
        (
            "leader node killed",
            Box::new(|| leader_node_killed(&cluster)),
        ),
        (
            "client node killed",
            Box::new(|| client_node_killed(&cluster, true)),
        ),
        (
            "client node killed, no retry",
            Box::new(|| client_node_killed(&cluster, false)),
        ),
        (
            "everything, then the new leader",
            Box::new(|| everything_then_new_leader_killed(&cluster, true)),
        ),
        (
            "everything, then the new leader, no retry",
            Box::new(|| everything_then_new_leader_killed(&cluster, false)),
        ),
        ("rolling restart", Box::new(|| rolling_restart(&cluster))),
        ("no quorum", Box::new(|| no_quorum(&cluster))),
    ];
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for (name, scenario) in &scenarios {
        eprintln!("SCENARIO {name}");
        match catch_unwind(AssertUnwindSafe(scenario)) {
            Ok(row) => rows.push(row),
            Err(_) => failed.push(*name),
        }
        // The next scenario starts from three running nodes, whatever this one left.
        cluster.all_up();
    }
    eprintln!("| fault under load | calls | failed | slowest call | recovery |");
    eprintln!("|---|---|---|---|---|");
    for row in &rows {
        eprintln!(
            "| {} | {} | {} | {:.2} s | {} |",
            row.fault,
            row.calls,
            row.failed,
            row.slowest.as_secs_f64(),
            row.recovery
                .map_or("none".to_owned(), |r| format!("{:.2} s", r.as_secs_f64()))
        );
    }
    assert!(failed.is_empty(), "scenarios failed: {failed:?}");
}
