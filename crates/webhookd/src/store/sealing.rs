//! Secrets written by a version from before sealing are sealed when the store migrates, so
//! reading a secret can insist on the sealed form (an unsealed value is a corrupt row).

use uuid::Uuid;

use super::{on_writer, Store, StoreError};
use crate::domain::sealing::Sealer;

/// The tables and columns that hold sealed values.
const SEALED: &[(&str, &[&str])] = &[
    ("webhooks", &["signing_secret", "previous_signing_secret", "auth_config", "tls_config"]),
    ("organizations", &["signing_secret", "previous_signing_secret"]),
];

impl Store {
    /// Seals every secret still stored in plaintext. Idempotent, and a no-op on any database
    /// created by this version.
    pub(super) async fn seal_plaintext_secrets(&self) -> Result<(), StoreError> {
        for (table, columns) in SEALED {
            for column in *columns {
                let select = format!(
                    "SELECT id, {column} FROM {table}
                     WHERE {column} IS NOT NULL AND {column} NOT LIKE 'enc:v1:%'"
                );
                let update = format!("UPDATE {table} SET {column} = $1 WHERE id = $2");
                on_writer!(self, |pool| {
                    let rows: Vec<(Uuid, String)> = sqlx::query_as(&select).fetch_all(pool).await?;
                    for (id, plaintext) in rows.into_iter().filter(|(_, v)| !Sealer::is_sealed(v)) {
                        sqlx::query(&update)
                            .bind(self.seal(&plaintext))
                            .bind(id)
                            .execute(pool)
                            .await?;
                    }
                });
            }
        }
        Ok(())
    }
}
