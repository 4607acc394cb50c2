//! A request as the proxy handles it: `http::Request`'s shape with the headers as a
//! [`HeaderList`] — the client's lines in their order, no map built for them — from the
//! client's head to the upstream's. The method names are `http::Request`'s, so code reads the
//! same; only hyper's HTTP/2 side converts, at its edge. Pure: `http` and the header list.

use http::{Extensions, Method, Uri, Version};

use crate::header_list::HeaderList;

/// A request head and its body.
#[derive(Debug, Default)]
pub struct Request<B> {
    head: Parts,
    body: B,
}

/// A request's head.
#[derive(Debug, Default)]
pub struct Parts {
    /// The method.
    pub method: Method,
    /// The target, as received (origin-form for HTTP/1, absolute for HTTP/2).
    pub uri: Uri,
    /// The protocol version.
    pub version: Version,
    /// The header lines.
    pub headers: HeaderList,
    /// What the server side attaches (HTTP/2's upgrade handle and `:protocol`).
    pub extensions: Extensions,
}

impl<B> Request<B> {
    /// A request from its parts and body.
    pub fn from_parts(head: Parts, body: B) -> Request<B> {
        Request { head, body }
    }

    /// The request's parts and body, apart.
    pub fn into_parts(self) -> (Parts, B) {
        (self.head, self.body)
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.head.method
    }

    /// The target.
    pub fn uri(&self) -> &Uri {
        &self.head.uri
    }

    /// The protocol version.
    pub fn version(&self) -> Version {
        self.head.version
    }

    /// The header lines.
    pub fn headers(&self) -> &HeaderList {
        &self.head.headers
    }

    /// The header lines, to change.
    pub fn headers_mut(&mut self) -> &mut HeaderList {
        &mut self.head.headers
    }

    /// What the server side attached.
    pub fn extensions(&self) -> &Extensions {
        &self.head.extensions
    }

    /// What the server side attached, to take from.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.head.extensions
    }

    /// The body.
    pub fn body(&self) -> &B {
        &self.body
    }

    /// The body, to change or take.
    pub fn body_mut(&mut self) -> &mut B {
        &mut self.body
    }

    /// The body alone.
    pub fn into_body(self) -> B {
        self.body
    }
}

/// An `http::Request` (hyper's HTTP/2 side) as the proxy handles it: its map becomes a list.
impl<B> From<http::Request<B>> for Request<B> {
    fn from(request: http::Request<B>) -> Request<B> {
        let (parts, body) = request.into_parts();
        let head = Parts {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: HeaderList::from(parts.headers),
            extensions: parts.extensions,
        };
        Request::from_parts(head, body)
    }
}
