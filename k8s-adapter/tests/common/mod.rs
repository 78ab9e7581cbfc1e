//! Test servers: a tiny HTTP/1.1 server on loopback that answers from a
//! handler and records every request it saw.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub body: String,
}

pub type Handler = dyn Fn(&Seen) -> (u16, String) + Send + Sync;

pub struct Server {
    pub addr: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

fn handle(mut stream: TcpStream, handler: &Handler, seen: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            return;
        };
        let (method, path) = (method.to_string(), path.to_string());
        let (mut length, mut content_type) = (0usize, None);
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    "content-type" => content_type = Some(v.trim().to_string()),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let req = Seen {
            method,
            path,
            content_type,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        let (status, answer) = handler(&req);
        seen.lock().unwrap().push(req);
        let reason = if status < 400 { "OK" } else { "Error" };
        let _ = write!(
            stream,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        let _ = stream.flush();
    }
}

pub fn serve(handler: Box<Handler>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (h, s) = (Arc::new(handler), seen.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (h, s) = (h.clone(), s.clone());
            std::thread::spawn(move || handle(stream, &*h, &s));
        }
    });
    Server { addr, seen }
}

/// A loopback port nobody listens on.
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
