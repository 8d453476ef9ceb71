//! Extractors that answer in the API's error shape, and the query parameters shared by
//! list endpoints: pagination and time ranges.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::ApiError;
use crate::store::Page;

/// `axum::Json`, rejecting in the API's error shape.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<T>::from_request(request, state).await?;
        Ok(Json(value))
    }
}

/// `axum::extract::Query`, rejecting in the API's error shape.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(value))
    }
}

/// `axum::extract::Path`, rejecting in the API's error shape.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Path(value))
    }
}

/// Items per page when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 100;

/// A page from `offset` and `limit` query parameters.
pub fn page(offset: Option<u64>, limit: Option<u32>) -> Result<Page, ApiError> {
    Ok(Page::new(
        offset.unwrap_or(0),
        limit.unwrap_or(DEFAULT_LIMIT),
    )?)
}

/// Unix nanoseconds of an RFC 3339 time parameter.
pub fn time_ns(name: &str, text: Option<&str>) -> Result<Option<i64>, ApiError> {
    text.map(|text| {
        OffsetDateTime::parse(text, &Rfc3339)
            .ok()
            .and_then(|time| i64::try_from(time.unix_timestamp_nanos()).ok())
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{name} must be an RFC 3339 time such as 2026-11-28T12:00:00Z"
                ))
            })
    })
    .transpose()
}

/// A `from`/`to` range; `to` defaults to now and `from` to `default_span` before `to`.
pub fn range(
    from: Option<&str>,
    to: Option<&str>,
    now_ns: i64,
    default_span_ns: i64,
) -> Result<(i64, i64), ApiError> {
    let to_ns = time_ns("to", to)?.unwrap_or(now_ns);
    let from_ns = time_ns("from", from)?.unwrap_or(to_ns.saturating_sub(default_span_ns));
    if from_ns >= to_ns {
        return Err(ApiError::bad_request("from must be before to"));
    }
    Ok((from_ns, to_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_ranges_are_checked() {
        assert_eq!(
            time_ns("from", Some("1970-01-01T00:00:01.5Z")).unwrap(),
            Some(1_500_000_000)
        );
        assert!(time_ns("from", Some("yesterday")).is_err());
        assert_eq!(range(None, None, 100, 40).unwrap(), (60, 100));
        let backwards = range(
            Some("2026-01-02T00:00:00Z"),
            Some("2026-01-01T00:00:00Z"),
            0,
            1,
        );
        assert_eq!(backwards.unwrap_err().message, "from must be before to");
        assert!(page(Some(0), Some(0)).is_err());
        assert!(page(Some(u64::MAX), None).is_err());
    }
}
