//! Shared helpers: configs, a sink that records what was logged, and a
//! seeded driver of random engine operations.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::{
    Engine, EngineConfig, Event, EventSink, OrderId, PurchaseOutcome, SaleSpec, SinkError,
};
use parking_lot::Mutex;
use persistence::{
    open_with_storage, FsyncMode, RecoveryReport, SimStorage, Storage, Ticket, Wal, WalConfig,
};

pub const ENGINE: EngineConfig = EngineConfig::with_shards(2);

pub fn sim_dir() -> PathBuf {
    PathBuf::from("/sim/wal")
}

pub fn config(dir: &Path) -> WalConfig {
    let mut c = WalConfig::new(dir);
    c.snapshot_every_records = 0;
    c
}

pub fn open_sim(sim: &SimStorage, config: WalConfig) -> (Engine, Wal, RecoveryReport) {
    open_with_storage(config, ENGINE, Arc::new(sim.clone()) as Arc<dyn Storage>).expect("open")
}

/// Forwards to the log and remembers (ticket, event) of what it accepted.
pub struct Tee<'a> {
    pub wal: &'a Wal,
    pub log: &'a Mutex<Vec<(u64, Event)>>,
    pub last: Option<Ticket>,
}

impl EventSink for Tee<'_> {
    fn emit(&mut self, event: &Event) -> Result<(), SinkError> {
        let mut sink = self.wal.sink();
        sink.emit(event)?;
        let t = sink.ticket().expect("a ticket");
        self.log.lock().push((t.0, event.clone()));
        self.last = Some(t);
        Ok(())
    }
}

/// One random operation on the engine.
#[derive(Clone, Debug)]
pub enum SimOp {
    Purchase {
        sale: u8,
        user: u8,
        qty: u32,
        request: Option<u8>,
    },
    Pay(u16),
    Cancel(u16),
    Expire,
    AddStock {
        sale: u8,
        add: u64,
    },
    Pause(u8),
    Resume(u8),
    End(u8),
}

pub const SALES: u8 = 3;

pub fn sku(sale: u8) -> String {
    format!("sku-{sale}")
}

/// Drives the engine; `now` moves 10 ms per op so reservations (TTL 100 ms) expire.
pub struct SimDriver {
    pub now: u64,
    pub orders: Vec<(OrderId, String)>,
}

/// The id of simulated user `n`: mostly ASCII, some multibyte.
pub fn user_id(n: u8) -> String {
    if n.is_multiple_of(3) {
        format!("ü-{n}")
    } else {
        format!("user-{n}")
    }
}

impl SimDriver {
    pub fn new(engine: &Engine, sink: &mut dyn EventSink) -> SimDriver {
        for s in 0..SALES {
            let spec = SaleSpec {
                sku: sku(s),
                stock: 10,
                per_user_limit: 3,
                starts_at_ms: None,
                ends_at_ms: None,
                reservation_ttl_ms: 100,
            };
            engine
                .create_sale(spec, 0, &mut *sink)
                .expect("create sale");
        }
        SimDriver {
            now: 1,
            orders: Vec::new(),
        }
    }

    /// Applies `op`; returns whether the engine logged something.
    pub fn step(&mut self, engine: &Engine, op: &SimOp, sink: &mut dyn EventSink) {
        self.now += 10;
        let now = self.now;
        match *op {
            SimOp::Purchase {
                sale,
                user,
                qty,
                request,
            } => {
                let user = user_id(user);
                let out = engine.purchase(
                    &sku(sale),
                    &user,
                    qty,
                    request.map(u64::from),
                    now,
                    &mut *sink,
                );
                if let PurchaseOutcome::Admitted(a) = out {
                    self.orders.push((a.order_id, user));
                }
            }
            SimOp::Pay(n) if !self.orders.is_empty() => {
                let (id, _) = &self.orders[n as usize % self.orders.len()];
                let id = *id;
                engine.pay(id, now, &mut *sink);
            }
            SimOp::Cancel(n) if !self.orders.is_empty() => {
                let (id, user) = &self.orders[n as usize % self.orders.len()];
                engine.cancel(*id, user, now, &mut *sink);
            }
            SimOp::Pay(_) | SimOp::Cancel(_) => {}
            SimOp::Expire => {
                engine.expire_due(now, &mut *sink);
            }
            SimOp::AddStock { sale, add } => {
                let _ = engine.add_stock(&sku(sale), add, now, &mut *sink);
            }
            SimOp::Pause(s) => {
                let _ = engine.pause(&sku(s), now, &mut *sink);
            }
            SimOp::Resume(s) => {
                let _ = engine.resume(&sku(s), now, &mut *sink);
            }
            SimOp::End(s) => {
                let _ = engine.end(&sku(s), now, &mut *sink);
            }
        }
    }
}

/// A seeded stream of ops (xorshift, no extra dependency on rand's API).
pub fn random_ops(seed: u64, n: usize) -> Vec<SimOp> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let r = next();
            let a = (r >> 8) as u8;
            match r % 20 {
                0..=9 => SimOp::Purchase {
                    sale: a % SALES,
                    user: (r >> 16) as u8 % 8,
                    qty: (r >> 24) as u32 % 3 + 1,
                    request: ((r >> 32) % 2 == 0).then_some((r >> 40) as u8 % 16),
                },
                10..=12 => SimOp::Pay((r >> 8) as u16),
                13..=15 => SimOp::Cancel((r >> 8) as u16),
                16 => SimOp::Expire,
                17 => SimOp::AddStock {
                    sale: a % SALES,
                    add: (r >> 16) % 5 + 1,
                },
                18 => SimOp::Pause(a % SALES),
                _ => {
                    if (r >> 20) % 8 == 0 {
                        SimOp::End(a % SALES)
                    } else {
                        SimOp::Resume(a % SALES)
                    }
                }
            }
        })
        .collect()
}

/// An engine rebuilt from the first `n` logged events.
pub fn replayed(log: &[(u64, Event)], n: usize) -> Engine {
    let engine = Engine::new(ENGINE);
    for (_, e) in &log[..n] {
        engine.apply(e).expect("apply");
    }
    engine
}

/// Runs `ops` single-threaded through the log; returns the logged events.
pub fn run_ops(engine: &Engine, wal: &Wal, ops: &[SimOp]) -> Vec<(u64, Event)> {
    let log = Mutex::new(Vec::new());
    {
        let mut tee = Tee {
            wal,
            log: &log,
            last: None,
        };
        let mut driver = SimDriver::new(engine, &mut tee);
        for op in ops {
            driver.step(engine, op, &mut tee);
        }
    }
    log.into_inner()
}

pub fn fsync_modes() -> [FsyncMode; 3] {
    [FsyncMode::Always, FsyncMode::Interval, FsyncMode::Never]
}
