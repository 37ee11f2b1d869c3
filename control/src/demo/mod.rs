//! The demo page served at `/`: join a room, publish the camera with simulcast over WHIP,
//! and watch everyone else over WHEP. Plain HTML and JavaScript compiled into the binary,
//! so a fresh node shows something useful with no build step and no external resources.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");

/// Routes `/`, `/app.js` and `/style.css`; mount it beside the signaling routes.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    // no-cache: the page is tiny, and a stale app.js after an upgrade would talk an old
    // protocol to the new node.
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_the_page_and_its_assets_with_their_types() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router::<()>()).await;
        });
        let get = |path: &'static str| {
            let url = format!("{base}{path}");
            async move {
                let response = reqwest::get(url).await.unwrap();
                let status = response.status().as_u16();
                let content_type = response
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                (status, content_type, response.text().await.unwrap())
            }
        };

        let (status, ty, body) = get("/").await;
        assert_eq!(status, 200);
        assert_eq!(ty, "text/html; charset=utf-8");
        assert!(body.contains(r#"<script src="app.js""#), "{body}");
        assert!(body.contains(r#"href="style.css""#), "{body}");

        let (status, ty, body) = get("/app.js").await;
        assert_eq!(status, 200);
        assert_eq!(ty, "text/javascript; charset=utf-8");
        assert!(body.contains("window.sluiceDemo"));

        let (status, ty, _) = get("/style.css").await;
        assert_eq!(status, 200);
        assert_eq!(ty, "text/css; charset=utf-8");

        let (status, _, _) = get("/nope.js").await;
        assert_eq!(status, 404);
        server.abort();
    }
}
