//! The refresh cookie, for browsers: the web UI keeps its access token in memory and its
//! refresh token in an `HttpOnly` cookie, so no script (the UI's own or an injected one)
//! can read either from storage, and a reload signs in again without a password.
//!
//! The cookie is `SameSite=Strict` and scoped to `/api/v1/auth`; only refresh reads it
//! (logout deletes it). Refresh also needs the [`CLIENT_HEADER`] header and, when the
//! browser sends `Origin`, an origin equal to the request's host: a page of another
//! origin cannot send a custom header without a CORS preflight, which the collector never
//! grants. That is the CSRF defence; `SameSite` alone would not do it, as another port of
//! the same host is the same site.

use axum::http::header::{COOKIE, HOST, ORIGIN};
use axum::http::{HeaderMap, HeaderValue};
use std::time::Duration;

use crate::api::error::ApiError;

/// The cookie's name.
pub const NAME: &str = "dockermon_refresh";
/// Where the browser sends it: refresh and logout, nothing else.
const PATH: &str = "/api/v1/auth";
/// The header a browser client sends with cookie-authenticated requests (any value).
pub const CLIENT_HEADER: &str = "x-dockermon-client";

/// A `Set-Cookie` value that stores `token` for `ttl`. `secure` adds `Secure` (the UI was
/// reached over HTTPS, directly or through a proxy that says so).
pub fn set(token: &str, ttl: Duration, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let value = format!(
        "{NAME}={token}; Path={PATH}; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        ttl.as_secs()
    );
    HeaderValue::from_str(&value).expect("refresh tokens are hex and a dot")
}

/// A `Set-Cookie` value that deletes the cookie.
pub fn clear() -> HeaderValue {
    HeaderValue::from_static(
        "dockermon_refresh=; Path=/api/v1/auth; Max-Age=0; HttpOnly; SameSite=Strict",
    )
}

/// The refresh token in the request's cookies, if any.
pub fn read(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == NAME)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// Whether the browser reached the collector over HTTPS: its `Origin`, or a proxy's
/// `X-Forwarded-Proto`.
pub fn over_https(headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header(ORIGIN.as_str()).is_some_and(|origin| origin.starts_with("https://"))
        || header("x-forwarded-proto").is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

/// Refuses a cookie-authenticated request that a page of another origin could have made:
/// without [`CLIENT_HEADER`], or with an `Origin` whose host is not the request's `Host`.
pub fn check_same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    if !headers.contains_key(CLIENT_HEADER) {
        return Err(ApiError::forbidden(
            "a cookie is only accepted with the X-Dockermon-Client header",
        ));
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    match (origin_host, host) {
        (Some(origin), Some(host)) if origin.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(ApiError::forbidden(
            "the request's Origin is not this collector",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_refresh_token_is_read_from_among_other_cookies() {
        let map = headers(&[("cookie", "theme=dark; dockermon_refresh=abc.def ; x=1")]);
        assert_eq!(read(&map), Some("abc.def"));
        assert_eq!(read(&headers(&[("cookie", "dockermon_refresh=")])), None);
        assert_eq!(
            read(&headers(&[("cookie", "other_dockermon_refresh=x")])),
            None
        );
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_scoped_to_auth() {
        let value = set("s.t", Duration::from_secs(60), false);
        let value = value.to_str().unwrap();
        assert!(value.starts_with("dockermon_refresh=s.t; Path=/api/v1/auth; Max-Age=60;"));
        assert!(value.contains("HttpOnly") && value.contains("SameSite=Strict"));
        assert!(!value.contains("Secure"));
        assert!(
            set("s.t", Duration::from_secs(60), true)
                .to_str()
                .unwrap()
                .ends_with("; Secure")
        );
    }

    #[test]
    fn only_same_origin_requests_with_the_client_header_may_use_the_cookie() {
        let client = (CLIENT_HEADER, "web");
        let host = ("host", "collector:3810");
        assert!(check_same_origin(&headers(&[client, host])).is_ok());
        assert!(
            check_same_origin(&headers(&[
                client,
                host,
                ("origin", "http://collector:3810")
            ]))
            .is_ok()
        );
        assert!(check_same_origin(&headers(&[host, ("origin", "http://collector:3810")])).is_err());
        assert!(
            check_same_origin(&headers(&[
                client,
                host,
                ("origin", "http://collector:8080")
            ]))
            .is_err()
        );
        assert!(check_same_origin(&headers(&[client, host, ("origin", "null")])).is_err());
    }
}
