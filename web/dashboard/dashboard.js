// The flashsale live dashboard. Reads GET /v1/admin/stream (Server-Sent
// Events over fetch, so the admin token can go in an Authorization header:
// EventSource cannot send one, and the token must never be in a URL), draws
// each snapshot, and drives the admin API for the operator controls.
//
// The token comes from the login form or from the URL fragment
// (#token=...), which browsers never send to the server; it is kept in
// sessionStorage (this tab only) and the fragment is wiped from the address
// bar at once. Every figure a test reads carries data-metric (and, for
// numbers, data-value with the raw value); each sale's card carries
// data-sku.
(function () {
  'use strict';

  var TOKEN_KEY = 'flashsale.admin_token';
  var STREAM_PATH = '/v1/admin/stream';
  /** Most chart points kept (10 minutes at the default period). */
  var POINTS_MAX = 600;
  /** Reconnect when no snapshot came for this many periods. */
  var STALE_PERIODS = 3;

  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var $$ = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };
  var rootStyle = getComputedStyle(document.documentElement);
  var palette = function (name) { return rootStyle.getPropertyValue('--fs-' + name).trim(); };

  // ---- formatting ------------------------------------------------------
  var DASH = '\u2013';
  function fmtInt(n) { return n == null ? DASH : Math.round(n).toLocaleString('en-US'); }
  function fmtRate(x) {
    if (x == null) return DASH;
    return x >= 100 ? fmtInt(x) : x.toFixed(1);
  }
  function fmtMs(x) {
    if (x == null) return DASH;
    if (x < 1) return (x * 1000).toFixed(0) + ' \u00b5s';
    if (x < 10) return x.toFixed(2) + ' ms';
    if (x < 1000) return x.toFixed(1) + ' ms';
    return (x / 1000).toFixed(2) + ' s';
  }
  function fmtDuration(s) {
    if (s == null) return DASH;
    if (s < 60) return s.toFixed(1) + ' s';
    var m = Math.floor(s / 60);
    if (m < 60) return m + ' min ' + String(Math.floor(s % 60)).padStart(2, '0') + ' s';
    var h = Math.floor(m / 60);
    if (h < 48) return h + ' h ' + String(m % 60).padStart(2, '0') + ' min';
    return Math.floor(h / 24) + ' d ' + (h % 24) + ' h';
  }
  function fmtBytes(b) {
    if (b == null) return DASH;
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var i = 0;
    while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
    return (i === 0 ? b : b.toFixed(b < 10 ? 2 : 1)) + ' ' + units[i];
  }
  function fmtTime(ms) {
    var d = new Date(ms);
    return d.toLocaleTimeString('en-GB', { hour12: false });
  }

  /** Sets the text of every [data-metric=name] under root; a number also
   *  goes raw into data-value. */
  function setMetric(root, name, text, raw) {
    $$('[data-metric="' + name + '"]', root).forEach(function (el) {
      if (el.textContent !== text) el.textContent = text;
      if (raw !== undefined) el.dataset.value = raw == null ? '' : String(raw);
    });
  }

  // ---- token and sign-in -----------------------------------------------
  function takeFragmentToken() {
    var m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (!m) return;
    try {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    } catch (e) { /* storage refused: the form remains */ }
    // Out of the address bar, the history and any screenshot.
    history.replaceState(null, '', location.pathname + location.search);
  }
  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }
  function authHeaders(extra) {
    var h = { Authorization: 'Bearer ' + token() };
    for (var k in extra || {}) h[k] = extra[k];
    return h;
  }
  function showLogin(message) {
    stopStream();
    $('#main').hidden = true;
    $('#new-sale').hidden = true;
    $('#sign-out').hidden = true;
    $('#login').hidden = false;
    $('#login-error').textContent = message || '';
    setLink('idle', 'not connected');
    $('#token-input').focus();
  }
  function showMain() {
    $('#login').hidden = true;
    $('#main').hidden = false;
    $('#new-sale').hidden = false;
    $('#sign-out').hidden = false;
  }

  // ---- the stream ------------------------------------------------------
  var controller = null;
  var retryTimer = null;
  var retryDelay = 1;
  var lastSeen = 0;
  var periodMs = 1000;

  function setLink(state, text) {
    var el = $('#link');
    el.dataset.state = state;
    el.textContent = text;
  }
  function stopStream() {
    if (controller) controller.abort();
    controller = null;
    if (retryTimer) clearTimeout(retryTimer);
    retryTimer = null;
  }
  function retry(why, afterSeconds) {
    stopStream();
    var wait = afterSeconds || retryDelay;
    retryDelay = Math.min(retryDelay * 2, 10);
    setLink('retrying', why + ' \u2013 retrying in ' + wait + ' s');
    retryTimer = setTimeout(connect, wait * 1000);
  }

  function connect() {
    stopStream();
    if (!token()) { showLogin(''); return; }
    showMain();
    setLink('connecting', 'connecting\u2026');
    var mine = new AbortController();
    controller = mine;
    fetch(STREAM_PATH, {
      headers: authHeaders({ Accept: 'text/event-stream' }),
      cache: 'no-store',
      signal: mine.signal
    }).then(function (resp) {
      if (resp.status === 401) {
        try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* nothing kept */ }
        showLogin('The server refused this token.');
        return;
      }
      if (!resp.ok) {
        var after = parseInt(resp.headers.get('Retry-After'), 10) || 0;
        return resp.json().catch(function () { return {}; }).then(function (body) {
          var why = body.status === 'too_many_subscribers'
            ? 'too many dashboards open'
            : (body.error || ('HTTP ' + resp.status));
          retry(why, after);
        });
      }
      retryDelay = 1;
      lastSeen = Date.now();
      setLink('live', 'live');
      return read(resp.body.getReader(), mine);
    }).catch(function () {
      if (!mine.signal.aborted) retry('server unreachable');
    });
  }

  /** Splits the byte stream into events (blank-line separated). */
  function read(reader, mine) {
    var decoder = new TextDecoder();
    var buffered = '';
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) {
          if (!mine.signal.aborted) retry('the stream ended');
          return;
        }
        buffered += decoder.decode(chunk.value, { stream: true });
        var end;
        while ((end = buffered.indexOf('\n\n')) >= 0) {
          var block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          onEvent(block);
        }
        return pump();
      });
    }
    return pump();
  }

  function onEvent(block) {
    var name = 'message';
    var data = '';
    block.split('\n').forEach(function (line) {
      if (line === '' || line.charAt(0) === ':') return;
      var colon = line.indexOf(':');
      var field = colon < 0 ? line : line.slice(0, colon);
      var value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') name = value;
      else if (field === 'data') data += (data ? '\n' : '') + value;
    });
    if (!data) return;
    var json = JSON.parse(data);
    lastSeen = Date.now();
    if (name === 'history') {
      charts.load(json);
    } else if (name === 'snapshot') {
      if ($('#link').dataset.state !== 'live') setLink('live', 'live');
      charts.push(json.point);
      render(json);
    }
  }

  setInterval(function () {
    if (!controller || !lastSeen) return;
    if (Date.now() - lastSeen > STALE_PERIODS * periodMs + 1000) {
      lastSeen = 0;
      retry('no snapshot for ' + STALE_PERIODS + ' periods', 1);
    }
  }, 1000);

  // ---- rendering -------------------------------------------------------
  var OUTCOMES = [
    ['admitted', 'green'], ['sold_out', 'red'], ['limit_exceeded', 'orange'],
    ['closed', 'grey'], ['rate_limited', 'purple'], ['unavailable', 'brown'],
    ['errors', 'pink']
  ];

  function render(s) {
    periodMs = s.config.snapshot_interval_ms || periodMs;
    var main = $('#main');
    main.dataset.snapshotAt = String(s.at_ms);
    setMetric(document, 'updated', fmtTime(s.at_ms), s.at_ms);
    setMetric(document, 'uptime', fmtDuration(s.server.uptime_s), s.server.uptime_s);

    var per = s.purchases.per_s;
    var refused = per ? OUTCOMES.slice(1).reduce(function (sum, o) { return sum + per[o[0]]; }, 0) : null;
    setMetric(document, 'admitted_per_s', fmtRate(per && per.admitted), per && per.admitted);
    setMetric(document, 'refused_per_s', fmtRate(refused), refused);
    setMetric(document, 'p99_ms', fmtMs(s.latency.admitted.p99_ms), s.latency.admitted.p99_ms);
    var log = s.log;
    setMetric(document, 'fsync_p99_ms', log ? fmtMs(log.fsync_p99_ms) : DASH, log && log.fsync_p99_ms);
    setMetric(document, 'queue_depth', log ? fmtInt(log.queue_depth) : DASH, log && log.queue_depth);
    setMetric(document, 'connections_open', fmtInt(s.server.connections_open), s.server.connections_open);
    setMetric(document, 'rss', fmtBytes(s.server.rss_bytes), s.server.rss_bytes);

    renderSales(s);
    renderLog(log);
    renderExport(s.export);
    renderStream(s.stream);
    renderProcess(s.server);
    renderConfig(s.config);
  }

  function renderSales(s) {
    var list = $('#sales');
    var seen = {};
    s.sales.forEach(function (sale, i) {
      var card = list.querySelector('[data-sku="' + CSS.escape(sale.sku) + '"]');
      if (!card) {
        card = $('#sale-card').content.firstElementChild.cloneNode(true);
        card.dataset.sku = sale.sku;
      }
      if (list.children[i] !== card) list.insertBefore(card, list.children[i] || null);
      seen[sale.sku] = true;
      fillSale(card, sale);
    });
    $$('.sale', list).forEach(function (card) {
      if (!seen[card.dataset.sku]) card.remove();
    });
    $('#no-sales').hidden = s.sales.length > 0;
    var shown = s.sales.length < s.sales_total
      ? '(newest ' + s.sales.length + ' of ' + fmtInt(s.sales_total) + ')'
      : '';
    setMetric(document, 'sales_count', shown);
  }

  function fillSale(card, sale) {
    card.dataset.state = sale.state;
    setMetric(card, 'sku', sale.sku);
    var pill = $('[data-metric="state"]', card);
    pill.dataset.state = sale.state;
    setMetric(card, 'state', sale.state.replace('_', ' '), sale.state);
    ['remaining', 'reserved', 'paid', 'stock'].forEach(function (k) {
      setMetric(card, k, fmtInt(sale[k]), sale[k]);
    });
    var stock = sale.stock || 1;
    ['paid', 'reserved', 'remaining'].forEach(function (k) {
      $('[data-bar="' + k + '"]', card).style.width = (100 * sale[k] / stock) + '%';
    });
    setMetric(card, 'admits_per_s', fmtRate(sale.admits_per_s), sale.admits_per_s);
    setMetric(card, 'open_for', fmtDuration(sale.open_for_s), sale.open_for_s);
    if (sale.time_to_sold_out_s != null) {
      setMetric(card, 'sold_out_label', 'sold out after');
      setMetric(card, 'sold_out', fmtDuration(sale.time_to_sold_out_s), sale.time_to_sold_out_s);
    } else {
      setMetric(card, 'sold_out_label', 'sold out in');
      var eta = sale.eta_sold_out_s;
      setMetric(card, 'sold_out', eta == null ? DASH : '~' + fmtDuration(eta), eta);
    }
    var ended = sale.state === 'ended';
    $('[data-action="topup"]', card).disabled = ended;
    $('[data-action="pause"]', card).disabled = ended || sale.state === 'paused';
    $('[data-action="resume"]', card).disabled = sale.state !== 'paused';
    $('[data-action="end"]', card).disabled = ended;
  }

  function renderLog(log) {
    if (!log) {
      setMetric(document, 'log_state', 'recovering');
      return;
    }
    setMetric(document, 'log_fsync', log.fsync);
    setMetric(document, 'log_state', log.failed ? 'FAILED: refuses writes' : 'ok', log.failed ? 'failed' : 'ok');
    setMetric(document, 'fsyncs_per_s', fmtRate(log.fsyncs_per_s), log.fsyncs_per_s);
    setMetric(document, 'fsync_mean_ms', fmtMs(log.fsync_mean_ms), log.fsync_mean_ms);
    setMetric(document, 'batch_records_mean', log.batch_records_mean == null ? DASH : log.batch_records_mean.toFixed(1), log.batch_records_mean);
    setMetric(document, 'records_per_s', fmtRate(log.records_per_s), log.records_per_s);
    setMetric(document, 'queue', fmtInt(log.queue_depth) + ' / ' + fmtInt(log.queue_capacity), log.queue_depth);
    setMetric(document, 'retained', fmtBytes(log.retained_bytes), log.retained_bytes);
  }

  function renderExport(e) {
    var state = !e.enabled ? 'off' : (e.up ? 'up' : 'DOWN') + (e.over_max_lag ? ', refusing purchases' : '');
    setMetric(document, 'export_state', state);
    setMetric(document, 'export_lag_records', e.enabled ? fmtInt(e.lag_records) : DASH, e.lag_records);
    setMetric(document, 'export_lag_seconds', e.enabled ? fmtDuration(e.lag_seconds) : DASH, e.lag_seconds);
    setMetric(document, 'export_refused', fmtInt(e.refused_purchases_total), e.refused_purchases_total);
  }

  function renderStream(st) {
    setMetric(document, 'subscribers', st.subscribers + ' / ' + st.subscribers_max, st.subscribers);
    setMetric(document, 'dropped', fmtInt(st.dropped_total), st.dropped_total);
    setMetric(document, 'refused', fmtInt(st.refused_total), st.refused_total);
  }

  function renderProcess(sv) {
    setMetric(document, 'version', sv.version);
    setMetric(document, 'server_state', sv.recovering ? 'recovering' : (sv.ready ? 'ready' : 'not ready'));
    setMetric(document, 'uptime_long', fmtDuration(sv.uptime_s), sv.uptime_s);
    setMetric(document, 'connections', fmtInt(sv.connections_open), sv.connections_open);
    setMetric(document, 'connections_total', fmtInt(sv.connections_total), sv.connections_total);
    setMetric(document, 'rss_long', fmtBytes(sv.rss_bytes), sv.rss_bytes);
  }

  var configShown = '';
  function renderConfig(c) {
    var key = JSON.stringify(c);
    if (key === configShown) return;
    configShown = key;
    var rows = [
      ['listen', c.listen],
      ['I/O threads', c.io_threads === 0 ? 'one per core' : c.io_threads],
      ['max connections', fmtInt(c.max_connections)],
      ['engine shards', c.engine_shards],
      ['orders per sale, max', fmtInt(c.max_orders_per_sale)],
      ['wal.fsync', c.fsync + (c.fsync === 'interval' ? ' (' + c.fsync_interval_ms + ' ms)' : '')],
      ['group commit delay', c.group_commit_delay_us + ' \u00b5s'],
      ['log queue', fmtInt(c.queue_capacity)],
      ['global rate limit', c.global_rps ? fmtInt(c.global_rps) + ' /s' : 'off'],
      ['per-client rate limit', c.per_client_rps ? fmtInt(c.per_client_rps) + ' /s' : 'off'],
      ['export', c.export_enabled ? 'on' : 'off'],
      ['snapshot period', c.snapshot_interval_ms + ' ms'],
      ['dashboards at most', c.stream_subscribers_max]
    ];
    var body = $('#config');
    body.textContent = '';
    rows.forEach(function (r) {
      var tr = document.createElement('tr');
      var th = document.createElement('th');
      th.className = 'l';
      th.textContent = r[0];
      var td = document.createElement('td');
      td.textContent = String(r[1]);
      tr.appendChild(th);
      tr.appendChild(td);
      body.appendChild(tr);
    });
  }

  // ---- charts ------------------------------------------------------------
  var charts = (function () {
    var points = [];
    var plots = {};

    function width(el) { return Math.max(280, el.clientWidth - 4); }

    function makeRates(el) {
      // Stacked: each series is drawn as the running total up to it, from
      // the top one down, so each fill covers the one above only where it
      // is its own. The legend shows each outcome's own rate.
      var order = OUTCOMES.slice().reverse();
      var series = [{}].concat(order.map(function (o) {
        var c = palette(o[1]);
        return {
          label: o[0].replace('_', ' '),
          stroke: c,
          fill: c,
          width: 1,
          value: function (u, v, si, idx) {
            var raw = rawRates[si - 1] && rawRates[si - 1][idx];
            return raw == null ? DASH : fmtRate(raw);
          }
        };
      }));
      return new uPlot({
        width: width(el), height: 240, series: series,
        scales: { x: { time: true } },
        axes: [{}, { label: 'answers / s', size: 70 }],
        cursor: { points: { show: false } }
      }, [[]].concat(order.map(function () { return []; })), el);
    }

    function makeLatency(el) {
      return new uPlot({
        width: width(el), height: 220,
        series: [
          {},
          { label: 'p50', stroke: palette('blue'), width: 2, value: function (u, v) { return fmtMs(v); } },
          { label: 'p99', stroke: palette('orange'), width: 2, value: function (u, v) { return fmtMs(v); } },
          { label: 'p99.9', stroke: palette('red'), width: 2, value: function (u, v) { return fmtMs(v); } },
          { label: 'refused p99', stroke: palette('grey'), dash: [4, 4], width: 1, value: function (u, v) { return fmtMs(v); } }
        ],
        scales: { x: { time: true }, y: { distr: 3 } },
        axes: [{}, { label: 'ms', size: 60 }]
      }, [[], [], [], [], []], el);
    }

    function makeLog(el) {
      return new uPlot({
        width: width(el), height: 220,
        series: [
          {},
          { label: 'fsync mean', scale: 'ms', stroke: palette('blue'), width: 2, value: function (u, v) { return fmtMs(v); } },
          { label: 'fsync p99', scale: 'ms', stroke: palette('orange'), width: 2, value: function (u, v) { return fmtMs(v); } },
          { label: 'records / batch', scale: 'n', stroke: palette('green'), width: 1 },
          { label: 'queue depth', scale: 'n', stroke: palette('purple'), width: 1 }
        ],
        scales: { x: { time: true }, ms: {}, n: {} },
        axes: [{}, { scale: 'ms', label: 'ms', size: 60 }, { scale: 'n', side: 1, grid: { show: false }, size: 60 }]
      }, [[], [], [], [], []], el);
    }

    var rawRates = [];

    function redraw() {
      if ($('#main').hidden) return;
      if (!plots.rates) {
        plots.rates = makeRates($('#chart-rates'));
        plots.latency = makeLatency($('#chart-latency'));
        plots.log = makeLog($('#chart-log'));
      }
      var xs = points.map(function (p) { return p.t_ms / 1000; });
      var order = OUTCOMES.slice().reverse();
      rawRates = order.map(function (o) {
        return points.map(function (p) { return p.rates ? p.rates[o[0]] : null; });
      });
      // Running totals from the bottom outcome (admitted) up.
      var stacked = OUTCOMES.map(function () { return []; });
      points.forEach(function (p, i) {
        var sum = 0;
        OUTCOMES.forEach(function (o, k) {
          if (!p.rates) { stacked[k][i] = null; return; }
          sum += p.rates[o[0]];
          stacked[k][i] = sum;
        });
      });
      plots.rates.setData([xs].concat(stacked.slice().reverse()));
      var pos = function (v) { return v == null || v <= 0 ? null : v; };
      plots.latency.setData([xs,
        points.map(function (p) { return pos(p.p50_ms); }),
        points.map(function (p) { return pos(p.p99_ms); }),
        points.map(function (p) { return pos(p.p999_ms); }),
        points.map(function (p) { return pos(p.refused_p99_ms); })]);
      plots.log.setData([xs,
        points.map(function (p) { return p.fsync_mean_ms; }),
        points.map(function (p) { return p.fsync_p99_ms; }),
        points.map(function (p) { return p.batch_records_mean; }),
        points.map(function (p) { return p.queue_depth; })]);
    }

    window.addEventListener('resize', function () {
      Object.keys(plots).forEach(function (k) {
        var u = plots[k];
        u.setSize({ width: width(u.root.parentNode), height: u.height });
      });
    });

    return {
      load: function (history) {
        points = history.slice(-POINTS_MAX);
        redraw();
      },
      push: function (point) {
        // The history ends with the latest snapshot's point, which comes
        // again with that snapshot.
        if (points.length && points[points.length - 1].t_ms >= point.t_ms) return;
        points.push(point);
        if (points.length > POINTS_MAX) points.splice(0, points.length - POINTS_MAX);
        redraw();
      }
    };
  })();

  // ---- operator controls ---------------------------------------------------
  function toast(text, failed) {
    var div = document.createElement('div');
    div.textContent = text;
    if (failed) div.className = 'fail';
    $('#toast').appendChild(div);
    setTimeout(function () { div.remove(); }, failed ? 8000 : 4000);
  }

  /** Shows the confirmation dialog; resolves with the fields' values, or
   *  null when cancelled. `check` may refuse the values with a message. */
  function confirmDialog(opts) {
    var dialog = $('#confirm');
    $('#confirm-title').textContent = opts.title;
    $('#confirm-text').textContent = opts.text || '';
    $('#confirm-error').textContent = '';
    var fields = $('#confirm-fields');
    fields.textContent = '';
    (opts.fields || []).forEach(function (f) {
      var label = document.createElement('label');
      var span = document.createElement('span');
      span.textContent = f.label;
      var input = document.createElement('input');
      input.name = f.name;
      input.type = f.type || 'text';
      if (f.value != null) input.value = f.value;
      if (f.min != null) input.min = f.min;
      if (f.pattern) input.pattern = f.pattern;
      input.required = true;
      label.appendChild(span);
      label.appendChild(input);
      fields.appendChild(label);
    });
    var yes = $('[data-confirm="yes"]', dialog);
    yes.textContent = opts.confirm || 'Confirm';
    yes.className = opts.danger ? 'primary danger' : 'primary';
    return new Promise(function (resolve) {
      function done(values) {
        yes.onclick = null;
        $('[data-confirm="no"]', dialog).onclick = null;
        dialog.oncancel = null;
        dialog.close();
        resolve(values);
      }
      yes.onclick = function () {
        var values = {};
        var bad = null;
        $$('input', fields).forEach(function (input) {
          if (!bad && !input.checkValidity()) bad = input.name + ': ' + input.validationMessage;
          values[input.name] = input.value;
        });
        if (!bad && opts.check) bad = opts.check(values);
        if (bad) { $('#confirm-error').textContent = bad; return; }
        done(values);
      };
      $('[data-confirm="no"]', dialog).onclick = function () { done(null); };
      dialog.oncancel = function (e) { e.preventDefault(); done(null); };
      dialog.showModal();
      var first = $('input', fields);
      (first || yes).focus();
    });
  }

  function adminPost(path, body) {
    var init = { method: 'POST', headers: authHeaders(), cache: 'no-store' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (json) {
        if (resp.status === 401) {
          showLogin('The server refused this token.');
        }
        if (!resp.ok) throw new Error(json.error || json.status || ('HTTP ' + resp.status));
        return json;
      });
    });
  }

  function salePath(sku, op) {
    return '/v1/admin/sales/' + encodeURIComponent(sku) + '/' + op;
  }

  var ACTIONS = {
    topup: function (sku) {
      return confirmDialog({
        title: 'Top up ' + sku,
        text: 'Add units to this sale\u2019s stock.',
        fields: [{ name: 'add', label: 'units to add', type: 'number', min: 1, value: 100 }],
        confirm: 'Add stock',
        check: function (v) { return /^[1-9][0-9]*$/.test(v.add) ? null : 'add: a whole number of at least 1'; }
      }).then(function (v) {
        if (!v) return null;
        return adminPost(salePath(sku, 'stock'), { add: Number(v.add) }).then(function (sale) {
          return 'Added ' + fmtInt(Number(v.add)) + ' to ' + sku + ': ' + fmtInt(sale.remaining) + ' remaining';
        });
      });
    },
    pause: function (sku) {
      return confirmDialog({ title: 'Pause ' + sku + '?', text: 'Purchases are refused (409 paused) until it is resumed.', confirm: 'Pause' })
        .then(function (v) { return v && adminPost(salePath(sku, 'pause')).then(function () { return sku + ' paused'; }); });
    },
    resume: function (sku) {
      return confirmDialog({ title: 'Resume ' + sku + '?', text: 'Purchases are admitted again.', confirm: 'Resume' })
        .then(function (v) { return v && adminPost(salePath(sku, 'resume')).then(function () { return sku + ' resumed'; }); });
    },
    end: function (sku) {
      return confirmDialog({ title: 'End ' + sku + '?', text: 'An ended sale takes no purchase ever again. This cannot be undone.', confirm: 'End the sale', danger: true })
        .then(function (v) { return v && adminPost(salePath(sku, 'end')).then(function () { return sku + ' ended'; }); });
    }
  };

  function run(action) {
    action.then(function (message) {
      if (message) toast(message);
    }, function (err) {
      toast(err.message, true);
    });
  }

  $('#sales').addEventListener('click', function (e) {
    var button = e.target.closest('button[data-action]');
    if (!button || button.disabled) return;
    var card = button.closest('[data-sku]');
    var act = ACTIONS[button.dataset.action];
    if (card && act) run(act(card.dataset.sku));
  });

  $('#new-sale').addEventListener('click', function () {
    run(confirmDialog({
      title: 'New sale',
      text: 'Starts at once and runs until ended.',
      fields: [
        { name: 'sku', label: 'sku', pattern: '[A-Za-z0-9_.\\-]{1,64}' },
        { name: 'stock', label: 'stock', type: 'number', min: 0, value: 1000 },
        { name: 'per_user_limit', label: 'per user, max', type: 'number', min: 1, value: 1 }
      ],
      confirm: 'Create',
      check: function (v) {
        if (!/^[0-9]+$/.test(v.stock)) return 'stock: a whole number';
        if (!/^[1-9][0-9]*$/.test(v.per_user_limit)) return 'per user: a whole number of at least 1';
        return null;
      }
    }).then(function (v) {
      if (!v) return null;
      return adminPost('/v1/admin/sales', {
        sku: v.sku, stock: Number(v.stock), per_user_limit: Number(v.per_user_limit)
      }).then(function (sale) { return 'Created ' + sale.sku + ' with ' + fmtInt(sale.stock) + ' units'; });
    }));
  });

  $('#login-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var value = $('#token-input').value.trim();
    if (!value) return;
    try {
      sessionStorage.setItem(TOKEN_KEY, value);
    } catch (err) {
      $('#login-error').textContent = 'This browser refuses session storage.';
      return;
    }
    $('#token-input').value = '';
    connect();
  });

  $('#sign-out').addEventListener('click', function () {
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* nothing kept */ }
    showLogin('');
  });

  window.addEventListener('hashchange', function () {
    if (/token=/.test(location.hash)) { takeFragmentToken(); connect(); }
  });

  takeFragmentToken();
  connect();
})();
