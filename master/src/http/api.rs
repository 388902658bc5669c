//! The JSON API (`/api/v1/...`): the status page's data, with stable field
//! names that carry their units (see `status`). Errors are
//! `{"error": MESSAGE, "status": CODE}` with that HTTP status.

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use dfs_engine::sync;
use serde::{Deserialize, Serialize};

use super::pages::status_of;
use super::{run_blocking, AppState};
use crate::status;

/// `value` as a JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = (status, body).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("encode the answer as JSON: {e}"),
        ),
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    status: u16,
}

/// An error as JSON.
pub fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::to_vec(&ErrorBody {
        error: message,
        status: status.as_u16(),
    })
    .unwrap_or_else(|_| br#"{"error":"unencodable error"}"#.to_vec());
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Runs `work` within the request bounds and answers its value as JSON.
async fn answer<T: Serialize + Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&AppState) -> T + Send + 'static,
) -> Response {
    match run_blocking(state, work).await {
        Ok(value) => json(StatusCode::OK, &value),
        Err(why) => error(StatusCode::SERVICE_UNAVAILABLE, &why.message()),
    }
}

/// `GET /metrics`: the Prometheus exposition of `crate::metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    match run_blocking(&state, |state| state.master.render_metrics()).await {
        Ok(text) => {
            let mut response = (StatusCode::OK, text).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            response
        }
        Err(why) => error(StatusCode::SERVICE_UNAVAILABLE, &why.message()),
    }
}

/// `GET /api/v1/cluster`.
pub async fn cluster(State(state): State<AppState>) -> Response {
    answer(&state, |state| {
        status::cluster(&state.master, &state.history)
    })
    .await
}

/// `GET /api/v1/minions`.
pub async fn minions(State(state): State<AppState>) -> Response {
    answer(&state, |state| status::minions(&state.master)).await
}

/// `GET /api/v1/history`.
pub async fn history(State(state): State<AppState>) -> Response {
    answer(&state, |state| sync::lock(&state.history).series()).await
}

/// `?path=/x[&after=NAME]`.
#[derive(Debug, Default, Deserialize)]
pub struct BrowseQuery {
    pub path: Option<String>,
    pub after: Option<String>,
}

/// `GET /api/v1/browse?path=/x[&after=NAME]`: a directory's entries, a
/// file's pieces with their replicas, or a link's target.
pub async fn browse(
    State(state): State<AppState>,
    query: Result<Query<BrowseQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad query: expected ?path=PATH[&after=NAME]",
        );
    };
    let path = match status::parse_path(query.path.as_deref().unwrap_or("/")) {
        Ok(path) => path,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.message),
    };
    let built = run_blocking(&state, move |state| {
        status::browse(&state.master, &path, query.after.as_deref())
    })
    .await;
    match built {
        Ok(Ok(view)) => json(StatusCode::OK, &view),
        Ok(Err(e)) => error(status_of(&e), &e.message),
        Err(why) => error(StatusCode::SERVICE_UNAVAILABLE, &why.message()),
    }
}
