//! The `--history` load: one SQL script per backend that writes N events, one delivery log each
//! on one webhook, and an earlier attempt for each failed log, with `INSERT … SELECT` over a
//! series (`generate_series` on PostgreSQL, a recursive CTE on SQLite) — far faster than the API.
//!
//! The mix, by event index `i` (1…N): five event types in turn, five consecutive events per call
//! (`call-<(i-1)/5>`: one of each type, so every call has a `call.completed`); status by
//! `(i mod 100) × 19 mod 100` (a spread independent of the type): 5% `failed` (two attempts, the
//! last answered 500 or not at all), 5% `skipped` (never attempted), the rest `success` (200 at
//! the first attempt), none `pending` (a pending log would be sent). Payloads are ~200-byte JSON.
//! `created_at` runs evenly over the window; every id is a UUIDv7 whose time part is that
//! `created_at` (`<ms:48>7<tag:12>8<i:60>`), so on PostgreSQL each row lands in its day partition.

use uuid::Uuid;

/// The five event types, in the order events cycle through them.
pub const EVENT_TYPES: [&str; 5] =
    ["call.started", "call.ended", "call.completed", "transcript.ready", "recording.ready"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What the rows belong to, and when they were made.
pub struct Plan {
    pub backend: Backend,
    pub events: u64,
    pub org: Uuid,
    pub agent: Uuid,
    pub webhook: Uuid,
    pub url: String,
    /// `created_at` of the first event (unix ms).
    pub from_ms: i64,
    /// Milliseconds between consecutive events.
    pub step_ms: i64,
}

impl Plan {
    /// `created_at` of event `i` (1-based).
    pub fn ms_of(&self, i: u64) -> i64 {
        self.from_ms + i64::try_from(i.saturating_sub(1)).unwrap_or(i64::MAX) * self.step_ms
    }

    /// The call of event `i` (1-based).
    pub fn call_of(i: u64) -> String {
        format!("call-{}", (i - 1) / 5)
    }

    /// The event id of event `i`, as the script makes it.
    #[cfg(test)]
    pub fn event_id(&self, i: u64) -> Uuid {
        let ms = u128::try_from(self.ms_of(i)).unwrap_or(0);
        Uuid::from_u128((ms << 80) | (0x7 << 76) | (0x8 << 60) | u128::from(i))
    }

    /// A UUIDv7 expression from a millisecond expression, a tag (which table) and the index.
    fn uuid(&self, ms: &str, tag: u16) -> String {
        match self.backend {
            Backend::Postgres => format!(
                "(lpad(to_hex({ms}), 12, '0') || '7{tag:03x}8' || lpad(to_hex(i), 15, '0'))::uuid"
            ),
            Backend::Sqlite => format!("unhex(printf('%012x7{tag:03x}8%015x', {ms}, i))"),
        }
    }

    fn literal(&self, id: Uuid) -> String {
        match self.backend {
            Backend::Postgres => format!("'{id}'::uuid"),
            Backend::Sqlite => format!("X'{}'", id.simple()),
        }
    }

    fn bytes(&self, text: &str) -> String {
        match self.backend {
            Backend::Postgres => format!("convert_to({text}, 'UTF8')"),
            Backend::Sqlite => format!("CAST({text} AS BLOB)"),
        }
    }

    /// The whole load, one script (the caller runs it in one transaction).
    pub fn script(&self) -> String {
        let (n, from, step) = (self.events, self.from_ms, self.step_ms);
        let (org, agent, webhook) =
            (self.literal(self.org), self.literal(self.agent), self.literal(self.webhook));
        let url = self.url.replace('\'', "''");
        let mut sql = String::new();
        let series = match self.backend {
            Backend::Postgres => {
                // Every day of the window gets its partitions first, so no row falls to
                // `*_default`.
                let until = self.ms_of(n) + 86_400_000;
                sql.push_str(&format!("SELECT webhookd_make_partitions({from}, {until});\n"));
                format!("generate_series(1, {n}) AS s(i)")
            }
            Backend::Sqlite => {
                sql.push_str(&format!(
                    "CREATE TEMP TABLE bench_series AS WITH RECURSIVE s(i) AS \
                     (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) SELECT i FROM s;\n"
                ));
                "bench_series".to_string()
            }
        };
        let types = EVENT_TYPES
            .iter()
            .enumerate()
            .map(|(k, t)| format!("WHEN {} THEN '{t}'", (k + 1) % 5))
            .collect::<Vec<_>>()
            .join(" ");
        sql.push_str(&format!(
            "CREATE TEMP TABLE bench_g AS
             SELECT i, ms, et, 'call-' || ((i - 1) / 5) AS call,
                    CASE WHEN h < 5 THEN 'failed' WHEN h < 10 THEN 'skipped' ELSE 'success' END AS st,
                    CASE WHEN h >= 10 THEN 200 WHEN h < 5 AND i % 2 = 0 THEN 500 END AS code
             FROM (SELECT i, {from} + CAST(i - 1 AS BIGINT) * {step} AS ms,
                          ((i % 100) * 19) % 100 AS h,
                          CASE i % 5 {types} END AS et
                   FROM {series}) AS t;\n"
        ));
        let event_id = self.uuid("ms", 0x001);
        let log_id = self.uuid("ms", 0x002);
        let attempt_id = self.uuid("ms", 0x003);
        let last_attempt_id = self.uuid("ms + 60000", 0x004);
        let payload = self.bytes(
            "'{\"call_id\":\"' || call || '\",\"event\":\"' || et || '\",\"i\":' || i || \
             ',\"duration_s\":' || (i % 900) || ',\"from\":\"+1555010' || (1000 + i % 9000) || \
             '\",\"summary\":\"The caller asked to move an appointment; the agent offered two \
             slots and booked the first.\"}'",
        );
        sql.push_str(&format!(
            "INSERT INTO events (id, org_id, agent_id, event_type, call_id, payload, created_at)
             SELECT {event_id}, {org}, {agent}, et, call, {payload}, ms FROM bench_g;\n"
        ));
        sql.push_str(&format!(
            "INSERT INTO delivery_logs (id, org_id, agent_id, webhook_id, event_id, event_type,
                 call_id, url, status, first_send_type, attempt_count, retries, http_status,
                 response_body, duration_ms, delivered_at, error, created_at, updated_at, lane_id,
                 last_attempt_id, last_attempt_at, last_send_type)
             SELECT {log_id}, {org}, {agent}, {webhook}, {event_id}, et, call, '{url}', st,
                 'spawn',
                 CASE st WHEN 'success' THEN 1 WHEN 'failed' THEN 2 ELSE 0 END,
                 CASE st WHEN 'failed' THEN 1 ELSE 0 END,
                 code,
                 CASE code WHEN 200 THEN '{{\"received\":true}}' WHEN 500 THEN 'Internal Server Error' END,
                 CASE WHEN st = 'skipped' THEN NULL ELSE 20 + i % 180 END,
                 CASE WHEN st = 'success' THEN ms + 20 + i % 180 END,
                 CASE WHEN st = 'failed' AND code IS NULL THEN 'connection refused'
                      WHEN st = 'failed' THEN 'HTTP 500' END,
                 ms, CASE st WHEN 'failed' THEN ms + 60000 ELSE ms END, {webhook},
                 CASE st WHEN 'success' THEN {event_id_as_attempt} WHEN 'failed' THEN {last_attempt_id} END,
                 CASE st WHEN 'success' THEN ms WHEN 'failed' THEN ms + 60000 END,
                 CASE st WHEN 'success' THEN 'spawn' WHEN 'failed' THEN 'retry' END
             FROM bench_g;\n",
            event_id_as_attempt = self.uuid("ms", 0x005),
        ));
        sql.push_str(&format!(
            "INSERT INTO attempts (id, log_id, number, send_type, sent_at, response_code,
                 duration_ms, response_body, error, event_id)
             SELECT {attempt_id}, {log_id}, 1, 'spawn', ms, code, 30 + i % 100,
                 CASE WHEN code = 500 THEN 'Internal Server Error' END,
                 CASE WHEN code IS NULL THEN 'connection refused' ELSE 'HTTP 500' END,
                 {event_id}
             FROM bench_g WHERE st = 'failed';\n"
        ));
        sql.push_str("DROP TABLE bench_g;\n");
        if self.backend == Backend::Sqlite {
            sql.push_str("DROP TABLE bench_series;\n");
        }
        sql
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(backend: Backend) -> Plan {
        Plan {
            backend,
            events: 1000,
            org: Uuid::nil(),
            agent: Uuid::nil(),
            webhook: Uuid::nil(),
            url: "http://x/'y".into(),
            from_ms: 1_760_000_000_000,
            step_ms: 1000,
        }
    }

    #[test]
    fn event_ids_carry_their_creation_time() {
        let plan = plan(Backend::Sqlite);
        let id = plan.event_id(3);
        assert_eq!(id.get_version_num(), 7);
        assert_eq!((id.as_u128() >> 80) as i64, plan.ms_of(3));
        assert_eq!(id.as_u128() & 0xfff_ffff_ffff_ffff, 3);
    }

    #[test]
    fn the_script_quotes_the_url_and_names_every_table() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let sql = plan(backend).script();
            assert!(sql.contains("'http://x/''y'"));
            for table in ["events", "delivery_logs", "attempts"] {
                assert!(sql.contains(&format!("INSERT INTO {table} ")), "{table}");
            }
        }
    }
}
