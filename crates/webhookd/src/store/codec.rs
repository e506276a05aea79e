//! Domain enums stored as text, read back as the enum: an unknown value is a decode error (a
//! corrupt row), never silently replaced by a default.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;

use crate::domain::{LogStatus, PayloadState, RecoveryStatus, SendType};

macro_rules! text_enum {
    ($ty:ty) => {
        impl<DB: sqlx::Database> sqlx::Type<DB> for $ty
        where
            String: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $ty
        where
            &'r str: sqlx::Decode<'r, DB>,
        {
            fn decode(value: DB::ValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <&str as sqlx::Decode<DB>>::decode(value)?;
                <$ty>::parse(text)
                    .ok_or_else(|| format!("unknown {} {text:?}", stringify!($ty)).into())
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $ty
        where
            String: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<IsNull, BoxDynError> {
                // Owned: a borrowed `&'static str` would tie the query to `'static`.
                self.as_str().to_string().encode_by_ref(buf)
            }
        }
    };
}

text_enum!(LogStatus);
text_enum!(SendType);
text_enum!(PayloadState);
text_enum!(RecoveryStatus);
