//! The fleet view: every data plane that ever connected, its connection
//! state, acked version, last NACK and latest metrics, plus routing of
//! command results back to whoever sent the command.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use switchyard_shared::proto;
use tokio::sync::mpsc;

use crate::time_util::now_unix_ms;

/// The outbound half of a node's Sync stream.
pub type NodeSender = mpsc::Sender<Result<proto::ControlMessage, tonic::Status>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NackInfo {
    pub version: u64,
    pub error: String,
}

/// What the control plane knows about one node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatus {
    pub node_id: String,
    pub build: String,
    pub connected: bool,
    pub last_seen_unix_ms: u64,
    /// When the current (or last) connection was opened.
    pub connected_at_unix_ms: u64,
    /// 0 until the node acks a snapshot (or says in Hello it runs one).
    pub acked_version: u64,
    pub last_nack: Option<NackInfo>,
    /// The latest metrics report and when it arrived. Shared, so listing
    /// the fleet (polled often) does not copy reports of thousands of rules.
    pub metrics: Option<(u64, Arc<proto::MetricsReport>)>,
}

struct NodeEntry {
    status: NodeStatus,
    /// Connection generation and sender, while connected. The generation
    /// keeps an old stream that ends late from disconnecting a newer one.
    conn: Option<(u64, NodeSender)>,
}

/// The result of a command as reported by one node.
pub type CommandReply = (String, proto::CommandResult);

#[derive(Default)]
pub struct NodeRegistry {
    nodes: Mutex<BTreeMap<String, NodeEntry>>,
    next_conn: AtomicU64,
    /// Command id -> where its results go.
    pending: Mutex<HashMap<String, mpsc::UnboundedSender<CommandReply>>>,
}

impl NodeRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, NodeEntry>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection from Hello; returns its generation.
    pub fn connect(&self, hello: &proto::Hello, sender: NodeSender) -> u64 {
        let generation = self.next_conn.fetch_add(1, Ordering::Relaxed) + 1;
        let now = now_unix_ms();
        let mut nodes = self.lock();
        let entry = nodes
            .entry(hello.node_id.clone())
            .or_insert_with(|| NodeEntry {
                status: NodeStatus {
                    node_id: hello.node_id.clone(),
                    build: String::new(),
                    connected: false,
                    last_seen_unix_ms: now,
                    connected_at_unix_ms: now,
                    acked_version: 0,
                    last_nack: None,
                    metrics: None,
                },
                conn: None,
            });
        entry.status.build = hello.build.clone();
        entry.status.connected = true;
        entry.status.last_seen_unix_ms = now;
        entry.status.connected_at_unix_ms = now;
        // The node says what it runs; that is what it has acked.
        entry.status.acked_version = hello.last_applied_version;
        entry.conn = Some((generation, sender));
        generation
    }

    fn with_node(&self, node_id: &str, f: impl FnOnce(&mut NodeStatus)) {
        if let Some(entry) = self.lock().get_mut(node_id) {
            entry.status.last_seen_unix_ms = now_unix_ms();
            f(&mut entry.status);
        }
    }

    pub fn touch(&self, node_id: &str) {
        self.with_node(node_id, |_| {});
    }

    pub fn ack(&self, node_id: &str, version: u64) {
        self.with_node(node_id, |s| s.acked_version = version);
    }

    pub fn nack(&self, node_id: &str, version: u64, error: String) {
        self.with_node(node_id, |s| s.last_nack = Some(NackInfo { version, error }));
    }

    pub fn metrics(&self, node_id: &str, report: proto::MetricsReport) {
        let report = Arc::new(report);
        self.with_node(node_id, |s| s.metrics = Some((now_unix_ms(), report)));
    }

    /// Marks the node disconnected if `generation` is still its connection;
    /// returns whether it was.
    pub fn disconnect(&self, node_id: &str, generation: u64) -> bool {
        let mut nodes = self.lock();
        let Some(entry) = nodes.get_mut(node_id) else {
            return false;
        };
        match &entry.conn {
            Some((g, _)) if *g == generation => {
                entry.conn = None;
                entry.status.connected = false;
                entry.status.last_seen_unix_ms = now_unix_ms();
                true
            }
            _ => false,
        }
    }

    /// Every known node, sorted by id.
    pub fn list(&self) -> Vec<NodeStatus> {
        self.lock().values().map(|e| e.status.clone()).collect()
    }

    /// The senders of every connected node.
    pub fn connected(&self) -> Vec<(String, NodeSender)> {
        self.lock()
            .iter()
            .filter_map(|(id, e)| e.conn.as_ref().map(|(_, s)| (id.clone(), s.clone())))
            .collect()
    }

    /// Starts collecting results for command `id`.
    pub fn expect_results(&self, id: &str) -> mpsc::UnboundedReceiver<CommandReply> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), tx);
        rx
    }

    pub fn forget_command(&self, id: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Routes a node's command result to the waiting caller, if any.
    pub fn command_result(&self, node_id: &str, result: proto::CommandResult) {
        self.touch(node_id);
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = pending.get(&result.id) {
            let _ = tx.send((node_id.to_owned(), result));
        }
    }
}
