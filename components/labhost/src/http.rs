//! A minimal HTTP/1.1 server (hyper): one task per connection, and a way
//! for a handler to end the process once its answer has been written.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub type Body = Full<Bytes>;

/// A handler's answer, and the exit code the process should end with once
/// it has been sent (`/exit`).
pub struct Reply {
    pub response: Response<Body>,
    pub exit: Option<i32>,
}

impl Reply {
    pub fn text(status: StatusCode, text: impl Into<String>) -> Reply {
        let mut response = Response::new(Full::new(Bytes::from(text.into())));
        *response.status_mut() = status;
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"));
        Reply { response, exit: None }
    }

    pub fn ok(text: impl Into<String>) -> Reply {
        Reply::text(StatusCode::OK, text)
    }
}

/// Serves HTTP on `0.0.0.0:port`; `handle` gets each request with its peer's address.
pub async fn serve<F, Fut>(port: u16, handle: F) -> anyhow::Result<()>
where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Reply> + Send + 'static,
{
    let listener = TcpListener::bind(("0.0.0.0", port)).await.map_err(|e| anyhow::anyhow!("listening on TCP port {port}: {e}"))?;
    println!("Started HTTP server on port {}", listener.local_addr()?.port());
    serve_on(listener, handle).await
}

pub async fn serve_on<F, Fut>(listener: TcpListener, handle: F) -> anyhow::Result<()>
where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Reply> + Send + 'static,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("accepting a connection: {e}");
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let exit: Arc<Mutex<Option<i32>>> = Arc::default();
            let exit_in_service = exit.clone();
            let service = hyper::service::service_fn(move |request| {
                let handle = handle.clone();
                let exit = exit_in_service.clone();
                async move {
                    let mut reply = handle(request, peer).await;
                    if let Some(code) = reply.exit {
                        *exit.lock().expect("exit slot") = Some(code);
                        // Close after this answer, so the connection ends once it is written.
                        reply.response.headers_mut().insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
                    }
                    Ok::<_, Infallible>(reply.response)
                }
            });
            let served = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            if let Err(e) = served {
                eprintln!("connection from {peer}: {e}");
            }
            let requested = *exit.lock().expect("exit slot");
            if let Some(code) = requested {
                println!("exiting with code {code} as asked");
                std::process::exit(code);
            }
        });
    }
}

/// serve-hostname: every request gets the host name.
pub async fn hostname_only(_request: Request<Incoming>, _peer: SocketAddr) -> Reply {
    Reply::ok(crate::hostname())
}
