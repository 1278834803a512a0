//! The Kafka side of the distributed mode: the topics (seed 002's names by
//! default), the client settings passed through to librdkafka (TLS and
//! SASL included), and a producer that waits for the broker's ack.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::time::Duration;

/// The topics core and agents talk on.
#[derive(Debug, Clone)]
pub struct Topics {
    /// ADD, GET, RESP, STOP.
    pub config: String,
    /// Progress messages.
    pub progress: String,
    /// Metrics messages.
    pub metrics: String,
    /// Ours: uplinks a network posted to our core, for the agents (the
    /// seed's agents take uplinks from the LRC themselves). Each agent
    /// reads its own topic, this name and its instance id
    /// ([`Topics::uplinks_of`]): an uplink goes to the one agent that runs
    /// the device's campaign, and no agent reads the others'.
    pub uplinks: String,
}

impl Topics {
    /// The topic of the uplinks for one agent's devices.
    pub fn uplinks_of(&self, agent: &str) -> String {
        format!("{}.{agent}", self.uplinks)
    }
}

impl Default for Topics {
    fn default() -> Self {
        Self { config: "RMC.CONFIG".into(), progress: "RMC.AGENT".into(), metrics: "RMC.METRIC".into(), uplinks: "RMC.UPLINK".into() }
    }
}

/// Where a new consumer group starts reading.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// Everything the topic holds.
    Earliest,
    /// What comes from now on (uplinks: an old one is no answer).
    Latest,
}

/// Where the broker is and how to talk to it.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// librdkafka properties as given (`security.protocol`, `ssl.ca.location`,
    /// `sasl.mechanism`, `sasl.username`…), applied last.
    pub properties: Vec<(String, String)>,
    pub topics: Topics,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("creating topic {topic}: {error}")]
    Topic { topic: String, error: String },
    #[error("publishing to {topic}: {error}")]
    Publish { topic: String, error: rdkafka::error::KafkaError },
}

impl KafkaSettings {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self { brokers: brokers.into(), properties: Vec::new(), topics: Topics::default() }
    }

    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }

    /// A producer whose sends complete once the broker has the message.
    pub fn producer(&self) -> Result<FutureProducer, BusError> {
        let mut config = self.client();
        config.set("acks", "all").set("message.timeout.ms", "30000");
        Ok(config.create()?)
    }

    /// A consumer in `group`, committing only what it has acted on; a new
    /// group starts at the topics' beginning.
    pub fn consumer(&self, group: &str) -> Result<StreamConsumer, BusError> {
        self.consumer_from(group, Start::Earliest)
    }

    /// A consumer in `group`; a new group starts where `start` says.
    pub fn consumer_from(&self, group: &str, start: Start) -> Result<StreamConsumer, BusError> {
        let mut config = self.client();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", match start {
                Start::Earliest => "earliest",
                Start::Latest => "latest",
            })
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            // Progress should reach the API at once: librdkafka's default
            // waits up to 500 ms to fill a fetch.
            .set("fetch.wait.max.ms", "50")
            // A topic made after the subscription is seen within seconds,
            // not at the default five-minute refresh.
            .set("topic.metadata.refresh.interval.ms", "2000");
        // Applied again so an operator's settings win over ours.
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        Ok(config.create()?)
    }

    /// Create the shared topics (those that exist stay as they are).
    pub async fn create_topics(&self, partitions: i32) -> Result<(), BusError> {
        self.create(&[&self.topics.config, &self.topics.progress, &self.topics.metrics], partitions).await
    }

    /// Wait until the broker's metadata shows `topic` with its partitions:
    /// a topic just made may not show at once, and a consumer that
    /// subscribes before it does would see it only at its next refresh.
    pub async fn await_topic(&self, topic: &str, within: Duration) -> Result<(), BusError> {
        let client: BaseConsumer = self.client().create()?;
        let topic = topic.to_string();
        let seen = tokio::task::spawn_blocking(move || {
            let until = std::time::Instant::now() + within;
            loop {
                let shown = client.fetch_metadata(Some(&topic), Duration::from_secs(1)).is_ok_and(|m| m.topics().iter().any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()));
                if shown || std::time::Instant::now() > until {
                    return (shown, topic);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .await;
        match seen {
            Ok((true, _)) => Ok(()),
            Ok((false, topic)) => Err(BusError::Topic { topic, error: format!("not in the broker's metadata within {within:?}") }),
            Err(e) => Err(BusError::Topic { topic: String::new(), error: e.to_string() }),
        }
    }

    /// Create these topics; those that exist stay as they are.
    pub async fn create(&self, topics: &[&str], partitions: i32) -> Result<(), BusError> {
        let admin: AdminClient<DefaultClientContext> = self.client().create()?;
        let new: Vec<NewTopic> = topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in admin.create_topics(&new, &options).await? {
            match result {
                Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(BusError::Topic { topic, error: code.to_string() }),
            }
        }
        Ok(())
    }
}

/// Publish one message and wait for the broker's ack.
pub async fn publish(producer: &FutureProducer, topic: &str, key: &str, payload: &[u8]) -> Result<(), BusError> {
    producer
        .send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(30))
        .await
        .map(drop)
        .map_err(|(error, _)| BusError::Publish { topic: topic.to_string(), error })
}

/// Publish messages together and wait for the broker's acks: librdkafka
/// sends those of a partition in one request, in the order given. One
/// result per message, in order.
pub async fn publish_all(producer: &FutureProducer, topic: &str, messages: &[(String, Vec<u8>)]) -> Vec<Result<(), BusError>> {
    let sends = messages.iter().map(|(key, payload)| publish(producer, topic, key, payload));
    futures_util::future::join_all(sends).await
}

/// The message a consumer read, or None after logging why not (and a
/// short pause, so a broker that is away is not asked in a tight loop).
pub async fn received<'a>(read: Result<rdkafka::message::BorrowedMessage<'a>, rdkafka::error::KafkaError>, topic: &str) -> Option<rdkafka::message::BorrowedMessage<'a>> {
    match read {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(%topic, error = %e, "reading from the broker");
            tokio::time::sleep(Duration::from_millis(200)).await;
            None
        }
    }
}
