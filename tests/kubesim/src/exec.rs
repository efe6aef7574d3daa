//! `pods/exec` over WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`), answered from a
//! per-pod command table.

use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// One exec call.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecRequest {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub command: Vec<String>,
    /// What the client sent on stdin (only read with `stdin=true` on `v5.channel.k8s.io`,
    /// which can signal the end of stdin).
    pub stdin: Vec<u8>,
    pub tty: bool,
}

/// What a command printed and its exit code.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
    /// The program never finishes: no output and no status until the client goes away
    /// (the session then ends; no thread is held meanwhile).
    pub hang: bool,
    /// Answer only after this long (nothing if the client goes away first).
    pub delay: Option<std::time::Duration>,
}

impl ExecResult {
    pub fn ok(stdout: impl Into<Vec<u8>>) -> Self {
        Self {
            stdout: stdout.into(),
            exit_code: 0,
            ..Self::default()
        }
    }
    pub fn failed(exit_code: i32, stderr: impl Into<Vec<u8>>) -> Self {
        Self {
            stderr: stderr.into(),
            exit_code,
            ..Self::default()
        }
    }
    /// A program that never returns (e.g. one waiting forever on a socket).
    pub fn hang() -> Self {
        Self {
            hang: true,
            ..Self::default()
        }
    }
    /// This result, delivered after `delay` (e.g. a program giving up after a timeout).
    pub fn after(mut self, delay: std::time::Duration) -> Self {
        self.delay = Some(delay);
        self
    }
    /// What a shell answers for an unknown program (exit 127).
    pub fn not_found(program: &str) -> Self {
        Self::failed(
            127,
            format!("exec: \"{program}\": executable file not found in $PATH\n"),
        )
    }
}

/// A command implementation.
pub type ExecHandler = Arc<dyn Fn(&ExecRequest) -> ExecResult + Send + Sync>;

struct Entry {
    namespace: String,
    pod: String,
    container: Option<String>,
    program: Option<String>,
    handler: ExecHandler,
}

/// The command table of a cluster: `(namespace, pod, container, program)` to handler.
/// `pod` may be `*`; a `None` container or program matches any. The most recent registration wins.
#[derive(Default)]
pub struct ExecTable {
    entries: Mutex<Vec<Entry>>,
    active: std::sync::atomic::AtomicUsize,
}

/// Counts one open exec session of a table.
struct ActiveSession(Arc<ExecTable>);

impl Drop for ActiveSession {
    fn drop(&mut self) {
        self.0
            .active
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl ExecTable {
    pub fn register(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        program: Option<&str>,
        handler: ExecHandler,
    ) {
        self.entries.lock().unwrap().push(Entry {
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            container: container.map(str::to_string),
            program: program.map(str::to_string),
            handler,
        });
    }

    pub fn lookup(&self, req: &ExecRequest) -> Option<ExecHandler> {
        let program = req.command.first().map(String::as_str).unwrap_or_default();
        self.entries
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|e| {
                e.namespace == req.namespace
                    && (e.pod == "*" || e.pod == req.pod)
                    && e.container.as_deref().is_none_or(|c| c == req.container)
                    && e.program.as_deref().is_none_or(|p| p == program)
            })
            .map(|e| e.handler.clone())
    }

    /// Exec sessions open right now (hung ones included).
    pub fn active_sessions(&self) -> usize {
        self.active.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Run a command: the registered handler, or exit 127.
    pub fn run(&self, req: &ExecRequest) -> ExecResult {
        match self.lookup(req) {
            Some(h) => h(req),
            None => ExecResult::not_found(req.command.first().map(String::as_str).unwrap_or("")),
        }
    }
}

/// The subprotocols kubesim speaks, preferred first.
pub const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// Pick one of the offered subprotocols (`Sec-WebSocket-Protocol`).
pub fn choose_protocol(offered: &str) -> Option<&'static str> {
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    PROTOCOLS.iter().copied().find(|p| offered.contains(p))
}

/// The status frame (channel 3) for an exit code.
pub fn status_json(exit_code: i32, command: &[String]) -> serde_json::Value {
    if exit_code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code {exit_code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": exit_code.to_string()}]}
        })
    }
}

/// Serve one exec session on an upgraded connection.
pub async fn serve_session<S>(
    io: S,
    protocol: &'static str,
    mut req: ExecRequest,
    table: Arc<ExecTable>,
    hang: bool,
    want_stdin: bool,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    table
        .active
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let _active = ActiveSession(table.clone());
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        io,
        tokio_tungstenite::tungstenite::protocol::Role::Server,
        None,
    )
    .await;
    if hang {
        // Never answer; keep the connection until the client goes away.
        while let Some(Ok(_)) = ws.next().await {}
        return;
    }
    if want_stdin && protocol == "v5.channel.k8s.io" {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Binary(data)) if !data.is_empty() => match data[0] {
                    0 => req.stdin.extend_from_slice(&data[1..]),
                    255 if data.get(1) == Some(&0) => break,
                    _ => {}
                },
                Ok(Message::Close(_)) | Err(_) => return,
                _ => {}
            }
        }
    }
    let command = req.command.clone();
    let result = tokio::task::spawn_blocking(move || table.run(&req))
        .await
        .unwrap_or_else(|e| ExecResult::failed(1, format!("handler panicked: {e}")));
    if result.hang {
        // A hung program: keep the connection until the client goes away.
        while let Some(Ok(_)) = ws.next().await {}
        return;
    }
    if let Some(delay) = result.delay {
        let gone = tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            _ = async { while let Some(Ok(_)) = ws.next().await {} } => true,
        };
        if gone {
            return;
        }
    }
    let frame = |channel: u8, data: &[u8]| {
        let mut v = Vec::with_capacity(data.len() + 1);
        v.push(channel);
        v.extend_from_slice(data);
        Message::Binary(v.into())
    };
    let mut frames = Vec::new();
    if !result.stdout.is_empty() {
        frames.push(frame(1, &result.stdout));
    }
    if !result.stderr.is_empty() {
        frames.push(frame(2, &result.stderr));
    }
    let status = status_json(result.exit_code, &command).to_string();
    frames.push(frame(3, status.as_bytes()));
    for f in frames {
        if ws.send(f).await.is_err() {
            return;
        }
    }
    let _ = ws
        .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "".into(),
        }))
        .await;
    // Drain until the client closes too.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}
