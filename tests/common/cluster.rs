//! The local three-node RabbitMQ cluster of `scripts/cluster.sh`, driven from a test: started
//! when a [`Cluster`] is made, stopped when it drops, nodes killed and restarted in between.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use amiquip::{AmqpValue, Connection, FieldTable, QueueDeclareOptions, QueueDeleteOptions};

/// The cluster's nodes, numbered 1 to 3 as the script numbers them.
pub struct Cluster {
    urls: Vec<String>,
}

fn script(args: &[&str]) -> Output {
    let started = Instant::now();
    let output = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh"))
        .args(args)
        .output()
        .expect("scripts/cluster.sh runs");
    eprintln!(
        "    cluster.sh {} ({} ms)",
        args.join(" "),
        started.elapsed().as_millis()
    );
    assert!(
        output.status.success(),
        "scripts/cluster.sh {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl Cluster {
    /// Starts the three nodes (or finds them running) and joins them.
    pub fn start() -> Cluster {
        script(&["start"]);
        let urls = String::from_utf8(script(&["urls"]).stdout).unwrap();
        let urls: Vec<String> = urls.lines().map(str::to_owned).collect();
        assert_eq!(urls.len(), 3, "{urls:?}");
        Cluster { urls }
    }

    /// Node `node`'s AMQP URL.
    pub fn url(&self, node: usize) -> &str {
        &self.urls[node - 1]
    }

    /// Every node's URL, `first` first and then the others in order: a client or server given
    /// these connects to `first` while it is up.
    pub fn urls_from(&self, first: usize) -> Vec<String> {
        let mut urls = vec![self.url(first).to_owned()];
        urls.extend(
            (1..=3)
                .filter(|&n| n != first)
                .map(|n| self.url(n).to_owned()),
        );
        urls
    }

    /// `kill -9` of node `node`'s Erlang VM.
    pub fn kill(&self, node: usize) {
        script(&["kill", &node.to_string()]);
    }

    /// Stops node `node` gracefully.
    pub fn stop_node(&self, node: usize) {
        script(&["stop-node", &node.to_string()]);
    }

    /// Starts node `node` again; it rejoins the cluster.
    pub fn start_node(&self, node: usize) {
        script(&["start-node", &node.to_string()]);
    }

    /// Makes sure all three nodes run (restarting any that do not).
    pub fn all_up(&self) {
        script(&["start"]);
    }

    /// The node holding the leader of quorum queue `queue`.
    pub fn leader(&self, queue: &str) -> usize {
        let output = script(&["leader", queue]);
        let text = String::from_utf8_lossy(&output.stdout);
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("cluster.sh leader printed {text:?}"))
    }

    /// Declares `queue` as a durable quorum queue through node `node` (which then usually
    /// holds its leader).
    pub fn declare_quorum(&self, node: usize, queue: &str) {
        let mut connection = Connection::insecure_open(self.url(node)).unwrap();
        let channel = connection.open_channel(None).unwrap();
        let mut arguments = FieldTable::new();
        arguments.insert(
            "x-queue-type".into(),
            AmqpValue::LongString("quorum".into()),
        );
        channel
            .queue_declare(
                queue,
                QueueDeclareOptions {
                    durable: true,
                    arguments,
                    ..QueueDeclareOptions::default()
                },
            )
            .unwrap();
        connection.close().unwrap();
    }

    /// Ready messages in `queue`, asked through any node that answers.
    pub fn message_count(&self, queue: &str) -> u32 {
        for url in &self.urls {
            let Ok(mut connection) = Connection::insecure_open(url) else {
                continue;
            };
            let channel = connection.open_channel(None).unwrap();
            let declared = channel.queue_declare_passive(queue).unwrap();
            let count = declared.declared_message_count().unwrap();
            connection.close().unwrap();
            return count;
        }
        panic!("no cluster node answers");
    }

    /// Deletes `queue`, through any node that answers.
    pub fn delete(&self, queue: &str) {
        for url in &self.urls {
            if let Ok(mut connection) = Connection::insecure_open(url) {
                if let Ok(channel) = connection.open_channel(None) {
                    let _ = channel.queue_delete(queue, QueueDeleteOptions::default());
                }
                let _ = connection.close();
                return;
            }
        }
    }
}

impl Drop for Cluster {
    /// Leaves nothing running.
    fn drop(&mut self) {
        let stopped = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh"))
            .arg("stop")
            .output();
        if !matches!(&stopped, Ok(output) if output.status.success()) {
            eprintln!("scripts/cluster.sh stop failed: {stopped:?}");
        }
    }
}

/// How long a test waits for something the cluster does by itself (an election, a node
/// coming back).
pub const CLUSTER_WAIT: Duration = Duration::from_secs(30);
