//! A stand-in of the Hugging Face Hub's HTTP API on 127.0.0.1, for tests.
//!
//! The product's Hub client (`sft-hub`) and Python's `huggingface_hub` both talk to it with
//! `HF_ENDPOINT=http://127.0.0.1:PORT`; `tests/fixtures/hub/check_standin.py` runs
//! `snapshot_download`, `hf_hub_download`, `create_repo` and `upload_folder` against it so
//! it cannot drift into accepting what the real Hub refuses. It serves:
//!
//! - `GET /api/{models,datasets}/ID[/revision/REV]` (`sha`, `siblings`, with `?blobs=true`
//!   their sizes and LFS sha256) and `GET .../tree/REV[/PATH]?recursive=true`;
//! - `HEAD`/`GET /[datasets/]ID/resolve/REV/FILE` with `X-Repo-Commit` and `ETag`; LFS files
//!   answer 302 with `X-Linked-Etag` / `X-Linked-Size` to `/lfs-cdn/SHA256` on a second
//!   port (another origin, like the Hub's CDN, where the token is not sent); byte ranges;
//! - private repos (401 `RepoNotFound` without the owner's token), gated repos (401/403
//!   `GatedRepo`), `refs/convert/parquet` and any other branch or tag as a revision;
//! - `POST /api/repos/create` (409 when it exists), `/api/validate-yaml`,
//!   `/api/{type}s/ID/preupload/REV`, `/ID.git/info/lfs/objects/batch` + `PUT` + verify,
//!   `/api/{type}s/ID/commit/REV` (NDJSON), `/api/{type}s/ID/branch/NAME`.
//!
//! A test can cut a download short once ([`StandIn::cut_next_download`]) to check resuming,
//! and read the request log ([`StandIn::requests`]).
//!
//! ```no_run
//! use hub_standin::{Hub, Kind, StandIn};
//! let mut hub = Hub::new();
//! hub.add_token("hf_user", "user");
//! hub.create_repo(Kind::Model, "user/tiny", false);
//! hub.commit_bytes(Kind::Model, "user/tiny", "main", vec![("config.json".into(), b"{}".to_vec())], "add");
//! let server = StandIn::start(hub).unwrap();
//! println!("HF_ENDPOINT={}", server.url());
//! ```

mod api;
mod http;
mod store;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

pub use store::{wants_lfs, Commit, Hub, Kind, Repo, StoredFile};

/// A running stand-in; stops when dropped.
pub struct StandIn {
    addr: SocketAddr,
    hub: Arc<Mutex<Hub>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl StandIn {
    /// Serves `hub` on an ephemeral port of 127.0.0.1.
    pub fn start(hub: Hub) -> std::io::Result<Self> {
        Self::start_on(hub, "127.0.0.1:0")
    }

    pub fn start_on(hub: Hub, addr: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let cdn = TcpListener::bind((addr.ip(), 0))?;
        cdn.set_nonblocking(true)?;
        let mut hub = hub;
        hub.cdn_base = Some(format!("http://{}", cdn.local_addr()?));
        let hub = Arc::new(Mutex::new(hub));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = [listener, cdn]
            .into_iter()
            .map(|listener| {
                let hub = hub.clone();
                let stop = stop.clone();
                std::thread::spawn(move || accept_loop(listener, hub, stop))
            })
            .collect();
        Ok(Self {
            addr,
            hub,
            stop,
            threads,
        })
    }

    /// `http://127.0.0.1:PORT`, what `HF_ENDPOINT` is set to.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The served state, to add repos or look at what was pushed.
    pub fn hub(&self) -> MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next download of `file` (a repo path, or an LFS sha256) sends only `bytes` of
    /// its body, then closes the connection.
    pub fn cut_next_download(&self, file: &str, bytes: usize) {
        self.hub().cuts.insert(file.to_string(), bytes);
    }

    /// Every request so far, `METHOD PATH[ Range: ...]`.
    pub fn requests(&self) -> Vec<String> {
        self.hub().log.clone()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, hub: Arc<Mutex<Hub>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let hub = hub.clone();
                std::thread::spawn(move || serve(stream, &hub));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn serve(mut stream: TcpStream, hub: &Mutex<Hub>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let request = match http::read_request(&stream) {
        Ok(Some(r)) => r,
        _ => return,
    };
    let response = {
        let mut hub = hub.lock().unwrap_or_else(|e| e.into_inner());
        api::handle(&mut hub, &request)
    };
    let _ = response.write_to(&mut stream, request.method == "HEAD");
    let _ = stream.shutdown(std::net::Shutdown::Both);
}
