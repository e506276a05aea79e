//! RabbitMQ (AMQP 0-9-1): a queue of the test's own, with a dead-letter exchange.

use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::json;

use super::{
    amqp_url, app_consuming, assert_each_once, broker_or_skip, events_by_call, message, outcome,
    source_state, unique, wait_for_events, wait_until,
};
use crate::backend_tests;
use crate::harness::Backend;
use crate::proxy::Proxy;

backend_tests!(amqp_messages_become_one_event_each_acknowledged_after_commit);

/// A queue of the test's own whose rejected messages go to `<queue>_dead` through a fanout
/// dead-letter exchange; `None` when RabbitMQ is not up.
struct TestQueue {
    channel: Channel,
    _connection: Connection,
    name: String,
    dead: String,
}

async fn connect() -> lapin::Result<Connection> {
    let properties = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current());
    Connection::connect(&amqp_url(), properties).await
}

impl TestQueue {
    async fn new() -> Option<TestQueue> {
        let connection = broker_or_skip("RabbitMQ", connect().await)?;
        let channel = connection.create_channel().await.unwrap();
        let name = unique("q");
        let dead = format!("{name}_dead");
        let exchange = format!("{name}_dlx");
        let options = ExchangeDeclareOptions { auto_delete: true, ..Default::default() };
        let table = FieldTable::default();
        channel.exchange_declare(&exchange, ExchangeKind::Fanout, options, table).await.unwrap();
        let temporary = QueueDeclareOptions { auto_delete: false, ..Default::default() };
        channel.queue_declare(&dead, temporary, FieldTable::default()).await.unwrap();
        channel
            .queue_bind(&dead, &exchange, "", QueueBindOptions::default(), FieldTable::default())
            .await
            .unwrap();
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(LongString::from(exchange.as_bytes().to_vec())),
        );
        channel.queue_declare(&name, temporary, arguments).await.unwrap();
        Some(TestQueue { channel, _connection: connection, name, dead })
    }

    fn url_via(&self, server: &str) -> String {
        format!("amqp://guest:guest@{server}/%2f?queue={}", self.name)
    }

    fn url(&self) -> String {
        let server = amqp_url();
        let server = server.split('@').nth(1).unwrap().split('/').next().unwrap().to_string();
        self.url_via(&server)
    }

    fn source(&self) -> String {
        format!("amqp:{}", self.name)
    }

    async fn publish(&self, id: &str, body: &[u8]) {
        let properties = BasicProperties::default().with_message_id(id.into());
        self.channel
            .basic_publish("", &self.name, BasicPublishOptions::default(), body, properties)
            .await
            .unwrap();
    }

    async fn publish_range(&self, agent: &str, from: usize, to: usize) {
        for i in from..to {
            self.publish(&format!("m-{i}"), &message(agent, i)).await;
        }
    }

    /// Messages ready in `queue` (not delivered to a consumer).
    async fn ready(&self, queue: &str) -> u32 {
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        self.channel
            .queue_declare(queue, passive, FieldTable::default())
            .await
            .unwrap()
            .message_count()
    }
}

async fn amqp_messages_become_one_event_each_acknowledged_after_commit(backend: Backend) {
    let Some(queue) = TestQueue::new().await else { return };
    let app = app_consuming(backend, &queue.url(), 1_000).await;
    let agent = app.create_agent().await;
    queue.publish_range(&agent, 0, 300).await;

    let counts =
        wait_for_events(backend, &app.db().url, &agent, 300, Duration::from_secs(30)).await;
    assert_each_once(&counts, 300);
    let base = app.url("");
    wait_until("every message is acknowledged", Duration::from_secs(10), || async {
        outcome(&base, &queue.source(), "ingested").await == 300.0
    })
    .await;
    assert_eq!(queue.ready(&queue.name).await, 0);
    assert_eq!(outcome(&base, &queue.source(), "rejected").await, 0.0);
    assert_eq!(source_state(&base, &queue.source()).await, "consuming");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_amqp_messages_go_to_the_dead_letter_exchange_and_are_counted() {
    let Some(queue) = TestQueue::new().await else { return };
    let app = app_consuming(Backend::Sqlite, &queue.url(), 100).await;
    let agent = app.create_agent().await;
    let unknown = uuid::Uuid::now_v7().to_string();
    queue.publish("bad-json", b"{not json").await;
    queue.publish("unknown-agent", &message(&unknown, 1)).await;
    let invalid = json!({"agent_id": agent, "event": "call.completed"});
    queue.publish("invalid-event", invalid.to_string().as_bytes()).await;
    queue.publish("good", &message(&agent, 0)).await;

    let base = app.url("");
    wait_until("the three bad messages are dead-lettered", Duration::from_secs(20), || async {
        queue.ready(&queue.dead).await == 3
    })
    .await;
    wait_until("every message is counted", Duration::from_secs(10), || async {
        outcome(&base, &queue.source(), "rejected").await == 3.0
            && outcome(&base, &queue.source(), "ingested").await == 1.0
    })
    .await;
    assert_eq!(queue.ready(&queue.name).await, 0);
    assert_each_once(&events_by_call(Backend::Sqlite, &app.db().url, &agent).await, 1);
}

/// RabbitMQ behind a proxy that the test cuts mid-stream: the source reports `reconnecting`,
/// comes back by itself, and every message still becomes exactly one event (what was
/// unacknowledged at the cut is requeued by the broker and is a duplicate if it was stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_amqp_consumer_reconnects_after_its_connection_is_cut_and_loses_nothing() {
    let Some(queue) = TestQueue::new().await else { return };
    let server = amqp_url().split('@').nth(1).unwrap().split('/').next().unwrap().to_string();
    let proxy = Proxy::start(server).await;
    let app = app_consuming(Backend::Sqlite, &queue.url_via(&proxy.addr.to_string()), 50).await;
    let agent = app.create_agent().await;
    let base = app.url("");
    wait_until("the source consumes", Duration::from_secs(10), || async {
        source_state(&base, &queue.source()).await == "consuming"
    })
    .await;
    const N: usize = 2_000;
    queue.publish_range(&agent, 0, N).await;
    let db = app.db().url.clone();
    wait_until("part of the queue is stored", Duration::from_secs(30), || async {
        events_by_call(Backend::Sqlite, &db, &agent).await.len() >= 100
    })
    .await;

    proxy.cut().await;
    wait_until("readiness says the source reconnects", Duration::from_secs(10), || async {
        source_state(&base, &queue.source()).await == "reconnecting"
    })
    .await;
    assert!(events_by_call(Backend::Sqlite, &db, &agent).await.len() < N, "the cut came too late");
    proxy.restore().await;

    let counts = wait_for_events(Backend::Sqlite, &db, &agent, N, Duration::from_secs(60)).await;
    assert_each_once(&counts, N);
    assert_eq!(source_state(&base, &queue.source()).await, "consuming");
}
