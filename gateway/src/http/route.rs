//! The route table: which [`Route`] a path names, the methods it takes, and
//! its path parameter (a sku or an order id), percent-decoded the same way
//! on every route.
//!
//! `Route` is also the label of the request counters (`crate::metrics`),
//! which is why this file depends on nothing else of the HTTP layer.

use std::borrow::Cow;

engine::labelled_enum! {
    /// Routes as counted. `Other` covers unknown paths.
    pub enum Route {
        Purchase => "purchase",
        SaleGet => "sale_get",
        SalesList => "sales_list",
        OrderGet => "order_get",
        OrderCancel => "order_cancel",
        OrderPay => "order_pay",
        AdminCreate => "admin_create_sale",
        AdminStock => "admin_add_stock",
        AdminPause => "admin_pause",
        AdminResume => "admin_resume",
        AdminEnd => "admin_end",
        AdminExport => "admin_export",
        AdminStats => "admin_stats",
        AdminStream => "admin_stream",
        Dashboard => "dashboard",
        Healthz => "healthz",
        Readyz => "readyz",
        Metrics => "metrics",
        Other => "other",
    }
}

/// The methods a route answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Methods {
    /// GET, and HEAD wherever GET works (RFC 9110 §9.3.2).
    Read,
    /// POST only.
    Change,
    /// Any: an unknown path is 404 whatever the method.
    Any,
}

impl Methods {
    /// The `Allow` header of a 405.
    pub fn allow(self) -> &'static str {
        match self {
            Methods::Read => "GET, HEAD",
            Methods::Change => "POST",
            Methods::Any => "GET, HEAD, POST",
        }
    }

    pub fn allows(self, method: &hyper::Method) -> bool {
        match self {
            Methods::Read => method == hyper::Method::GET || method == hyper::Method::HEAD,
            Methods::Change => method == hyper::Method::POST,
            Methods::Any => true,
        }
    }
}

impl Route {
    pub fn methods(self) -> Methods {
        match self {
            Route::SaleGet
            | Route::SalesList
            | Route::OrderGet
            | Route::Healthz
            | Route::Readyz
            | Route::Metrics
            | Route::AdminExport
            | Route::AdminStats
            | Route::AdminStream
            | Route::Dashboard => Methods::Read,
            Route::Purchase
            | Route::OrderCancel
            | Route::OrderPay
            | Route::AdminCreate
            | Route::AdminStock
            | Route::AdminPause
            | Route::AdminResume
            | Route::AdminEnd => Methods::Change,
            Route::Other => Methods::Any,
        }
    }
}

/// A path matched against the table.
#[derive(Debug, PartialEq, Eq)]
pub struct Matched<'a> {
    pub route: Route,
    /// The sku or order id the path carries, percent-decoded; empty for
    /// routes without one.
    pub param: Cow<'a, str>,
}

/// A path with a `%` not followed by two hex digits, or whose decoded bytes
/// are not UTF-8.
#[derive(Debug, PartialEq, Eq)]
pub struct BadEncoding;

/// Most segments any route has; a longer path is unknown.
const SEGMENTS_MAX: usize = 6;

/// Matches a path (without its query) to a route.
#[inline]
pub fn match_path(path: &str) -> Result<Matched<'_>, BadEncoding> {
    let Some((seg, n, percent)) = segments(path) else {
        return Ok(other());
    };
    if !percent {
        let (route, param) = lookup(&seg[..n]);
        return Ok(Matched {
            route,
            param: Cow::Borrowed(param),
        });
    }
    // Rare: decode every segment, then match as above. Decoding per segment
    // keeps an encoded '/' (%2F) inside its segment.
    let decoded = seg[..n]
        .iter()
        .map(|s| percent_decode(s))
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&str> = decoded.iter().map(|s| s.as_ref()).collect();
    let (route, param) = lookup(&refs);
    Ok(Matched {
        route,
        param: Cow::Owned(param.to_string()),
    })
}

fn other<'a>() -> Matched<'a> {
    Matched {
        route: Route::Other,
        param: Cow::Borrowed(""),
    }
}

/// The table. A path that is none of these is `Other` (404): the only
/// wildcard, and it changes nothing.
#[inline]
fn lookup<'s>(seg: &[&'s str]) -> (Route, &'s str) {
    match *seg {
        ["v1", "sales", sku, "purchase"] => (Route::Purchase, sku),
        ["v1", "sales", sku] => (Route::SaleGet, sku),
        ["v1", "sales"] => (Route::SalesList, ""),
        ["v1", "orders", id] => (Route::OrderGet, id),
        ["v1", "orders", id, "cancel"] => (Route::OrderCancel, id),
        ["v1", "orders", id, "pay"] => (Route::OrderPay, id),
        ["v1", "admin", "sales"] => (Route::AdminCreate, ""),
        ["v1", "admin", "sales", sku, "stock"] => (Route::AdminStock, sku),
        ["v1", "admin", "sales", sku, "pause"] => (Route::AdminPause, sku),
        ["v1", "admin", "sales", sku, "resume"] => (Route::AdminResume, sku),
        ["v1", "admin", "sales", sku, "end"] => (Route::AdminEnd, sku),
        ["v1", "admin", "export"] => (Route::AdminExport, ""),
        ["v1", "admin", "stats"] => (Route::AdminStats, ""),
        ["v1", "admin", "stream"] => (Route::AdminStream, ""),
        ["dashboard"] => (Route::Dashboard, ""),
        ["healthz"] => (Route::Healthz, ""),
        ["readyz"] => (Route::Readyz, ""),
        ["metrics"] => (Route::Metrics, ""),
        _ => (Route::Other, ""),
    }
}

/// The split path: at most [`SEGMENTS_MAX`] segments are ever meaningful.
/// Also says whether the path has a `%` (found in the same pass: a second
/// scan of the path cost ~70 instructions per request).
#[inline]
fn segments(path: &str) -> Option<([&str; SEGMENTS_MAX], usize, bool)> {
    // By hand: `str::split` cost ~500 instructions per call here.
    let rest = path.strip_prefix('/')?;
    let mut out = [""; SEGMENTS_MAX];
    let mut n = 0;
    let mut start = 0;
    let mut percent = false;
    for (i, &b) in rest.as_bytes().iter().enumerate() {
        if b == b'/' {
            // `start` and `i` are at a '/' or an end: char boundaries.
            *out.get_mut(n)? = rest.get(start..i)?;
            n += 1;
            start = i + 1;
        } else if b == b'%' {
            percent = true;
        }
    }
    *out.get_mut(n)? = rest.get(start..)?;
    Some((out, n + 1, percent))
}

/// Decodes `%XX` escapes (RFC 3986 §2.1) in one path segment.
fn percent_decode(segment: &str) -> Result<Cow<'_, str>, BadEncoding> {
    if !segment.as_bytes().contains(&b'%') {
        return Ok(Cow::Borrowed(segment));
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(BadEncoding)?;
            let hi = hex_value(hex[0]).ok_or(BadEncoding)?;
            let lo = hex_value(hex[1]).ok_or(BadEncoding)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| BadEncoding)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One path per route: the table reaches every route but `Other`, and
    /// each path reaches the route it is listed with.
    #[test]
    fn every_route_has_a_path() {
        let paths = [
            ("/v1/sales/s1/purchase", Route::Purchase, "s1"),
            ("/v1/sales/s1", Route::SaleGet, "s1"),
            ("/v1/sales", Route::SalesList, ""),
            ("/v1/orders/7", Route::OrderGet, "7"),
            ("/v1/orders/7/cancel", Route::OrderCancel, "7"),
            ("/v1/orders/7/pay", Route::OrderPay, "7"),
            ("/v1/admin/sales", Route::AdminCreate, ""),
            ("/v1/admin/sales/s1/stock", Route::AdminStock, "s1"),
            ("/v1/admin/sales/s1/pause", Route::AdminPause, "s1"),
            ("/v1/admin/sales/s1/resume", Route::AdminResume, "s1"),
            ("/v1/admin/sales/s1/end", Route::AdminEnd, "s1"),
            ("/v1/admin/export", Route::AdminExport, ""),
            ("/v1/admin/stats", Route::AdminStats, ""),
            ("/v1/admin/stream", Route::AdminStream, ""),
            ("/dashboard", Route::Dashboard, ""),
            ("/healthz", Route::Healthz, ""),
            ("/readyz", Route::Readyz, ""),
            ("/metrics", Route::Metrics, ""),
            ("/nope", Route::Other, ""),
        ];
        for (path, route, param) in paths {
            let m = match_path(path).unwrap();
            assert_eq!((m.route, m.param.as_ref()), (route, param), "{path}");
        }
        for route in Route::ALL {
            assert!(
                paths.iter().any(|(_, r, _)| *r == route),
                "no path for {route:?}"
            );
        }
    }

    #[test]
    fn labels_are_distinct() {
        let mut labels: Vec<_> = Route::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Route::COUNT);
    }

    #[test]
    fn unknown_shapes_are_other() {
        for path in [
            "",
            "/",
            "/v1",
            "/v1/sales/x/purchase/",
            "/v1/admin/sales/x",
            "/a/b/c/d/e/f/g",
            "v1/sales",
            "/v1/orders/7/refund",
        ] {
            assert_eq!(match_path(path).unwrap().route, Route::Other, "{path:?}");
        }
    }

    /// Encoded and plain spellings of a path reach the same route with the
    /// same parameter, on every route that has one.
    #[test]
    fn percent_encoding_is_decoded_on_every_route() {
        for (plain, encoded) in [
            ("/v1/sales/p1", "/v1/sales/p%31"),
            ("/v1/sales/p2/purchase", "/v1/sales/p%32/purchase"),
            ("/v1/orders/12", "/v1/orders/%312"),
            ("/v1/orders/12/cancel", "/v1/orders/1%32/cancel"),
            ("/v1/admin/sales/a-b/end", "/v1/admin/sales/a%2db/end"),
            ("/v1/sales", "/v1/%73ales"),
        ] {
            assert_eq!(match_path(plain), match_path(encoded), "{encoded}");
        }
        // An encoded slash stays inside its segment.
        let m = match_path("/v1/sales/a%2Fb").unwrap();
        assert_eq!((m.route, m.param.as_ref()), (Route::SaleGet, "a/b"));
        for bad in [
            "/v1/sales/%",
            "/v1/sales/%4",
            "/v1/sales/%zz",
            "/v1/sales/%ff",
        ] {
            assert_eq!(match_path(bad), Err(BadEncoding), "{bad}");
        }
    }

    /// `segments` splits like `str::split('/')` after the leading '/'.
    #[test]
    fn segments_match_split() {
        fn reference(path: &str) -> Option<Vec<&str>> {
            let parts: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
            (parts.len() <= SEGMENTS_MAX).then_some(parts)
        }
        for path in [
            "",
            "/",
            "//",
            "/v1",
            "/v1/",
            "/v1/sales/hot/purchase",
            "/a/b/c/d/e/f",
            "/a/b/c/d/e/f/g",
            "/a//b",
            "/é/ü/ß",
            "v1/sales",
            "/v1/sales/x/purchase/",
        ] {
            let ours = segments(path).map(|(seg, n, _)| seg[..n].to_vec());
            assert_eq!(ours, reference(path), "{path:?}");
        }
    }
}
