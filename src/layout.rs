//! What warren declares on the broker for a service, as data: the
//! exchanges, queues (with their arguments) and bindings, from the same
//! code the nodes and subscriptions declare them with. `warren topology
//! <service>` prints it.

use crate::address::{ServiceId, ServiceType};
use crate::config::Config;
use crate::events::RetryPolicy;
use crate::stats::QueueKind;
use serde::Serialize;
use std::collections::BTreeMap;

/// One exchange warren declares: durable, topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ExchangeLayout {
    /// Its name.
    pub name: String,
    /// What it carries: `rpc` (calls) or `events`.
    pub role: &'static str,
}

/// One queue warren declares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct QueueLayout {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub kind: QueueKind,
    /// Whether it survives a broker restart.
    pub durable: bool,
    /// Its `x-` arguments, as the declaration writes them.
    pub arguments: BTreeMap<String, String>,
}

/// One binding of a queue to an exchange.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BindingLayout {
    /// The exchange.
    pub exchange: String,
    /// The queue.
    pub queue: String,
    /// The routing key or pattern.
    pub key: String,
}

/// A service's exchanges, queues and bindings, as warren declares them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Layout {
    /// The exchanges.
    pub exchanges: Vec<ExchangeLayout>,
    /// The queues.
    pub queues: Vec<QueueLayout>,
    /// The bindings.
    pub bindings: Vec<BindingLayout>,
}

impl Layout {
    /// The RPC side of `service` under `config`: the exchange, the work
    /// queue, and the queue and bindings of each of `instances`, with a
    /// node's default settings ([`NodeBuilder`](crate::NodeBuilder)).
    #[must_use]
    pub fn service(config: &Config, service: &ServiceType, instances: &[ServiceId]) -> Self {
        use crate::node::topology::Topology;
        let node = |id: ServiceId| Topology::defaults(config, service, id);
        let any = node(instances.first().cloned().unwrap_or_else(ServiceId::random));
        let mut layout = Self {
            exchanges: vec![ExchangeLayout {
                name: any.exchange.clone(),
                role: "rpc",
            }],
            queues: vec![any.work_layout()],
            bindings: Vec::new(),
        };
        for id in instances {
            let (queue, bindings) = node(id.clone()).instance_layout();
            layout.queues.push(queue);
            layout.bindings.extend(bindings);
        }
        layout
    }

    /// The events side of `service` under `config`: the events exchange,
    /// `<service>.q` bound with `bindings`, the delay queues of `retry`
    /// and `<service>.dlq`, with a subscription's default policies.
    #[must_use]
    pub fn events(
        config: &Config,
        service: &str,
        bindings: &[String],
        retry: &RetryPolicy,
    ) -> Self {
        crate::events::layout(config, service, bindings, retry)
    }

    /// This layout and then `other`'s.
    #[must_use]
    pub fn and(mut self, other: Self) -> Self {
        self.exchanges.extend(other.exchanges);
        self.queues.extend(other.queues);
        self.bindings.extend(other.bindings);
        self
    }
}
