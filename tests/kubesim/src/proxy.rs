//! An HTTP CONNECT proxy for the `HTTPS_PROXY` of the env file. It tunnels to hosts registered
//! with [`Routes::add`] and answers `502 Bad Gateway` for every other host. It never connects to
//! anything outside 127.0.0.1. The same table resolves host names for every simulated client
//! (JWT authenticators, Argo CD). Registered: OpenShift ingress hosts (`<route host>:443`, e.g.
//! the SPIRE OIDC discovery Route), kind API servers (`<cluster>-control-plane:6443`) and the
//! node ports of the upstream OIDC discovery provider (`<node name>:<nodePort>`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `host:port` (as in the CONNECT line) to a local address.
#[derive(Default)]
pub struct Routes(RwLock<HashMap<String, SocketAddr>>, RwLock<Vec<String>>);

impl Routes {
    pub fn add(&self, host_port: &str, backend: SocketAddr) {
        assert!(
            backend.ip().is_loopback(),
            "kubesim routes only to loopback backends"
        );
        self.0
            .write()
            .unwrap()
            .insert(host_port.to_ascii_lowercase(), backend);
    }
    /// Forget a route (the host then answers 502 again).
    pub fn remove(&self, host_port: &str) {
        self.0
            .write()
            .unwrap()
            .remove(&host_port.to_ascii_lowercase());
    }
    /// Count `pem` (a CA) among the "system roots" of every simulated client: hosts with certificates
    /// from it are then publicly trusted, as a real ingress with a public certificate would be.
    pub fn add_public_root(&self, pem: &str) {
        self.1.write().unwrap().push(pem.to_string());
    }
    pub fn public_roots(&self) -> Vec<String> {
        self.1.read().unwrap().clone()
    }
    pub fn get(&self, host_port: &str) -> Option<SocketAddr> {
        self.0
            .read()
            .unwrap()
            .get(&host_port.to_ascii_lowercase())
            .copied()
    }
}

pub async fn serve(listener: TcpListener, routes: Arc<Routes>) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        let routes = routes.clone();
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match client.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
                if head.len() > 16 * 1024 {
                    return;
                }
            }
            let text = String::from_utf8_lossy(&head).to_string();
            let mut parts = text.lines().next().unwrap_or_default().split_whitespace();
            let (method, target) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            if method != "CONNECT" {
                let _ = client
                    .write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                    .await;
                return;
            }
            let Some(backend) = routes.get(target) else {
                let body = format!("kubesim proxy: no route to {target}\n");
                let _ = client
                    .write_all(
                        format!(
                            "HTTP/1.1 502 Bad Gateway\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
                return;
            };
            let Ok(mut upstream) = TcpStream::connect(backend).await else {
                let _ = client
                    .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                    .await;
                return;
            };
            if client
                .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                .await
                .is_err()
            {
                return;
            }
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
    }
}
