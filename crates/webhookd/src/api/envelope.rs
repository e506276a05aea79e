//! The success envelope `{"success": true, "data": ..., "message": "..."}` and Talkover's
//! page-based pagination block.

use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<T> {
    /// Always `true`.
    pub success: bool,
    pub data: T,
    pub message: String,
}

pub fn ok<T>(message: impl Into<String>, data: T) -> Json<Envelope<T>> {
    Json(Envelope { success: true, data, message: message.into() })
}

pub const PER_PAGE_DEFAULT: i64 = 25;
pub const PER_PAGE_MAX: i64 = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1-based page number (default 1).
    #[param(minimum = 1)]
    pub page: Option<i64>,
    /// Items per page, 1–100 (default 25).
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<i64>,
}

impl PageParams {
    /// `(page, per_page)` with defaults, or the field that is out of range.
    pub fn resolve(&self) -> Result<(i64, i64), crate::api::error::ApiError> {
        use crate::api::error::ApiError;
        let page = self.page.unwrap_or(1);
        if page < 1 {
            return Err(ApiError::field("page", "must be at least 1"));
        }
        let per_page = self.per_page.unwrap_or(PER_PAGE_DEFAULT);
        if !(1..=PER_PAGE_MAX).contains(&per_page) {
            return Err(ApiError::field(
                "per_page",
                format!("must be between 1 and {PER_PAGE_MAX}"),
            ));
        }
        Ok((page, per_page))
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Pagination {
    pub current_page: i64,
    pub per_page: i64,
    /// Exact, or for delivery logs past 10,000 matches an estimate (see `total_estimated`).
    pub total: i64,
    pub last_page: i64,
    /// `true` when `total` (and so `last_page`) is an estimate: more than 10,000 logs match.
    pub total_estimated: bool,
}

impl Pagination {
    pub fn new(current_page: i64, per_page: i64, total: i64) -> Self {
        let last_page = ((total + per_page - 1) / per_page).max(1);
        Self { current_page, per_page, total, last_page, total_estimated: false }
    }

    /// The same, with an estimated total.
    pub fn estimated(self, estimated: bool) -> Self {
        Self { total_estimated: estimated, ..self }
    }
}
