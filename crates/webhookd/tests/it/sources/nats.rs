//! NATS JetStream: a durable pull consumer on a stream of the test's own.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use async_nats::HeaderMap;
use serde_json::json;

use super::{
    app_consuming, assert_each_once, broker_or_skip, events_by_call, message, nats_url, outcome,
    source_state, unique, wait_for_events, wait_until,
};
use crate::backend_tests;
use crate::harness::{postgres_base_url, Backend, TestDb};
use crate::process::{create_org, ServeProcess};
use crate::proxy::Proxy;

backend_tests!(nats_messages_become_one_event_each_acknowledged_after_commit);

/// A stream of the test's own, `<NAME>` on subjects `<NAME>.>`; `None` when NATS is not up.
struct TestStream {
    jetstream: jetstream::Context,
    name: String,
    consumer: String,
}

impl TestStream {
    async fn new() -> Option<TestStream> {
        let client = broker_or_skip("NATS", async_nats::connect(nats_url()).await)?;
        let jetstream = jetstream::new(client);
        let name = unique("T");
        jetstream
            .create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![format!("{name}.>")],
                ..Default::default()
            })
            .await
            .unwrap();
        Some(TestStream { jetstream, name, consumer: "webhookd".into() })
    }

    /// The `--source` URL of this stream, through `server` (host:port).
    fn url_via(&self, server: &str) -> String {
        format!(
            "nats://{server}/{}?subject={}.calls&consumer={}",
            self.name, self.name, self.consumer
        )
    }

    fn url(&self) -> String {
        self.url_via(nats_url().trim_start_matches("nats://"))
    }

    fn source(&self) -> String {
        format!("nats:{}/{}", self.name, self.consumer)
    }

    /// Publishes `body` with `Nats-Msg-Id: id` and waits for the stream to store it.
    async fn publish(&self, id: &str, body: Vec<u8>) {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        self.jetstream
            .publish_with_headers(format!("{}.calls", self.name), headers, body.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Publishes messages `from..to` for `agent` flat out, each with its own message id.
    async fn publish_range(&self, agent: &str, from: usize, to: usize) {
        let mut acks = Vec::new();
        for i in from..to {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("m-{i}").as_str());
            let subject = format!("{}.calls", self.name);
            acks.push(
                self.jetstream
                    .publish_with_headers(subject, headers, message(agent, i).into())
                    .await
                    .unwrap(),
            );
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }

    async fn consumer_info(&self) -> async_nats::jetstream::consumer::Info {
        let stream = self.jetstream.get_stream(&self.name).await.unwrap();
        let consumer: async_nats::jetstream::consumer::PullConsumer =
            stream.get_consumer(&self.consumer).await.unwrap();
        consumer.get_info().await.unwrap()
    }

    /// Creates the consumer as an operator would, with a short ack wait so that a lost
    /// acknowledgement comes back within the test.
    async fn create_consumer(&self, ack_wait: Duration) {
        let stream = self.jetstream.get_stream(&self.name).await.unwrap();
        stream
            .create_consumer(pull::Config {
                durable_name: Some(self.consumer.clone()),
                filter_subject: format!("{}.calls", self.name),
                ack_wait,
                ..Default::default()
            })
            .await
            .unwrap();
    }
}

async fn nats_messages_become_one_event_each_acknowledged_after_commit(backend: Backend) {
    let Some(stream) = TestStream::new().await else { return };
    let app = app_consuming(backend, &stream.url(), 1_000).await;
    let agent = app.create_agent().await;
    stream.publish_range(&agent, 0, 300).await;

    let counts =
        wait_for_events(backend, &app.db().url, &agent, 300, Duration::from_secs(30)).await;
    assert_each_once(&counts, 300);
    let base = app.url("");
    wait_until("every message is acknowledged", Duration::from_secs(10), || async {
        let info = stream.consumer_info().await;
        info.num_ack_pending == 0 && info.num_pending == 0
    })
    .await;
    assert_eq!(outcome(&base, &stream.source(), "ingested").await, 300.0);
    assert_eq!(outcome(&base, &stream.source(), "rejected").await, 0.0);
    assert_eq!(source_state(&base, &stream.source()).await, "consuming");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_idempotency_key_was_used_is_a_duplicate_and_creates_nothing() {
    let Some(stream) = TestStream::new().await else { return };
    let app = app_consuming(Backend::Sqlite, &stream.url(), 100).await;
    let agent = app.create_agent().await;
    let body = json!({"agent_id": agent, "event": "call.completed", "call_id": "call-0",
        "data": {}, "idempotency_key": "same"});
    stream.publish("a", body.to_string().into_bytes()).await;
    stream.publish("b", body.to_string().into_bytes()).await;

    let base = app.url("");
    wait_until("both messages are settled", Duration::from_secs(20), || async {
        outcome(&base, &stream.source(), "duplicate").await == 1.0
    })
    .await;
    assert_eq!(outcome(&base, &stream.source(), "ingested").await, 1.0);
    assert_each_once(&events_by_call(Backend::Sqlite, &app.db().url, &agent).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_nats_messages_are_terminated_and_counted_never_redelivered() {
    let Some(stream) = TestStream::new().await else { return };
    let app = app_consuming(Backend::Sqlite, &stream.url(), 100).await;
    let agent = app.create_agent().await;
    let unknown = uuid::Uuid::now_v7().to_string();
    stream.publish("bad-json", b"{not json".to_vec()).await;
    stream.publish("unknown-agent", message(&unknown, 1)).await;
    let invalid = json!({"agent_id": agent, "event": "no.such.type", "data": {}});
    stream.publish("invalid-event", invalid.to_string().into_bytes()).await;
    stream.publish("good", message(&agent, 0)).await;

    let base = app.url("");
    wait_until("every message is settled", Duration::from_secs(20), || async {
        outcome(&base, &stream.source(), "rejected").await == 3.0
            && outcome(&base, &stream.source(), "ingested").await == 1.0
    })
    .await;
    wait_until("nothing is left to acknowledge", Duration::from_secs(10), || async {
        let info = stream.consumer_info().await;
        info.num_ack_pending == 0 && info.num_pending == 0
    })
    .await;
    assert_eq!(stream.consumer_info().await.num_redelivered, 0, "a rejected message came back");
    assert_each_once(&events_by_call(Backend::Sqlite, &app.db().url, &agent).await, 1);
}

/// PostgreSQL behind a proxy that the test cuts: while the database is down nothing is stored,
/// nothing is rejected, and the messages stay in the broker (the node holds at most its bound of
/// them); when it returns, each becomes one event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_leaves_nats_messages_unacknowledged_until_it_returns() {
    if postgres_base_url().is_none() {
        return;
    }
    let Some(stream) = TestStream::new().await else { return };
    webhookd::telemetry::init(webhookd::cli::LogFormat::Text);
    let db = TestDb::new(Backend::Postgres).await;
    let (proxy, through_proxy) = Proxy::before_postgres(&db.url).await;
    let mut config = crate::harness::test_config(&db);
    config.database_url = through_proxy;
    config.sources = vec![webhookd::source::SourceUrl::parse(&stream.url()).unwrap()];
    config.source_max_unacked = 5;
    let store = crate::harness::open_test_store(&config.database_url).await;
    let org = store.create_org("outage").await.unwrap();
    let agent = store.create_agent(org.org.id, "a").await.unwrap().id.to_string();
    let app = webhookd::app::App::start(&config, store).await.unwrap();
    let base = format!("http://{}", app.local_addr().unwrap());
    let stop = app.shutdown_token();
    tokio::spawn(app.wait());

    wait_until("the source consumes", Duration::from_secs(10), || async {
        source_state(&base, &stream.source()).await == "consuming"
    })
    .await;
    proxy.cut().await;
    stream.publish_range(&agent, 0, 40).await;
    wait_until("the node has tried messages", Duration::from_secs(20), || async {
        stream.consumer_info().await.delivered.stream_sequence >= 5
    })
    .await;
    for _ in 0..20 {
        let info = stream.consumer_info().await;
        assert!(info.num_ack_pending <= 5, "the node holds more than its bound: {info:?}");
        assert!(info.num_pending >= 30, "messages left the broker while the database is down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(outcome(&base, &stream.source(), "rejected").await, 0.0);
    assert_eq!(outcome(&base, &stream.source(), "ingested").await, 0.0);

    proxy.restore().await;
    let counts =
        wait_for_events(Backend::Postgres, &db.url, &agent, 40, Duration::from_secs(60)).await;
    assert_each_once(&counts, 40);
    assert_eq!(outcome(&base, &stream.source(), "rejected").await, 0.0);
    stop.cancel();
}

/// NATS behind a proxy that the test cuts mid-stream: the source reports `reconnecting`, comes
/// back by itself, and every message still becomes exactly one event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_consumer_reconnects_after_its_connection_is_cut_and_loses_nothing() {
    let Some(stream) = TestStream::new().await else { return };
    stream.create_consumer(Duration::from_secs(1)).await;
    let proxy = Proxy::start(nats_url().trim_start_matches("nats://").to_string()).await;
    let app = app_consuming(Backend::Sqlite, &stream.url_via(&proxy.addr.to_string()), 50).await;
    let agent = app.create_agent().await;
    let base = app.url("");
    wait_until("the source consumes", Duration::from_secs(10), || async {
        source_state(&base, &stream.source()).await == "consuming"
    })
    .await;
    const N: usize = 2_000;
    stream.publish_range(&agent, 0, N).await;
    let db = app.db().url.clone();
    wait_until("part of the stream is stored", Duration::from_secs(30), || async {
        events_by_call(Backend::Sqlite, &db, &agent).await.len() >= 100
    })
    .await;

    proxy.cut().await;
    wait_until("readiness says the source reconnects", Duration::from_secs(10), || async {
        source_state(&base, &stream.source()).await == "reconnecting"
    })
    .await;
    let stored_while_cut = events_by_call(Backend::Sqlite, &db, &agent).await.len();
    assert!(stored_while_cut < N, "the cut came too late to test anything");
    proxy.restore().await;

    let counts = wait_for_events(Backend::Sqlite, &db, &agent, N, Duration::from_secs(60)).await;
    assert_each_once(&counts, N);
    assert_eq!(source_state(&base, &stream.source()).await, "consuming");
}

/// Two `webhookd serve` processes on one PostgreSQL consume one source: they share its
/// messages, and no event is created twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_nats_source_and_create_no_event_twice() {
    if postgres_base_url().is_none() {
        return;
    }
    let Some(stream) = TestStream::new().await else { return };
    let db = TestDb::new(Backend::Postgres).await;
    let key = create_org(&db.url);
    let url = stream.url();
    let args = ["--source", url.as_str(), "--source-max-unacked", "100"];
    let first = ServeProcess::start(&db.url, &args);
    let second = ServeProcess::start(&db.url, &args);
    let agent = crate::sources::create_agent(&first.url(""), &key).await;
    const N: usize = 3_000;
    stream.publish_range(&agent, 0, N).await;

    let counts =
        wait_for_events(Backend::Postgres, &db.url, &agent, N, Duration::from_secs(60)).await;
    assert_each_once(&counts, N);
    let source = stream.source();
    let (one, two) = (
        outcome(&first.url(""), &source, "ingested").await,
        outcome(&second.url(""), &source, "ingested").await,
    );
    assert!(one > 0.0 && two > 0.0, "one node did all the work: {one} and {two}");
    assert_eq!(one + two, N as f64);
}

/// kill -9 of webhookd in the middle of a stream, then a restart: every published message is
/// exactly one event (the broker's message id is the idempotency key, so a message committed
/// but not acknowledged before the crash is a duplicate, not a second event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_stream_makes_every_nats_message_exactly_one_event() {
    let Some(stream) = TestStream::new().await else { return };
    stream.create_consumer(Duration::from_secs(1)).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let key = create_org(&db.url);
    let url = stream.url();
    let args = ["--source", url.as_str()];
    let mut node = ServeProcess::start(&db.url, &args);
    let agent = crate::sources::create_agent(&node.url(""), &key).await;
    const N: usize = 5_000;
    stream.publish_range(&agent, 0, N).await;
    wait_until("part of the stream is stored", Duration::from_secs(30), || async {
        events_by_call(Backend::Sqlite, &db.url, &agent).await.len() >= 200
    })
    .await;
    node.kill();
    let before = events_by_call(Backend::Sqlite, &db.url, &agent).await.len();
    assert!(before < N, "the crash came after the whole stream");

    let _node = ServeProcess::start(&db.url, &args);
    let counts =
        wait_for_events(Backend::Sqlite, &db.url, &agent, N, Duration::from_secs(60)).await;
    assert_each_once(&counts, N);
}
