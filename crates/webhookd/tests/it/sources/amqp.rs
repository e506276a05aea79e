//! RabbitMQ (AMQP 0-9-1): a queue of the test's own, with a dead-letter exchange.

use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::json;

use super::{
    amqp_url, app_consuming, assert_each_once, broker_or_skip, create_agent, events_by_call,
    message, outcome, source_state, unique, wait_for_events, wait_until,
};
use crate::backend_tests;
use crate::harness::{postgres_base_url, Backend, TestDb};
use crate::process::{create_org, ServeProcess};
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

/// How many times `node` logged that the message `message_id` was not stored (the database
/// refused it) and goes back to the broker. Its log is JSON, with `webhookd::source` at debug.
fn refusals(node: &ServeProcess, message_id: &str) -> usize {
    let log = String::from_utf8(node.stderr_log().into_inner()).unwrap();
    let id = format!("\"message_id\":\"{message_id}\"");
    log.lines().filter(|line| line.contains("was not stored") && line.contains(&id)).count()
}

/// PostgreSQL behind a proxy that the test cuts: while the database is down nothing is stored,
/// acknowledged, rejected or dead-lettered; the node holds at most its bound of messages, and
/// what it could not store it gives back to the queue (nack with requeue), which delivers it
/// again. When the database returns, each message becomes one event. The node is a process of
/// its own, so that its log shows the first message refused a second time: proof that it went
/// back to the queue and came again, not that it was held until the database returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_leaves_amqp_messages_unacknowledged_until_it_returns() {
    if postgres_base_url().is_none() {
        return;
    }
    let Some(queue) = TestQueue::new().await else { return };
    let db = TestDb::new(Backend::Postgres).await;
    let key = create_org(&db.url);
    let (proxy, through_proxy) = Proxy::before_postgres(&db.url).await;
    let url = queue.url();
    let args = ["--source", url.as_str(), "--source-max-unacked", "5", "--log-format", "json"];
    let debug = [("RUST_LOG", "info,sqlx=warn,webhookd::source=debug")];
    let node = ServeProcess::start_with_env(&through_proxy, &args, &debug);
    let base = node.url("");
    let agent = create_agent(&base, &key).await;
    wait_until("the source consumes", Duration::from_secs(10), || async {
        source_state(&base, &queue.source()).await == "consuming"
    })
    .await;

    proxy.cut().await;
    const N: usize = 40;
    queue.publish_range(&agent, 0, N).await;
    // A publish is not a confirmed enqueue: first the queue has every message but the bound.
    wait_until(
        "the node holds its bound and the queue the rest",
        Duration::from_secs(20),
        || async { queue.ready(&queue.name).await as usize == N - 5 },
    )
    .await;
    let again = "the first message is refused, requeued and refused again";
    wait_until(again, Duration::from_secs(60), || async {
        let ready = queue.ready(&queue.name).await as usize;
        assert!(ready + 5 >= N, "more than the bound left the queue: {ready} of {N} ready");
        assert_eq!(queue.ready(&queue.dead).await, 0, "a message was dead-lettered");
        refusals(&node, "m-0") >= 2
    })
    .await;
    assert_eq!(outcome(&base, &queue.source(), "ingested").await, 0.0);
    assert_eq!(outcome(&base, &queue.source(), "rejected").await, 0.0);

    proxy.restore().await;
    let counts =
        wait_for_events(Backend::Postgres, &db.url, &agent, N, Duration::from_secs(60)).await;
    assert_each_once(&counts, N);
    wait_until("every message is settled", Duration::from_secs(20), || async {
        outcome(&base, &queue.source(), "ingested").await == N as f64
    })
    .await;
    wait_until("the queue is empty", Duration::from_secs(10), || async {
        queue.ready(&queue.name).await == 0
    })
    .await;
    assert_eq!(outcome(&base, &queue.source(), "rejected").await, 0.0);
    assert_eq!(queue.ready(&queue.dead).await, 0, "a message was dead-lettered");
}

/// Two `webhookd serve` processes on one PostgreSQL consume one queue as competing consumers:
/// they share its messages, and no event is created twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_amqp_queue_and_create_no_event_twice() {
    if postgres_base_url().is_none() {
        return;
    }
    let Some(queue) = TestQueue::new().await else { return };
    let db = TestDb::new(Backend::Postgres).await;
    let key = create_org(&db.url);
    let url = queue.url();
    let args = ["--source", url.as_str(), "--source-max-unacked", "100"];
    let first = ServeProcess::start(&db.url, &args);
    let second = ServeProcess::start(&db.url, &args);
    for node in [&first, &second] {
        wait_until("both nodes consume", Duration::from_secs(10), || async {
            source_state(&node.url(""), &queue.source()).await == "consuming"
        })
        .await;
    }
    let agent = create_agent(&first.url(""), &key).await;
    const N: usize = 3_000;
    queue.publish_range(&agent, 0, N).await;

    let counts =
        wait_for_events(Backend::Postgres, &db.url, &agent, N, Duration::from_secs(60)).await;
    assert_each_once(&counts, N);
    let source = queue.source();
    let settled = || async {
        let one = outcome(&first.url(""), &source, "ingested").await;
        let two = outcome(&second.url(""), &source, "ingested").await;
        (one, two)
    };
    wait_until("both nodes have counted what they stored", Duration::from_secs(10), || async {
        let (one, two) = settled().await;
        one + two >= N as f64
    })
    .await;
    let (one, two) = settled().await;
    assert!(one > 0.0 && two > 0.0, "one node did all the work: {one} and {two}");
    assert_eq!(one + two, N as f64);
    assert_eq!(queue.ready(&queue.name).await, 0);
    assert_eq!(queue.ready(&queue.dead).await, 0, "a message was dead-lettered");
}

/// kill -9 of webhookd in the middle of a queue, then a restart: every published message is
/// exactly one event. The broker requeues what the dead node had not acknowledged; its message
/// id is the idempotency key, so a message committed but not acknowledged before the crash is a
/// duplicate, not a second event, and there are at most as many duplicates as the node's bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_stream_makes_every_amqp_message_exactly_one_event() {
    let Some(queue) = TestQueue::new().await else { return };
    let db = TestDb::new(Backend::Sqlite).await;
    let key = create_org(&db.url);
    let url = queue.url();
    let args = ["--source", url.as_str()];
    let mut node = ServeProcess::start(&db.url, &args);
    let agent = create_agent(&node.url(""), &key).await;
    const N: usize = 5_000;
    // The crash comes while the queue is still being published, so always mid-stream.
    let crash = async {
        wait_until("part of the queue is stored", Duration::from_secs(30), || async {
            events_by_call(Backend::Sqlite, &db.url, &agent).await.len() >= 200
        })
        .await;
        node.kill();
    };
    tokio::join!(queue.publish_range(&agent, 0, N), crash);
    let before = events_by_call(Backend::Sqlite, &db.url, &agent).await.len();
    assert!(before < N, "the crash came after the whole queue");

    let restarted = ServeProcess::start(&db.url, &args);
    let counts =
        wait_for_events(Backend::Sqlite, &db.url, &agent, N, Duration::from_secs(60)).await;
    assert_each_once(&counts, N);
    let base = restarted.url("");
    wait_until("the restarted node has stored the rest", Duration::from_secs(10), || async {
        outcome(&base, &queue.source(), "ingested").await == (N - before) as f64
    })
    .await;
    let duplicates = outcome(&base, &queue.source(), "duplicate").await;
    let bound = webhookd::source::DEFAULT_MAX_UNACKED as f64;
    assert!(duplicates <= bound, "{duplicates} duplicates: more than the node held at its crash");
    wait_until("the queue is empty", Duration::from_secs(10), || async {
        queue.ready(&queue.name).await == 0
    })
    .await;
    assert_eq!(queue.ready(&queue.dead).await, 0, "a message was dead-lettered");
}
