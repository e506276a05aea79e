//! Agents: the containers of webhooks, one organization each. An organization's internal agent
//! (which holds its operational events, see `operational.rs`) is none of these: every query here
//! leaves it out, so it is never listed and its id answers like an unknown one.

use uuid::Uuid;

use super::{offset, on_reader, on_snapshot, on_writer, Agent, Page, Store, StoreError};
use crate::domain::clock::now_ms;

const AGENT_COLUMNS: &str = "id, org_id, name, created_at, updated_at";

impl Store {
    pub async fn create_agent(&self, org_id: Uuid, name: &str) -> Result<Agent, StoreError> {
        let now = now_ms();
        let agent = Agent {
            id: Uuid::now_v7(),
            org_id,
            name: name.to_string(),
            created_at: now,
            updated_at: now,
        };
        on_writer!(self, |pool| {
            sqlx::query(
                "INSERT INTO agents (id, org_id, name, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(agent.id)
            .bind(agent.org_id)
            .bind(&agent.name)
            .bind(agent.created_at)
            .bind(agent.updated_at)
            .execute(pool)
            .await?;
        });
        Ok(agent)
    }

    /// The organization's agents, oldest first.
    pub async fn list_agents(
        &self,
        org_id: Uuid,
        page: i64,
        per_page: i64,
    ) -> Result<Page<Agent>, StoreError> {
        let query = format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE org_id = $1 AND NOT internal
             ORDER BY id LIMIT $2 OFFSET $3"
        );
        on_snapshot!(self, |tx| {
            let items = sqlx::query_as(&query)
                .bind(org_id)
                .bind(per_page)
                .bind(offset(page, per_page))
                .fetch_all(&mut *tx)
                .await?;
            let total = sqlx::query_scalar(
                "SELECT COUNT(*) FROM agents WHERE org_id = $1 AND NOT internal",
            )
            .bind(org_id)
            .fetch_one(&mut *tx)
            .await?;
            Ok(Page { items, total })
        })
    }

    pub async fn agent(&self, org_id: Uuid, agent_id: Uuid) -> Result<Option<Agent>, StoreError> {
        let query = format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1 AND org_id = $2 AND NOT internal"
        );
        on_reader!(self, |pool| {
            Ok(sqlx::query_as(&query).bind(agent_id).bind(org_id).fetch_optional(pool).await?)
        })
    }

    /// The organization of an agent that events may be ingested into (never an internal one): a
    /// message of an event source names only its agent.
    pub async fn agent_org(&self, agent_id: Uuid) -> Result<Option<Uuid>, StoreError> {
        let query = "SELECT org_id FROM agents WHERE id = $1 AND NOT internal";
        on_reader!(self, |pool| {
            Ok(sqlx::query_scalar(query).bind(agent_id).fetch_optional(pool).await?)
        })
    }

    pub async fn rename_agent(
        &self,
        org_id: Uuid,
        agent_id: Uuid,
        name: &str,
    ) -> Result<Option<Agent>, StoreError> {
        let query = format!(
            "UPDATE agents SET name = $1, updated_at = $2 WHERE id = $3 AND org_id = $4 AND NOT internal
             RETURNING {AGENT_COLUMNS}"
        );
        on_writer!(self, |pool| {
            Ok(sqlx::query_as(&query)
                .bind(name)
                .bind(now_ms())
                .bind(agent_id)
                .bind(org_id)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// Deletes the agent with its webhooks, events, logs and attempts. `false` when there was
    /// none.
    pub async fn delete_agent(&self, org_id: Uuid, agent_id: Uuid) -> Result<bool, StoreError> {
        on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            // Attempts have no foreign key to their log (see `delete_webhook`).
            sqlx::query(
                "DELETE FROM attempts WHERE log_id IN (SELECT l.id FROM delivery_logs l
                    JOIN agents a ON a.id = l.agent_id
                    WHERE l.agent_id = $1 AND a.org_id = $2 AND NOT a.internal)",
            )
            .bind(agent_id)
            .bind(org_id)
            .execute(&mut *tx)
            .await?;
            let result =
                sqlx::query("DELETE FROM agents WHERE id = $1 AND org_id = $2 AND NOT internal")
                    .bind(agent_id)
                    .bind(org_id)
                    .execute(&mut *tx)
                    .await?;
            tx.commit().await?;
            Ok(result.rows_affected() > 0)
        })
    }
}
