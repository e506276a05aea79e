//! The `meta` table: facts about the database itself. A value sealed with the server key on first
//! start, so a start with another key is refused at once instead of answering 500s on the first
//! secret it cannot open; and the row the write probe rewrites to learn whether a full database
//! takes writes again.

use super::{on_reader, on_writer, Store, StoreError};

const SEALING_CHECK: &str = "sealing_check";
/// What the check value seals; any plaintext would do, since AES-GCM authenticates it.
const SEALING_CHECK_PLAINTEXT: &str = "webhookd sealing check";
/// How every sealed value starts (`domain/sealing.rs`).
const SEALED_PREFIX: &str = "enc:v1:";

impl Store {
    /// Checks the server key against what the database holds sealed: its check value or, in a
    /// database from before the check, any sealed signing secret. Records the check value when
    /// there is none yet. Nodes starting at once with different keys cannot both record theirs:
    /// the first insert wins and the others are compared with it.
    pub(super) async fn check_sealing_key(&self) -> Result<(), StoreError> {
        if let Some(check) = self.sealing_check().await? {
            return self.opens(&check);
        }
        if let Some(secret) = self.any_sealed_secret().await? {
            self.opens(&secret)?;
        }
        on_writer!(self, |pool| {
            sqlx::query(
                "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            )
            .bind(SEALING_CHECK)
            .bind(self.seal(SEALING_CHECK_PLAINTEXT))
            .execute(pool)
            .await?;
        });
        let check = self.sealing_check().await?.ok_or(StoreError::Corrupt {
            table: "meta",
            detail: "the sealing check value just written is missing".into(),
        })?;
        self.opens(&check)
    }

    /// Whether the server key opens `sealed` (AES-GCM authenticates, so another key fails).
    fn opens(&self, sealed: &str) -> Result<(), StoreError> {
        self.sealer.open(sealed).map(drop).map_err(|_| StoreError::SealedWithAnotherKey)
    }

    async fn sealing_check(&self) -> Result<Option<String>, StoreError> {
        // Read on the writer: a check value recorded a moment ago must be seen.
        on_writer!(self, |pool| {
            Ok(sqlx::query_scalar("SELECT value FROM meta WHERE name = $1")
                .bind(SEALING_CHECK)
                .fetch_optional(pool)
                .await?)
        })
    }

    async fn any_sealed_secret(&self) -> Result<Option<String>, StoreError> {
        on_reader!(self, |pool| {
            Ok(sqlx::query_scalar(
                "SELECT signing_secret FROM organizations WHERE signing_secret LIKE $1
                 UNION ALL
                 SELECT signing_secret FROM webhooks WHERE signing_secret LIKE $1
                 LIMIT 1",
            )
            .bind(format!("{SEALED_PREFIX}%"))
            .fetch_optional(pool)
            .await?)
        })
    }
}

impl Store {
    /// Writes one small row (`meta.write_probe`, the time of the probe): whether the database
    /// takes writes again after it was found full.
    pub(super) async fn write_probe(&self) -> Result<(), StoreError> {
        on_writer!(self, |pool| {
            sqlx::query(
                "INSERT INTO meta (name, value) VALUES ('write_probe', $1)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )
            .bind(crate::domain::clock::now_ms().to_string())
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}
