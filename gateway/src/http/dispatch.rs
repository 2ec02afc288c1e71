//! Dispatch: every request enters at [`handle`], which checks its head,
//! matches its route, and either answers at once or starts the handler
//! that reads a body and waits for the log. Every answer is counted by
//! route and status.
//!
//! Each stage matches the route exhaustively: a new route is a compile
//! error here until it is given its methods, its rate limit and its
//! handler. No arm is a catch-all that could send it to another handler.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::Request;

use super::admin::{admin_create, admin_sale_op, SaleOp};
use super::body::BodyRequest;
use super::head::{check_head, BodyType};
use super::live::{admin_stats, admin_stream, dashboard_page};
use super::orders::{order_cancel, order_get, order_pay};
use super::peer::Peer;
use super::probes::{export_status, healthz, metrics, readyz};
use super::purchase::{purchase, PathSku, Purchase};
use super::response::{
    bad_request, method_not_allowed, not_found, rate_limited, unavailable, Resp,
};
use super::route::{match_path, Route};
use super::sales::{sale_get, sales_list};
use crate::app::App;

/// Entry point of every request: routes it and counts the answer. A
/// purchase's answer is also timed, from here to its end, into the latency
/// histogram (one clock read at each end).
///
/// hyper stores this future, and moves it, once per request, so it is kept
/// small: answers that need no await (errors, probes, reads) are made here
/// before it starts, purchase takes only what it needs from the request
/// (see [`Purchase`]), and the other changing routes run boxed. With every
/// handler inline it was 2.8 KB, and moving it cost ~1 % of the server's
/// CPU per admission.
pub fn handle(
    app: Arc<App>,
    peer: Peer,
    req: Request<Incoming>,
) -> impl Future<Output = Result<Resp, Infallible>> + Send {
    enum Next {
        Done(Route, Resp),
        Purchase(Purchase, Instant),
        Boxed(Box<Changing>),
    }
    let next = match route(&app, peer, &req) {
        Step::Done(route, resp) => Next::Done(route, resp),
        Step::Purchase(sku, body_type) => {
            let start = Instant::now();
            match Purchase::new(&app, peer.ip(), sku, body_type, req) {
                Ok(p) => Next::Purchase(p, start),
                Err(resp) => {
                    let status = resp.status().as_u16();
                    app.metrics.purchase_answered(status, start.elapsed());
                    Next::Done(Route::Purchase, resp)
                }
            }
        }
        Step::Change(change, param, body_type) => Next::Boxed(Box::new(Changing {
            change,
            param,
            body_type,
            req,
        })),
    };
    async move {
        let (route, resp) = match next {
            Next::Done(route, resp) => (route, resp),
            Next::Purchase(p, start) => {
                let resp = purchase(&app, p).await;
                let status = resp.status().as_u16();
                app.metrics.purchase_answered(status, start.elapsed());
                (Route::Purchase, resp)
            }
            Next::Boxed(c) => (c.change.route(), Box::pin(changing_route(&app, *c)).await),
        };
        app.metrics.request(route, resp.status().as_u16());
        Ok(resp)
    }
}

/// The routes other than purchase that change state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    OrderCancel,
    OrderPay,
    AdminCreate,
    AdminSale(SaleOp),
}

impl Change {
    fn route(self) -> Route {
        match self {
            Change::OrderCancel => Route::OrderCancel,
            Change::OrderPay => Route::OrderPay,
            Change::AdminCreate => Route::AdminCreate,
            Change::AdminSale(SaleOp::AddStock) => Route::AdminStock,
            Change::AdminSale(SaleOp::Pause) => Route::AdminPause,
            Change::AdminSale(SaleOp::Resume) => Route::AdminResume,
            Change::AdminSale(SaleOp::End) => Route::AdminEnd,
        }
    }
}

/// A changing route on its way to its handler. The path parameter is
/// copied out: the URI is a slice of hyper's read buffer, and holding it
/// across the durability wait would make hyper copy that buffer when it
/// reads ahead.
struct Changing {
    change: Change,
    param: String,
    body_type: BodyType,
    req: Request<Incoming>,
}

/// What [`route`] decided.
enum Step {
    /// The answer, made without waiting.
    Done(Route, Resp),
    /// A purchase of the sku the path names.
    Purchase(PathSku, BodyType),
    /// Another route that reads a body and waits for the log.
    Change(Change, String, BodyType),
}

/// The routes that need the engine (all but the probes and unknown paths).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EngineRoute {
    SaleGet,
    SalesList,
    OrderGet,
    Purchase,
    Change(Change),
}

/// How a route is answered. Each route maps to exactly one handler here,
/// and each stage after matches its own enum, so no arm is reachable only
/// by a bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handler {
    /// Answered from the app alone, without the engine.
    Probe(Probe),
    /// The dashboard: its page and its data, from the app alone too.
    Live(LiveRoute),
    /// Needs the engine: 503 until recovery is done.
    Engine(EngineRoute),
    /// An unknown path.
    NotFound,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    Healthz,
    Readyz,
    Metrics,
    Export,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LiveRoute {
    Page,
    Stats,
    Stream,
}

impl Handler {
    fn of(route: Route) -> Handler {
        let change = |c| Handler::Engine(EngineRoute::Change(c));
        match route {
            Route::SaleGet => Handler::Engine(EngineRoute::SaleGet),
            Route::SalesList => Handler::Engine(EngineRoute::SalesList),
            Route::OrderGet => Handler::Engine(EngineRoute::OrderGet),
            Route::Purchase => Handler::Engine(EngineRoute::Purchase),
            Route::OrderCancel => change(Change::OrderCancel),
            Route::OrderPay => change(Change::OrderPay),
            Route::AdminCreate => change(Change::AdminCreate),
            Route::AdminStock => change(Change::AdminSale(SaleOp::AddStock)),
            Route::AdminPause => change(Change::AdminSale(SaleOp::Pause)),
            Route::AdminResume => change(Change::AdminSale(SaleOp::Resume)),
            Route::AdminEnd => change(Change::AdminSale(SaleOp::End)),
            Route::Healthz => Handler::Probe(Probe::Healthz),
            Route::Readyz => Handler::Probe(Probe::Readyz),
            Route::Metrics => Handler::Probe(Probe::Metrics),
            Route::AdminExport => Handler::Probe(Probe::Export),
            Route::Dashboard => Handler::Live(LiveRoute::Page),
            Route::AdminStats => Handler::Live(LiveRoute::Stats),
            Route::AdminStream => Handler::Live(LiveRoute::Stream),
            Route::Other => Handler::NotFound,
        }
    }

    /// The route back, for the test that each maps to one handler.
    #[cfg(test)]
    fn route(self) -> Route {
        match self {
            Handler::Engine(e) => e.route(),
            Handler::Probe(Probe::Healthz) => Route::Healthz,
            Handler::Probe(Probe::Readyz) => Route::Readyz,
            Handler::Probe(Probe::Metrics) => Route::Metrics,
            Handler::Probe(Probe::Export) => Route::AdminExport,
            Handler::Live(LiveRoute::Page) => Route::Dashboard,
            Handler::Live(LiveRoute::Stats) => Route::AdminStats,
            Handler::Live(LiveRoute::Stream) => Route::AdminStream,
            Handler::NotFound => Route::Other,
        }
    }
}

impl EngineRoute {
    fn route(self) -> Route {
        match self {
            EngineRoute::SaleGet => Route::SaleGet,
            EngineRoute::SalesList => Route::SalesList,
            EngineRoute::OrderGet => Route::OrderGet,
            EngineRoute::Purchase => Route::Purchase,
            EngineRoute::Change(c) => c.route(),
        }
    }

    /// Who its requests are rate limited as, besides the global bucket.
    fn limit(self) -> Limit {
        match self {
            EngineRoute::SaleGet
            | EngineRoute::SalesList
            | EngineRoute::OrderGet
            | EngineRoute::Change(Change::OrderCancel) => Limit::Ip,
            EngineRoute::Purchase => Limit::User,
            EngineRoute::Change(Change::OrderPay | Change::AdminCreate | Change::AdminSale(_)) => {
                Limit::None
            }
        }
    }
}

/// Who a route's requests are rate limited as, besides the global bucket.
enum Limit {
    /// The client's IP, here, before the handler.
    Ip,
    /// Purchase: the global bucket and the client's address first, then
    /// the user once the credential (or in body mode the body) names them
    /// (in the handler).
    User,
    /// Admin and payment: not limited.
    None,
}

fn route(app: &App, peer: Peer, req: &Request<Incoming>) -> Step {
    let body_type = match check_head(req) {
        Ok(body_type) => body_type,
        Err(resp) => return Step::Done(Route::Other, resp),
    };
    let Ok(matched) = match_path(req.uri().path()) else {
        return Step::Done(Route::Other, bad_request("path: invalid percent-encoding"));
    };
    let route = matched.route;
    let methods = route.methods();
    if !methods.allows(req.method()) {
        return Step::Done(route, method_not_allowed(methods.allow()));
    }
    let resp = match Handler::of(route) {
        Handler::Engine(target) => {
            let param = matched.param.as_ref();
            return engine_route(
                app,
                peer.ip(),
                MatchedRoute {
                    route: target,
                    param,
                    body_type,
                },
                req,
            );
        }
        Handler::Probe(Probe::Healthz) => healthz(),
        Handler::Probe(Probe::Readyz) => readyz(app),
        Handler::Probe(Probe::Metrics) => metrics(app),
        Handler::Probe(Probe::Export) => export_status(app, req.headers()),
        Handler::Live(LiveRoute::Page) => dashboard_page(),
        Handler::Live(LiveRoute::Stats) => admin_stats(app, req.headers()),
        Handler::Live(LiveRoute::Stream) => admin_stream(app, peer, req),
        Handler::NotFound => not_found(),
    };
    Step::Done(route, resp)
}

/// An engine route, matched: its path parameter and declared body type.
struct MatchedRoute<'a> {
    route: EngineRoute,
    param: &'a str,
    body_type: BodyType,
}

/// The routes that need the engine: 503 until recovery is done.
fn engine_route(app: &App, ip: IpAddr, target: MatchedRoute<'_>, req: &Request<Incoming>) -> Step {
    let MatchedRoute {
        route: engine_route,
        param,
        body_type,
    } = target;
    let route = engine_route.route();
    let Some(core) = app.core() else {
        return Step::Done(route, unavailable("recovery in progress"));
    };
    match engine_route.limit() {
        Limit::Ip if app.limiter.enabled() => {
            let now = app.limiter.now_ns();
            let ip = app.client_ip(ip, req.headers());
            if let Err(retry) = app
                .limiter
                .check_global(now)
                .and_then(|_| app.limiter.check_ip(ip, now))
            {
                return Step::Done(route, rate_limited(&app.metrics, retry));
            }
        }
        Limit::Ip | Limit::User | Limit::None => {}
    }
    let resp = match engine_route {
        EngineRoute::SaleGet => sale_get(core, param),
        EngineRoute::SalesList => sales_list(core),
        EngineRoute::OrderGet => order_get(app, core, param, req),
        EngineRoute::Purchase => return Step::Purchase(PathSku::copy(param), body_type),
        EngineRoute::Change(c) => return Step::Change(c, param.to_string(), body_type),
    };
    Step::Done(route, resp)
}

async fn changing_route(app: &App, c: Changing) -> Resp {
    let Some(core) = app.core() else {
        return unavailable("recovery in progress");
    };
    let Changing {
        change,
        param,
        body_type,
        req,
    } = c;
    let req = BodyRequest { body_type, req };
    match change {
        Change::OrderCancel => order_cancel(app, core, &param, req).await,
        Change::OrderPay => order_pay(app, core, &param, req).await,
        Change::AdminCreate => admin_create(app, core, req).await,
        Change::AdminSale(op) => admin_sale_op(app, core, op, &param, req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route maps to one handler, and back.
    #[test]
    fn handlers_round_trip() {
        for route in Route::ALL {
            assert_eq!(Handler::of(route).route(), route);
        }
    }

    #[test]
    fn changes_name_their_routes() {
        let all = [
            Change::OrderCancel,
            Change::OrderPay,
            Change::AdminCreate,
            Change::AdminSale(SaleOp::AddStock),
            Change::AdminSale(SaleOp::Pause),
            Change::AdminSale(SaleOp::Resume),
            Change::AdminSale(SaleOp::End),
        ];
        for c in all {
            assert_eq!(
                Handler::of(c.route()),
                Handler::Engine(EngineRoute::Change(c))
            );
        }
        let mut routes: Vec<_> = all.iter().map(|c| c.route().as_str()).collect();
        routes.sort_unstable();
        routes.dedup();
        assert_eq!(routes.len(), all.len());
    }
}
