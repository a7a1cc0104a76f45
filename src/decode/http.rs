//! HTTP/1.x request/response head parser. HELPER-OWNED.

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestHead {
    pub method: String,
    pub uri: String,
    pub host: Option<String>,
    pub content_length: Option<u64>,
    pub chunked: bool,
    /// Bytes from the start of the request line to the end of the blank line.
    pub head_len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpParse<T> {
    Done(T),
    Incomplete,
    NotHttp,
}

pub fn parse_request_head(_buf: &[u8]) -> HttpParse<RequestHead> {
    HttpParse::NotHttp
}

/// Status code and head length of a response head.
pub fn parse_response_head(_buf: &[u8]) -> HttpParse<(u16, usize)> {
    HttpParse::NotHttp
}
