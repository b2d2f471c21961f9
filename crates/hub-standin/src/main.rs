//! `hub-standin --root DIR [--port N] [--token TOKEN=USER]...`: serves the repos under
//! `DIR/models/OWNER/NAME` and `DIR/datasets/OWNER/NAME` until killed, after printing
//! `HF_ENDPOINT=http://127.0.0.1:PORT` on its first line.

use std::io::Write;
use std::path::PathBuf;

use hub_standin::{Hub, StandIn};

fn main() {
    let mut root = None;
    let mut port = 0u16;
    let mut hub = Hub::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--root", Some(v)) => root = Some(PathBuf::from(v)),
            ("--port", Some(v)) => match v.parse() {
                Ok(p) => port = p,
                Err(_) => fail(&format!("--port {v}: not a port number")),
            },
            ("--token", Some(v)) => match v.split_once('=') {
                Some((token, user)) => hub.add_token(token, user),
                None => fail(&format!("--token {v}: expected TOKEN=USER")),
            },
            _ => fail(&format!("unexpected argument {arg}")),
        }
    }
    if let Some(root) = &root {
        if let Err(e) = hub.load_dir(root) {
            fail(&format!("{}: {e}", root.display()));
        }
    }
    let server = match StandIn::start_on(hub, &format!("127.0.0.1:{port}")) {
        Ok(s) => s,
        Err(e) => fail(&format!("cannot listen on 127.0.0.1:{port}: {e}")),
    };
    println!("HF_ENDPOINT={}", server.url());
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}

fn fail(message: &str) -> ! {
    eprintln!("hub-standin: {message}\n  usage: hub-standin --root DIR [--port N] [--token TOKEN=USER]...");
    std::process::exit(2);
}
