//! The embedded assets: htmx (vendored, see `crates/webhookd/assets/README.md`) and the
//! stylesheet. Each is served under a name carrying a hash of its content, so it can be cached
//! for a year and a new build is fetched at once.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::UiError;

struct Asset {
    /// `htmx.1a2b3c4d5e6f7a8b.js`: the stem, a content hash, the extension.
    name: String,
    content_type: &'static str,
    bytes: &'static [u8],
}

impl Asset {
    fn new(stem: &str, extension: &str, content_type: &'static str, bytes: &'static [u8]) -> Self {
        let hash = hex::encode(&Sha256::digest(bytes)[..8]);
        Self { name: format!("{stem}.{hash}.{extension}"), content_type, bytes }
    }

    fn path(&self) -> String {
        format!("/ui/assets/{}", self.name)
    }
}

struct Assets {
    htmx: Asset,
    style: Asset,
    htmx_path: String,
    style_path: String,
}

static ASSETS: LazyLock<Assets> = LazyLock::new(|| {
    let htmx = Asset::new(
        "htmx",
        "js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/htmx-2.0.11.min.js"),
    );
    let style = Asset::new(
        "style",
        "css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/style.css"),
    );
    Assets { htmx_path: htmx.path(), style_path: style.path(), htmx, style }
});

/// Where pages load htmx from.
pub fn htmx_path() -> &'static str {
    &ASSETS.htmx_path
}

/// Where pages load the stylesheet from.
pub fn style_path() -> &'static str {
    &ASSETS.style_path
}

pub async fn serve(Path(name): Path<String>) -> Result<Response, UiError> {
    let asset = [&ASSETS.htmx, &ASSETS.style]
        .into_iter()
        .find(|asset| asset.name == name)
        .ok_or(UiError::NotFound)?;
    let headers = [
        (CONTENT_TYPE, asset.content_type),
        (CACHE_CONTROL, "public, max-age=31536000, immutable"),
    ];
    Ok((headers, asset.bytes).into_response())
}
