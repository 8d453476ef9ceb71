//! The web UI, on the API listener at `/`: one HTML page and plain JavaScript modules
//! that use only the public REST and WebSocket APIs (same origin, so no CORS).
//!
//! The files under `collector/ui/` are embedded in the binary (in every build profile, so
//! tests serve what users get) and gzip-compressed once, at first use. Asset URLs carry a
//! version, `/assets/<version>/…`, the first 12 hex digits of a SHA-256 over every file:
//! any change gives every asset a new URL, so browsers may cache them forever while the
//! page itself (`/`) is never cached. Relative imports between modules resolve within one
//! version, so the JavaScript needs no build step.
//!
//! Every answer carries a Content-Security-Policy that allows scripts, styles and
//! connections from this origin only (no inline code, no `eval`, no other origin), so the
//! UI works air-gapped and injected markup could not run even if the UI let some through.

use std::collections::HashMap;
use std::io::Write;
use std::sync::LazyLock;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_SECURITY_POLICY, CONTENT_TYPE,
    REFERRER_POLICY, VARY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};

use crate::api::error::ApiError;

#[derive(RustEmbed)]
#[folder = "ui/"]
struct Files;

/// The policy every UI answer carries. `connect-src 'self'` covers the WebSocket on this
/// origin too (CSP level 3).
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Where `index.html` names the asset directory; replaced by `/assets/<version>`.
const ASSETS_PLACEHOLDER: &str = "%ASSETS%";

/// One file, ready to send.
struct Asset {
    content_type: &'static str,
    body: Bytes,
    /// `body`, gzip-compressed.
    gzip: Bytes,
}

/// Every file, by path under `ui/`, and the page.
struct Bundle {
    version: String,
    index: Asset,
    assets: HashMap<String, Asset>,
}

static BUNDLE: LazyLock<Bundle> = LazyLock::new(Bundle::load);

impl Bundle {
    fn load() -> Bundle {
        let mut names: Vec<String> = Files::iter().map(|name| name.into_owned()).collect();
        names.sort();
        let mut hasher = Sha256::new();
        let mut assets = HashMap::new();
        for name in &names {
            let file = Files::get(name).expect("an embedded file is there");
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(&file.data);
            assets.insert(name.clone(), Asset::new(name, file.data.into_owned()));
        }
        let version = dockermon_proto::transport::to_hex(&hasher.finalize())[..12].to_owned();
        let page = assets
            .remove("index.html")
            .expect("ui/index.html is embedded");
        let page = String::from_utf8_lossy(&page.body)
            .replace(ASSETS_PLACEHOLDER, &format!("/assets/{version}"));
        Bundle {
            index: Asset::new("index.html", page.into_bytes()),
            version,
            assets,
        }
    }
}

impl Asset {
    fn new(name: &str, body: Vec<u8>) -> Asset {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&body).expect("writing to memory");
        let gzip = encoder.finish().expect("writing to memory");
        Asset {
            content_type: content_type(name),
            body: body.into(),
            gzip: gzip.into(),
        }
    }

    /// The file, compressed when the client takes gzip.
    fn respond(&self, request: &HeaderMap, cache: &'static str) -> Response {
        let gzip = request
            .get_all(ACCEPT_ENCODING)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(|value| {
                value
                    .split(',')
                    .any(|coding| coding.trim().starts_with("gzip"))
            });
        let mut response = if gzip {
            let mut response = Body::from(self.gzip.clone()).into_response();
            response
                .headers_mut()
                .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            response
        } else {
            Body::from(self.body.clone()).into_response()
        };
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
        headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
        protect(headers);
        response
    }
}

/// The headers that keep the page to itself: its policy, no sniffing, no framing, no
/// referrer (URLs name containers).
fn protect(headers: &mut HeaderMap) {
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, extension)| extension) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

/// The UI's routes: `/` and `/assets/<version>/<path>`.
pub fn router() -> Router {
    Router::new()
        .route("/", get(page))
        .route("/assets/{version}/{*path}", get(asset))
}

/// The version in asset URLs now (changes with any file).
pub fn version() -> &'static str {
    &BUNDLE.version
}

async fn page(headers: HeaderMap) -> Response {
    BUNDLE.index.respond(&headers, "no-cache")
}

async fn asset(Path((version, path)): Path<(String, String)>, headers: HeaderMap) -> Response {
    // An old version's URL is refused rather than answered with today's file, which a
    // cache would then keep under the old name.
    match BUNDLE.assets.get(&path) {
        Some(asset) if version == BUNDLE.version => {
            asset.respond(&headers, "public, max-age=31536000, immutable")
        }
        _ => ApiError::not_found("no such asset (the UI may have been upgraded: reload)")
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_its_assets_by_version_and_every_named_asset_is_embedded() {
        let page = String::from_utf8(BUNDLE.index.body.to_vec()).unwrap();
        assert!(!page.contains(ASSETS_PLACEHOLDER));
        let prefix = format!("/assets/{}/", version());
        let named: Vec<&str> = page
            .split('"')
            .filter_map(|part| part.strip_prefix(prefix.as_str()))
            .collect();
        assert!(
            named.len() >= 2,
            "the page names its script and style: {page}"
        );
        for name in named {
            assert!(BUNDLE.assets.contains_key(name), "{name} is not embedded");
        }
    }

    #[test]
    fn every_module_import_names_an_embedded_file() {
        for (name, asset) in &BUNDLE.assets {
            if !name.ends_with(".js") {
                continue;
            }
            let source = String::from_utf8_lossy(&asset.body);
            let directory = name.rsplit_once('/').map_or("", |(dir, _)| dir);
            for line in source.lines().filter(|l| l.starts_with("import ")) {
                let target = line
                    .rsplit(['"', '\''])
                    .nth(1)
                    .expect("an import names a file");
                let mut parts: Vec<&str> = directory.split('/').filter(|p| !p.is_empty()).collect();
                for part in target.split('/') {
                    match part {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        part => parts.push(part),
                    }
                }
                let resolved = parts.join("/");
                assert!(
                    BUNDLE.assets.contains_key(&resolved),
                    "{name} imports {target}, which is not embedded"
                );
            }
        }
    }

    async fn get(path: &str, gzip: bool) -> Response {
        use tower::ServiceExt;
        let mut request = axum::http::Request::get(path);
        if gzip {
            request = request.header(ACCEPT_ENCODING, "br, gzip;q=0.9");
        }
        router()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_page_is_never_cached_its_assets_always_and_both_carry_the_policy() {
        let page = get("/", false).await;
        assert_eq!(page.status(), 200);
        assert_eq!(page.headers()[CACHE_CONTROL], "no-cache");
        let script = format!("/assets/{}/js/main.js", version());
        let asset = get(&script, true).await;
        assert_eq!(asset.status(), 200);
        assert_eq!(asset.headers()[CONTENT_ENCODING], "gzip");
        assert_eq!(
            asset.headers()[CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert!(
            asset.headers()[CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        for response in [&page, &asset] {
            let policy = response.headers()[CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap();
            assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe"));
            assert_eq!(response.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
        let plain = get(&script, false).await;
        assert!(plain.headers().get(CONTENT_ENCODING).is_none());
        // Another version's URL is not answered with this version's file.
        assert_eq!(
            get("/assets/000000000000/js/main.js", true).await.status(),
            404
        );
        assert_eq!(
            get(&format!("/assets/{}/nothing.js", version()), true)
                .await
                .status(),
            404
        );
    }

    #[test]
    fn assets_decompress_to_themselves() {
        use std::io::Read;
        for asset in BUNDLE.assets.values() {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&asset.gzip[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, asset.body);
        }
    }
}
