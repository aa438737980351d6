//! A TCP proxy for one directed link between cluster members (node i's connections
//! to node j), so tests can cut the network without root: while a link is cut its
//! open connections are shut down and new ones are closed as soon as they arrive.
//! Node ids are unchanged, so the cluster id still matches.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// One link's proxy: listens on `port`, forwards to `target`.
pub struct Link {
    pub port: u16,
    cut: Arc<AtomicBool>,
    /// Bumped on every cut, so connections opened before it end.
    epoch: Arc<AtomicU64>,
}

impl Link {
    pub fn start(target: u16) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let epoch = Arc::new(AtomicU64::new(0));
        let (c, e) = (cut.clone(), epoch.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                if c.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let born = e.load(Ordering::SeqCst);
                pipe(&client, &server, e.clone(), born);
                pipe(&server, &client, e.clone(), born);
            }
        });
        Link { port, cut, epoch }
    }

    /// Cut the link (open connections end, new ones are refused) or restore it.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            self.epoch.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Copy `from` to `to` on a thread until either side closes or the link is cut.
fn pipe(from: &TcpStream, to: &TcpStream, epoch: Arc<AtomicU64>, born: u64) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if epoch.load(Ordering::SeqCst) != born {
                break;
            }
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}
