//! Organizations (tenants), their API keys and their org-level signing secret.

use uuid::Uuid;

use super::announce::Announcement;
use super::backend::BootstrapLock;
use super::{on_reader, on_writer, Organization, Store, StoreError, WebhookSecrets};
use crate::domain::clock::{now_ms, UnixMs};
use crate::domain::secrets::{
    api_key_prefix, generate_api_key, generate_signing_secret, hash_api_key,
};

/// A new organization with the plaintext of its first API key, which is never stored.
#[derive(Debug, Clone)]
pub struct CreatedOrg {
    pub org: Organization,
    pub api_key: String,
}

/// What may be shown of a stored API key: its prefix, never the key or its hash.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyInfo {
    pub key_prefix: String,
    pub org_id: Uuid,
    pub created_at: UnixMs,
}

impl Store {
    pub async fn create_org(&self, name: &str) -> Result<CreatedOrg, StoreError> {
        on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            let created = insert_org(&mut tx, name, self.seal(&generate_signing_secret())).await?;
            tx.commit().await?;
            Ok(created)
        })
    }

    /// Creates the first organization when there is none yet; `None` when one exists. Several
    /// PostgreSQL nodes starting at once create exactly one between them.
    pub async fn bootstrap_org(&self, name: &str) -> Result<Option<CreatedOrg>, StoreError> {
        on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            tx.lock_bootstrap().await?;
            let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM organizations")
                .fetch_one(&mut *tx)
                .await?;
            if existing > 0 {
                return Ok(None);
            }
            let created = insert_org(&mut tx, name, self.seal(&generate_signing_secret())).await?;
            tx.commit().await?;
            Ok(Some(created))
        })
    }

    /// Every organization, oldest first.
    pub async fn orgs(&self) -> Result<Vec<Organization>, StoreError> {
        on_reader!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT id, name, created_at FROM organizations ORDER BY created_at, id",
            )
            .fetch_all(pool)
            .await?)
        })
    }

    /// A new API key for an existing organization; `None` when there is no such organization.
    pub async fn create_api_key(&self, org_id: Uuid) -> Result<Option<String>, StoreError> {
        let api_key = generate_api_key();
        let inserted = on_writer!(self, |pool| {
            sqlx::query(
                "INSERT INTO api_keys (id, org_id, key_hash, key_prefix, created_at)
                 SELECT $1, id, $2, $3, $4 FROM organizations WHERE id = $5",
            )
            .bind(Uuid::now_v7())
            .bind(hash_api_key(&api_key))
            .bind(api_key_prefix(&api_key))
            .bind(now_ms())
            .bind(org_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok((inserted > 0).then_some(api_key))
    }

    /// The API keys of one organization, or of all, oldest first.
    pub async fn api_keys(&self, org_id: Option<Uuid>) -> Result<Vec<ApiKeyInfo>, StoreError> {
        on_reader!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT key_prefix, org_id, created_at FROM api_keys
                 WHERE $1 IS NULL OR org_id = $1 ORDER BY created_at, id",
            )
            .bind(org_id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Deletes the API keys whose prefix is `key_prefix` and returns them (none: unknown prefix).
    pub async fn revoke_api_keys(&self, key_prefix: &str) -> Result<Vec<ApiKeyInfo>, StoreError> {
        on_writer!(self, |pool| {
            Ok(sqlx::query_as(
                "DELETE FROM api_keys WHERE key_prefix = $1 RETURNING key_prefix, org_id, created_at",
            )
            .bind(key_prefix)
            .fetch_all(pool)
            .await?)
        })
    }

    pub async fn org(&self, org_id: Uuid) -> Result<Option<Organization>, StoreError> {
        on_reader!(self, |pool| {
            Ok(sqlx::query_as("SELECT id, name, created_at FROM organizations WHERE id = $1")
                .bind(org_id)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// The id and organization of the API key whose hash is `key_hash`: the API authenticates
    /// by its organization, a sign-in also records the key on its session.
    pub async fn api_key_by_hash(
        &self,
        key_hash: &[u8],
    ) -> Result<Option<(Uuid, Uuid)>, StoreError> {
        on_reader!(self, |pool| {
            Ok(sqlx::query_as("SELECT id, org_id FROM api_keys WHERE key_hash = $1")
                .bind(key_hash)
                .fetch_optional(pool)
                .await?)
        })
    }

    pub async fn org_secrets(&self, org_id: Uuid) -> Result<Option<WebhookSecrets>, StoreError> {
        on_reader!(self, |pool| {
            let row: Option<(String, Option<String>, Option<i64>)> = sqlx::query_as(
                "SELECT signing_secret, previous_signing_secret, previous_secret_expires_at
                 FROM organizations WHERE id = $1",
            )
            .bind(org_id)
            .fetch_optional(pool)
            .await?;
            row.map(|row| self.open_secrets(secrets_from_columns(row))).transpose()
        })
    }

    /// Replaces the org secret; the old one keeps signing until `grace_until`.
    pub async fn rotate_org_secret(
        &self,
        org_id: Uuid,
        grace_until: UnixMs,
    ) -> Result<Option<WebhookSecrets>, StoreError> {
        let rotated = on_writer!(self, |pool| {
            let row: Option<(String, Option<String>, Option<i64>)> = sqlx::query_as(
                "UPDATE organizations SET previous_signing_secret = signing_secret,
                    previous_secret_expires_at = $1, signing_secret = $2, updated_at = $3
                 WHERE id = $4
                 RETURNING signing_secret, previous_signing_secret, previous_secret_expires_at",
            )
            .bind(grace_until)
            .bind(self.seal(&generate_signing_secret()))
            .bind(now_ms())
            .bind(org_id)
            .fetch_optional(pool)
            .await?;
            row.map(|row| self.open_secrets(secrets_from_columns(row))).transpose()
        });
        self.announce(vec![Announcement::OrgChanged { org: org_id }]).await;
        rotated
    }
}

pub(super) fn secrets_from_columns(
    (current, previous, previous_expires_at): (String, Option<String>, Option<i64>),
) -> WebhookSecrets {
    WebhookSecrets { current, previous, previous_expires_at }
}

/// Inserts an organization with its (already sealed) signing secret and a first API key.
async fn insert_org<DB>(
    tx: &mut sqlx::Transaction<'_, DB>,
    name: &str,
    sealed_secret: String,
) -> Result<CreatedOrg, StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Vec<u8>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let now = now_ms();
    let org = Organization { id: Uuid::now_v7(), name: name.to_string(), created_at: now };
    sqlx::query(
        "INSERT INTO organizations (id, name, signing_secret, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(org.id)
    .bind(name)
    .bind(sealed_secret)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let api_key = generate_api_key();
    sqlx::query(
        "INSERT INTO api_keys (id, org_id, key_hash, key_prefix, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(Uuid::now_v7())
    .bind(org.id)
    .bind(hash_api_key(&api_key))
    .bind(api_key_prefix(&api_key))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(CreatedOrg { org, api_key })
}
