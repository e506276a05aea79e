//! Dashboard and portal sessions (`ui_sessions`). A session row is found by the SHA-256 of the
//! cookie's token; expired rows are never returned and are swept when new sessions are made.

use uuid::Uuid;

use super::{on_reader, on_writer, Store, StoreError};
use crate::domain::clock::{now_ms, UnixMs};

/// A signed-in browser: the whole organization (dashboard) or one agent of it (portal).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UiSession {
    pub token_hash: Vec<u8>,
    pub org_id: Uuid,
    /// Portal sessions see this agent only.
    pub agent_id: Option<Uuid>,
    pub api_key_id: Option<Uuid>,
    /// The synchronizer token every state-changing form of this session must carry.
    pub csrf_token: String,
    pub expires_at: UnixMs,
    pub created_at: UnixMs,
}

impl Store {
    /// Stores `session`, first sweeping every expired one.
    pub async fn create_ui_session(&self, session: &UiSession) -> Result<(), StoreError> {
        on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM ui_sessions WHERE expires_at <= $1")
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO ui_sessions (token_hash, org_id, agent_id, api_key_id, csrf_token,
                    expires_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&session.token_hash)
            .bind(session.org_id)
            .bind(session.agent_id)
            .bind(session.api_key_id)
            .bind(&session.csrf_token)
            .bind(session.expires_at)
            .bind(session.created_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The unexpired session whose token hashes to `token_hash`.
    pub async fn ui_session(&self, token_hash: &[u8]) -> Result<Option<UiSession>, StoreError> {
        on_reader!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT token_hash, org_id, agent_id, api_key_id, csrf_token, expires_at, created_at
                 FROM ui_sessions WHERE token_hash = $1 AND expires_at > $2",
            )
            .bind(token_hash)
            .bind(now_ms())
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Ends a session (sign-out).
    pub async fn delete_ui_session(&self, token_hash: &[u8]) -> Result<(), StoreError> {
        on_writer!(self, |pool| {
            sqlx::query("DELETE FROM ui_sessions WHERE token_hash = $1")
                .bind(token_hash)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
