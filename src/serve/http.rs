//! Just enough HTTP/1.1 for Prometheus, kubectl and kube-rs on loopback:
//! requests with a `Content-Length` body on keep-alive connections, whole
//! answers, and chunked streams for watches.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    pub method: String,
    /// The path without its query, e.g. `/api/v1/namespaces/shop/pods`.
    pub path: String,
    /// Decoded query parameters in order.
    pub query: Vec<(String, String)>,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The largest request body read (the API server's own default limit is
/// 3 MB), the longest request or header line, and the most header lines.
pub const MAX_BODY: u64 = 3 * 1024 * 1024;
pub const MAX_LINE: u64 = 16 * 1024;
pub const MAX_HEADERS: usize = 100;

/// Why a request was not read: the connection failed, or the request is
/// answered with an error status and the connection closed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Malformed(String),
    #[error("the request body of {0} bytes is over the {MAX_BODY}-byte limit")]
    TooLarge(u64),
}

impl RequestError {
    /// The HTTP status to answer with (`None`: the connection is gone).
    pub fn status(&self) -> Option<(u16, &'static str)> {
        match self {
            RequestError::Io(_) => None,
            RequestError::Malformed(_) => Some((400, "BadRequest")),
            RequestError::TooLarge(_) => Some((413, "RequestEntityTooLarge")),
        }
    }
}

/// One line of at most `MAX_LINE` bytes; 0 at the end of the stream.
fn read_line(reader: &mut BufReader<TcpStream>, line: &mut String) -> Result<usize, RequestError> {
    let n = reader
        .by_ref()
        .take(MAX_LINE)
        .read_line(line)
        .map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => {
                RequestError::Malformed("a request line that is not UTF-8".into())
            }
            _ => RequestError::Io(e),
        })?;
    if n as u64 == MAX_LINE && !line.ends_with('\n') {
        return Err(RequestError::Malformed(format!(
            "a request line over {MAX_LINE} bytes"
        )));
    }
    Ok(n)
}

/// Reads one request; `None` when the peer closed the connection first.
pub fn read_request(reader: &mut BufReader<TcpStream>) -> Result<Option<Request>, RequestError> {
    let mut line = String::new();
    if read_line(reader, &mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(RequestError::Malformed("bad request line".into()));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut req = Request {
        method: method.to_string(),
        path: percent_decode(path),
        query: query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect(),
        ..Default::default()
    };
    loop {
        let mut h = String::new();
        if read_line(reader, &mut h)? == 0 {
            // The client said it was done before its headers were.
            return Err(RequestError::Malformed(
                "the request ended before the blank line that ends its headers".into(),
            ));
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if req.headers.len() == MAX_HEADERS {
            return Err(RequestError::Malformed(format!(
                "more than {MAX_HEADERS} header lines"
            )));
        }
        if let Some((k, v)) = h.split_once(':') {
            req.headers
                .push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    if req
        .header("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        return Err(RequestError::Malformed(
            "chunked request bodies are not supported".into(),
        ));
    }
    let length: u64 = match req.header("content-length") {
        None => 0,
        Some(l) => l
            .parse()
            .map_err(|_| RequestError::Malformed(format!("bad Content-Length `{l}`")))?,
    };
    if length > MAX_BODY {
        return Err(RequestError::TooLarge(length));
    }
    req.body = vec![0; length as usize];
    reader
        .read_exact(&mut req.body)
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => RequestError::Malformed(format!(
                "the body ended before its Content-Length of {length} bytes"
            )),
            _ => RequestError::Io(e),
        })?;
    Ok(Some(req))
}

#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Sent as `Warning: 299 - "..."` headers (RFC 7234), which kubectl
    /// prints as `Warning: ...`.
    pub warnings: Vec<String>,
}

impl Response {
    pub fn json(status: u16, v: &serde_json::Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(v).expect("JSON serialises"),
            warnings: Vec::new(),
        }
    }

    pub fn text(status: u16, content_type: &'static str, body: String) -> Response {
        Response {
            status,
            content_type,
            body: body.into_bytes(),
            warnings: Vec::new(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        _ => "Error",
    }
}

pub fn write_response(stream: &mut TcpStream, r: &Response, close: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len(),
        if close { "close" } else { "keep-alive" }
    );
    for w in &r.warnings {
        head.push_str(&warning_header(w));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&r.body)?;
    stream.flush()
}

/// One `Warning` header line: the text as a quoted string, control
/// characters dropped (a field name must not end the header) and other
/// non-ASCII ones replaced.
fn warning_header(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    for c in text.chars().filter(|c| !c.is_control()) {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            c if c.is_ascii() => quoted.push(c),
            _ => quoted.push('?'),
        }
    }
    format!("Warning: 299 - \"{quoted}\"\r\n")
}

/// A chunked `200` stream of JSON lines (a watch).
pub struct Chunked<'a>(&'a mut TcpStream);

impl<'a> Chunked<'a> {
    pub fn start(stream: &'a mut TcpStream) -> io::Result<Self> {
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )?;
        stream.flush()?;
        Ok(Chunked(stream))
    }

    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        write!(self.0, "{:x}\r\n", data.len())?;
        self.0.write_all(data)?;
        self.0.write_all(b"\r\n")?;
        self.0.flush()
    }

    pub fn finish(self) -> io::Result<()> {
        self.0.write_all(b"0\r\n\r\n")?;
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(super::percent_decode("app%3Dapi%2Cx"), "app=api,x");
        assert_eq!(super::percent_decode("a+b%"), "a b%");
    }
}
