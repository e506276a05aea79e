//! Idempotency keys claimed at ingestion: a request's keys in one statement (per chunk of rows),
//! not one round trip per event — a broker's message ids make every event of a source keyed.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::backend::insert_rows_returning;
use super::events::IDEMPOTENCY_WINDOW_MS;
use super::StoreError;
use crate::domain::event::NewEvent;

/// One key to claim for the event about to be created.
struct KeyRow<'a> {
    org_id: Uuid,
    key: &'a str,
    event_id: Uuid,
    created_at: i64,
}

/// Claims the idempotency keys of one request's `events`, whose new ids are `ids`. Returns the
/// events (by position) whose key was taken, each with the first event it answers with: an
/// earlier event within the window, or an earlier event of this same request. A key older than
/// the window is taken over by the new event.
pub(super) async fn claim_idempotency_keys<DB>(
    tx: &mut sqlx::Transaction<'_, DB>,
    org_id: Uuid,
    events: &[NewEvent],
    ids: &[Uuid],
    now: i64,
) -> Result<HashMap<usize, Uuid>, StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB> + Default,
    for<'q> Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB> + sqlx::Decode<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB> + sqlx::Decode<'q, DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    (Uuid,): for<'r> sqlx::FromRow<'r, DB::Row>,
    (String,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    // A key's first event in the request claims it; the later ones are its duplicates (and one
    // statement may not touch a row twice on PostgreSQL).
    let mut firsts: HashMap<&str, usize> = HashMap::new();
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    let mut rows: Vec<KeyRow<'_>> = Vec::new();
    for (position, event) in events.iter().enumerate() {
        let Some(key) = &event.idempotency_key else { continue };
        match firsts.entry(key.as_str()) {
            Entry::Occupied(first) => repeats.push((position, *first.get())),
            Entry::Vacant(slot) => {
                slot.insert(position);
                let event_id = ids[position];
                rows.push(KeyRow { org_id, key: key.as_str(), event_id, created_at: now });
            }
        }
    }
    let mut taken = HashMap::new();
    if rows.is_empty() {
        return Ok(taken);
    }
    let tail = format!(
        "ON CONFLICT (org_id, idempotency_key) DO UPDATE
            SET event_id = excluded.event_id, created_at = excluded.created_at
            WHERE idempotency_keys.created_at < excluded.created_at - {IDEMPOTENCY_WINDOW_MS}
         RETURNING idempotency_key"
    );
    let into = "idempotency_keys (org_id, idempotency_key, event_id, created_at)";
    let claimed: Vec<(String,)> = insert_rows_returning(tx, into, &rows, &tail, |values, row| {
        values.add(row.org_id)?;
        values.add(row.key)?;
        values.add(row.event_id)?;
        values.add(row.created_at)
    })
    .await?;
    let claimed: HashSet<String> = claimed.into_iter().map(|(key,)| key).collect();
    // Keys already taken: a duplicate is the exception (a redelivery), so one lookup each.
    for row in rows.iter().filter(|row| !claimed.contains(row.key)) {
        let (first,): (Uuid,) = sqlx::query_as(
            "SELECT event_id FROM idempotency_keys WHERE org_id = $1 AND idempotency_key = $2",
        )
        .bind(org_id)
        .bind(row.key)
        .fetch_one(&mut **tx)
        .await?;
        taken.insert(firsts[row.key], first);
    }
    for (position, first) in repeats {
        let answer = taken.get(&first).copied().unwrap_or(ids[first]);
        taken.insert(position, answer);
    }
    Ok(taken)
}
