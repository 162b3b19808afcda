/*
 * Live node dashboard: plain browser script, no build step.
 *
 * The page shows one page of the fleet (a search, a status filter, a page of at most 100 rows) and streams
 * just that: GET /api/stream?q=&status=&offset=&limit= (server-sent events). A new query opens a new stream.
 *   snapshot  {serverTime, query, total, matched, fleet, pace, ids, nodes, events}   on every (re)connect
 *   page      {query, total, matched, fleet, pace, ids, nodes}   the page's rows or counts changed; nodes: rows not sent before
 *   node      nodeView (+ history when it grew)           a row's heartbeat, stats or status changed
 *   remove    {nodeId}                                     a row's node was deleted
 *   event     node.events message (node.registered/online/offline, cluster.degraded)
 * The view is kept in the address's #fragment, so a reload or a shared link shows the same page.
 * All text coming from agents is written with textContent, never as HTML.
 */
(function () {
  'use strict';

  var MAX_EVENTS = 100;
  var RETRY_AFTER_CLOSE_MS = 5000;
  var SEARCH_DEBOUNCE_MS = 250;
  var PAGE_SIZES = [25, 50, 100];
  var SVG_NS = 'http://www.w3.org/2000/svg';

  var view = readView();
  var nodes = new Map(); // the rows of the page shown
  var rows = new Map();
  var pageIds = [];
  var total = 0;
  var fleet = null;
  var events = [];
  var pendingEvents = [];
  var eventsTimer = null;
  var clockOffset = 0; // server time minus browser time, so "N s ago" is right on a skewed laptop
  var source = null;
  var retryTimer = null;
  var searchTimer = null;
  var firstRowsMarked = false;

  var tbody = document.getElementById('node-rows');
  var template = document.getElementById('node-row-template');
  var tableWrap = document.querySelector('.table-wrap');
  var nodesEmpty = document.getElementById('nodes-empty');
  var feed = document.getElementById('event-feed');
  var eventsEmpty = document.getElementById('events-empty');
  var connection = document.querySelector('[data-testid="connection-status"]');
  var search = document.getElementById('node-search');
  var prev = document.querySelector('[data-testid="page-prev"]');
  var next = document.querySelector('[data-testid="page-next"]');
  var pageSize = document.querySelector('[data-testid="page-size"]');
  var pagerRange = document.querySelector('[data-testid="pager-range"]');

  // Operator token: EventSource cannot send headers, so ?token= is passed on in the URL.
  var token = new URLSearchParams(window.location.search).get('token');
  function streamUrl() {
    var url = new URL('/api/stream', window.location.href);
    if (token) url.searchParams.set('token', token);
    if (view.q) url.searchParams.set('q', view.q);
    if (view.status !== 'ALL') url.searchParams.set('status', view.status);
    if (view.offset) url.searchParams.set('offset', String(view.offset));
    url.searchParams.set('limit', String(view.limit));
    return url.pathname + url.search;
  }

  // ---------- the view (search, filter, page), kept in the #fragment ----------
  function readView() {
    var p = new URLSearchParams(window.location.hash.replace(/^#/, ''));
    var status = String(p.get('status') || 'ALL').toUpperCase();
    var limit = Number(p.get('size'));
    var page = Math.max(1, Math.floor(Number(p.get('page')) || 1));
    if (PAGE_SIZES.indexOf(limit) < 0) limit = 50;
    return {
      q: (p.get('q') || '').slice(0, 128),
      status: status === 'ONLINE' || status === 'OFFLINE' ? status : 'ALL',
      offset: (page - 1) * limit,
      limit: limit,
    };
  }

  function writeView() {
    var p = new URLSearchParams();
    if (view.q) p.set('q', view.q);
    if (view.status !== 'ALL') p.set('status', view.status);
    if (view.offset) p.set('page', String(Math.floor(view.offset / view.limit) + 1));
    if (view.limit !== 50) p.set('size', String(view.limit));
    var hash = p.toString();
    var url = window.location.pathname + window.location.search + (hash ? '#' + hash : '');
    if (url !== window.location.pathname + window.location.search + window.location.hash) history.replaceState(null, '', url);
  }

  function setView(change) {
    var before = JSON.stringify(view);
    Object.keys(change).forEach(function (k) {
      view[k] = change[k];
    });
    if (JSON.stringify(view) === before) return;
    writeView();
    renderControls();
    tableWrap.setAttribute('aria-busy', 'true');
    connect();
  }

  function serverNow() {
    return Date.now() + clockOffset;
  }

  // ---------- formatting ----------
  function formatAgo(iso) {
    if (!iso) return 'never';
    var s = Math.max(0, Math.floor((serverNow() - Date.parse(iso)) / 1000));
    if (s < 60) return s + ' s ago';
    var m = Math.floor(s / 60);
    if (m < 60) return m + ' min ' + (s % 60) + ' s ago';
    var h = Math.floor(m / 60);
    if (h < 24) return h + ' h ' + (m % 60) + ' min ago';
    return Math.floor(h / 24) + ' d ' + (h % 24) + ' h ago';
  }
  function formatTime(iso) {
    var d = new Date(iso);
    return isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }
  function formatDateTime(iso) {
    var d = new Date(iso);
    return isNaN(d.getTime()) ? '' : d.toLocaleString();
  }
  function pct(value) {
    return Math.round(value) + '%';
  }
  function el(tag, className, text) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function clamp(v) {
    return Math.min(100, Math.max(0, Number(v) || 0));
  }

  // ---------- node rows ----------
  function meter(value, label, title) {
    if (value === null || value === undefined) return el('span', 'none', '—');
    var wrap = el('div', 'meter');
    wrap.title = title;
    var track = el('div', 'meter-track');
    var fill = el('div', 'meter-fill' + (value >= 90 ? ' high' : value >= 70 ? ' warn' : ''));
    fill.style.setProperty('width', clamp(value) + '%');
    track.appendChild(fill);
    wrap.appendChild(track);
    wrap.appendChild(el('span', 'meter-value', label));
    return wrap;
  }

  function sparkline(history) {
    var since = serverNow() - 3600 * 1000;
    var points = (history || []).filter(function (p) {
      return Date.parse(p.t) >= since;
    });
    if (points.length < 2) return el('span', 'none small', points.length ? 'collecting…' : '—');
    var w = 120,
      h = 32,
      pad = 2;
    var t0 = Date.parse(points[0].t);
    var span = Math.max(1, Date.parse(points[points.length - 1].t) - t0);
    function line(key) {
      return points
        .map(function (p) {
          var x = ((Date.parse(p.t) - t0) / span) * w;
          var y = pad + (1 - clamp(p[key]) / 100) * (h - 2 * pad);
          return x.toFixed(1) + ',' + y.toFixed(1);
        })
        .join(' ');
    }
    var svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('class', 'sparkline');
    svg.setAttribute('viewBox', '0 0 ' + w + ' ' + h);
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('role', 'img');
    var last = points[points.length - 1];
    var minutes = Math.max(1, Math.round(span / 60000));
    var label = 'Last ' + minutes + ' min: CPU ' + pct(last.cpu) + ', memory ' + pct(last.mem) + ' now';
    svg.setAttribute('aria-label', label);
    var title = document.createElementNS(SVG_NS, 'title');
    title.textContent = label;
    svg.appendChild(title);
    var mid = document.createElementNS(SVG_NS, 'line');
    mid.setAttribute('class', 'grid');
    mid.setAttribute('x1', '0');
    mid.setAttribute('x2', String(w));
    mid.setAttribute('y1', String(h / 2));
    mid.setAttribute('y2', String(h / 2));
    mid.setAttribute('vector-effect', 'non-scaling-stroke');
    mid.setAttribute('stroke-dasharray', '2 3');
    svg.appendChild(mid);
    ['mem', 'cpu'].forEach(function (key) {
      var pl = document.createElementNS(SVG_NS, 'polyline');
      pl.setAttribute('class', key);
      pl.setAttribute('points', line(key));
      svg.appendChild(pl);
    });
    return svg;
  }

  function buildRow(node) {
    var tr = template.content.firstElementChild.cloneNode(true);
    var id = node.nodeId;
    tr.dataset.testid = 'node-row-' + id;
    tr.dataset.nodeId = id;
    tr.dataset.status = node.status;
    tr.classList.toggle('offline', node.status !== 'ONLINE');

    tr.querySelector('.node-id').textContent = id;
    tr.querySelector('.node-id').title = id;
    var host = [node.hostname, node.ipAddress].filter(Boolean).join(' · ');
    tr.querySelector('.node-host').textContent = host;
    tr.querySelector('.node-host').title = host;
    tr.querySelector('.cell-node').title = 'Registered ' + formatDateTime(node.registeredAt);

    var badge = tr.querySelector('.badge');
    badge.textContent = node.status;
    badge.classList.add(node.status === 'ONLINE' ? 'ONLINE' : 'OFFLINE');
    badge.dataset.testid = 'node-status-' + id;
    badge.title = 'Since ' + formatDateTime(node.statusChangedAt);

    var since = tr.querySelector('.since');
    since.dataset.testid = 'node-heartbeat-' + id;
    since.dataset.since = node.lastHeartbeat || '';
    since.textContent = formatAgo(node.lastHeartbeat);
    if (node.lastHeartbeat) since.title = formatDateTime(node.lastHeartbeat);
    var deadline = tr.querySelector('.deadline');
    deadline.dataset.testid = 'node-deadline-' + id;
    deadline.textContent = node.deadline && node.status === 'ONLINE' ? 'deadline ' + formatDateTime(node.deadline) : '';

    var s = node.stats;
    var reported = s ? 'reported ' + formatDateTime(s.reportedAt) : '';
    [
      ['cpu', 'cpuUsage', 'CPU'],
      ['mem', 'memoryUsage', 'Memory'],
      ['disk', 'diskUsage', 'Disk'],
    ].forEach(function (m) {
      var cell = tr.querySelector('.cell-' + m[0]);
      cell.dataset.testid = 'node-' + m[0] + '-' + id;
      var v = s ? s[m[1]] : null;
      cell.appendChild(meter(v, s ? pct(v) : '', m[2] + (s ? ' ' + pct(v) + ', ' + reported : ': no stats yet')));
    });

    var servers = tr.querySelector('.cell-servers');
    servers.dataset.testid = 'node-servers-' + id;
    var count = s ? s.containerCount : null;
    var max = node.maxServers;
    if (count === null) servers.appendChild(el('span', 'none', '— / ' + max));
    else servers.appendChild(meter(max > 0 ? (count / max) * 100 : count > 0 ? 100 : 0, count + ' / ' + max, count + ' containers running, capacity ' + max));

    tr.querySelector('.cell-trend').appendChild(sparkline(node.history));
    return tr;
  }

  function flashIfChanged(tr, previous, node) {
    if (previous && previous.status !== node.status) tr.classList.add('flash');
  }

  /** Puts the row of a node on the page in place of its old row (if any). */
  function renderNode(node, flash) {
    var previous = nodes.get(node.nodeId);
    if (previous) {
      if (previous.statusVersion > node.statusVersion) {
        // A live event already moved this node on; an older store read must not move it back.
        node.status = previous.status;
        node.statusVersion = previous.statusVersion;
        node.statusChangedAt = previous.statusChangedAt;
      }
      if (!node.history) node.history = previous.history;
    }
    nodes.set(node.nodeId, node);
    var tr = buildRow(node);
    if (flash) flashIfChanged(tr, previous, node);
    var old = rows.get(node.nodeId);
    rows.set(node.nodeId, tr);
    if (old) old.replaceWith(tr);
    return tr;
  }

  /** Shows the page `ids` (in that order), with the nodes just received and the rows already shown. */
  function renderPage(ids, received, replace) {
    if (replace) {
      nodes.clear();
      rows.clear();
    }
    (received || []).forEach(function (n) {
      renderNode(n, !replace);
    });
    var keep = new Set(ids);
    nodes.forEach(function (_n, id) {
      if (!keep.has(id)) {
        nodes.delete(id);
        rows.delete(id);
      }
    });
    pageIds = ids.filter(function (id) {
      return rows.has(id);
    });
    tbody.replaceChildren.apply(
      tbody,
      pageIds.map(function (id) {
        return rows.get(id);
      }),
    );
  }

  function removeNode(nodeId) {
    var tr = rows.get(nodeId);
    if (tr) tr.remove();
    nodes.delete(nodeId);
    rows.delete(nodeId);
    pageIds = pageIds.filter(function (id) {
      return id !== nodeId;
    });
    renderControls();
  }

  function applyCounts(data) {
    if (data.query) {
      view.offset = data.query.offset;
      writeView();
    }
    total = data.total || 0;
    fleet = data.fleet || fleet;
    if (data.matched) {
      document.querySelectorAll('.filter-button').forEach(function (b) {
        b.querySelector('.filter-count').textContent = formatCount(data.matched[b.dataset.filter] || 0);
      });
    }
    if (fleet) {
      setText('[data-testid="count-total"]', formatCount(fleet.total));
      setText('[data-testid="count-online"]', formatCount(fleet.online));
      setText('[data-testid="count-offline"]', formatCount(fleet.offline));
      setText('[data-testid="count-containers"]', formatCount(fleet.containers));
    }
    if (data.pace !== undefined) setText('[data-testid="heartbeat-pace"]', formatPace(data.pace));
  }

  /** "every 120 s, fleet of 12,000, 98 beats/s" (beats/s expected: the fleet divided by the interval). */
  function formatPace(pace) {
    if (!pace) return 'agents\u2019 own';
    if (!pace.intervalSeconds) return 'agents\u2019 own, fleet of ' + formatCount(pace.onlineNodes);
    return 'every ' + pace.intervalSeconds + ' s, fleet of ' + formatCount(pace.onlineNodes) + ', ' + formatCount(Math.round(pace.rate)) + ' beats/s';
  }

  /** Filter buttons, search box, pager and the empty-table message, from the view and the last counts. */
  function renderControls() {
    document.querySelectorAll('.filter-button').forEach(function (b) {
      b.setAttribute('aria-pressed', String(b.dataset.filter === view.status));
    });
    if (document.activeElement !== search && search.value !== view.q) search.value = view.q;
    pageSize.value = String(view.limit);
    var first = total ? view.offset + 1 : 0;
    var last = Math.min(total, view.offset + pageIds.length);
    var what = view.status === 'ALL' ? '' : ' ' + view.status.toLowerCase();
    pagerRange.textContent = total ? formatCount(first) + '–' + formatCount(last) + ' of ' + formatCount(total) + what : '';
    prev.disabled = view.offset <= 0;
    next.disabled = view.offset + view.limit >= total;
    nodesEmpty.hidden = pageIds.length > 0;
    if (!fleet) nodesEmpty.textContent = 'Waiting for data…';
    else if (fleet.total === 0) nodesEmpty.textContent = 'No nodes registered yet. Start an agent and it appears here.';
    else if (view.q) nodesEmpty.textContent = 'No' + what + ' nodes match “' + view.q + '”.';
    else nodesEmpty.textContent = 'No' + what + ' nodes.';
  }

  function formatCount(n) {
    return Number(n).toLocaleString('en-US');
  }

  function setText(selector, text) {
    var e = document.querySelector(selector);
    if (e) e.textContent = text;
  }

  /** Navigation start to the first rows on screen: the figure the fleet-size browser test prints. */
  function markFirstRows() {
    if (firstRowsMarked || !pageIds.length) return;
    firstRowsMarked = true;
    requestAnimationFrame(function () {
      if (window.performance && performance.mark) performance.mark('dashboard:first-rows');
    });
  }

  // ---------- events ----------
  var REASONS = {
    registered: 'registered for the first time',
    heartbeat: 'heartbeat received again',
    timeout: 'no heartbeat within the timeout',
    shutdown: 'agent announced shutdown',
  };

  function eventKind(e) {
    if (e.type === 'cluster.degraded') return 'degraded';
    return String(e.type).replace(/^node\./, '');
  }

  function eventItem(e, fresh) {
    var li = el('li', 'event-item' + (fresh ? ' fresh' : ''));
    li.dataset.testid = 'event-item';
    li.dataset.type = e.type;
    li.dataset.eventId = e.eventId;
    var kind = eventKind(e);
    li.appendChild(el('span', 'badge event-type ' + kind, kind));
    li.appendChild(el('time', 'event-time', formatTime(e.occurredAt)));
    if (e.type === 'cluster.degraded') {
      li.dataset.nodeId = '';
      li.appendChild(el('span', 'event-title', 'Cluster degraded'));
      li.appendChild(el('span', 'event-meta', e.silentNodes + ' of ' + e.onlineNodes + ' ONLINE nodes went silent at once; held ONLINE until ' + formatTime(e.heldUntil)));
    } else {
      li.dataset.nodeId = e.nodeId;
      var title = el('span', 'event-title', e.nodeId);
      title.title = e.nodeId;
      li.appendChild(title);
      li.appendChild(el('span', 'event-meta', REASONS[e.reason] || String(e.reason)));
    }
    li.title = formatDateTime(e.occurredAt);
    return li;
  }

  function addEvents(list, fresh) {
    var added = false;
    var known = new Set(
      events.map(function (x) {
        return x.eventId;
      }),
    );
    list.forEach(function (e) {
      if (!e || !e.eventId || known.has(e.eventId)) return;
      known.add(e.eventId);
      events.push(e);
      added = true;
    });
    if (!added) return;
    events.sort(function (a, b) {
      return Date.parse(b.occurredAt) - Date.parse(a.occurredAt);
    });
    events.length = Math.min(events.length, MAX_EVENTS);
    var freshIds = new Set(
      fresh
        ? list.map(function (e) {
            return e.eventId;
          })
        : [],
    );
    feed.replaceChildren.apply(
      feed,
      events.map(function (e) {
        return eventItem(e, freshIds.has(e.eventId));
      }),
    );
    eventsEmpty.hidden = events.length > 0;
  }

  /** Live events are drawn together every 100 ms: a burst of status changes redraws the feed once. */
  function queueEvent(e) {
    pendingEvents.push(e);
    if (pendingEvents.length > MAX_EVENTS) pendingEvents.splice(0, pendingEvents.length - MAX_EVENTS);
    if (eventsTimer) return;
    eventsTimer = setTimeout(function () {
      eventsTimer = null;
      addEvents(pendingEvents.splice(0), true);
    }, 100);
  }

  // A status event shows at once on its row (if the page shows the node); the next refresh brings the full node.
  function applyEventToNode(e) {
    if (e.type === 'cluster.degraded') return;
    var node = nodes.get(e.nodeId);
    if (!node || !(e.statusVersion > node.statusVersion)) return;
    var next = Object.assign({}, node, { status: e.status, statusVersion: e.statusVersion, statusChangedAt: e.occurredAt });
    if (e.lastHeartbeat) next.lastHeartbeat = e.lastHeartbeat;
    renderNode(next, true);
  }

  // ---------- stream ----------
  function setConnection(state, label) {
    connection.dataset.state = state;
    connection.querySelector('.connection-label').textContent = label;
  }

  function parse(message) {
    try {
      return JSON.parse(message.data);
    } catch (err) {
      return null;
    }
  }

  function connect() {
    if (retryTimer) clearTimeout(retryTimer);
    retryTimer = null;
    var reconnecting = source !== null;
    if (source) source.close();
    if (!reconnecting) setConnection('connecting', 'Connecting…');
    var es = new EventSource(streamUrl());
    source = es;

    es.addEventListener('snapshot', function (m) {
      if (es !== source) return;
      var data = parse(m);
      if (!data) return;
      clockOffset = Date.parse(data.serverTime) - Date.now() || 0;
      applyCounts(data);
      renderPage(data.ids || [], data.nodes || [], true);
      renderControls();
      tableWrap.removeAttribute('aria-busy');
      addEvents(data.events || [], false);
      setConnection('live', 'Live');
      markFirstRows();
    });
    es.addEventListener('page', function (m) {
      if (es !== source) return;
      var data = parse(m);
      if (!data) return;
      applyCounts(data);
      renderPage(data.ids || [], data.nodes || [], false);
      renderControls();
    });
    es.addEventListener('node', function (m) {
      if (es !== source) return;
      var node = parse(m);
      if (!node || !nodes.has(node.nodeId)) return;
      renderNode(node, true);
    });
    es.addEventListener('remove', function (m) {
      if (es !== source) return;
      var data = parse(m);
      if (data) removeNode(data.nodeId);
    });
    es.addEventListener('event', function (m) {
      if (es !== source) return;
      var e = parse(m);
      if (!e) return;
      queueEvent(e);
      applyEventToNode(e);
    });
    es.onerror = function () {
      if (es !== source) return;
      if (es.readyState === EventSource.CLOSED) {
        // The server refused the stream (503, 401, 400...): EventSource gives up, so try again later ourselves.
        setConnection('offline', 'Disconnected, retrying…');
        retryTimer = setTimeout(connect, RETRY_AFTER_CLOSE_MS);
      } else {
        setConnection('reconnecting', 'Reconnecting…');
      }
    };
  }

  function tick() {
    document.querySelectorAll('[data-since]').forEach(function (e) {
      e.textContent = formatAgo(e.dataset.since || null);
    });
  }

  document.querySelectorAll('.filter-button').forEach(function (b) {
    b.addEventListener('click', function () {
      setView({ status: b.dataset.filter, offset: 0 });
    });
  });
  search.addEventListener('input', function () {
    if (searchTimer) clearTimeout(searchTimer);
    searchTimer = setTimeout(function () {
      searchTimer = null;
      setView({ q: search.value.trim(), offset: 0 });
    }, SEARCH_DEBOUNCE_MS);
  });
  search.addEventListener('keydown', function (e) {
    if (e.key !== 'Enter') return;
    if (searchTimer) clearTimeout(searchTimer);
    searchTimer = null;
    setView({ q: search.value.trim(), offset: 0 });
  });
  prev.addEventListener('click', function () {
    setView({ offset: Math.max(0, view.offset - view.limit) });
  });
  next.addEventListener('click', function () {
    if (view.offset + view.limit < total) setView({ offset: view.offset + view.limit });
  });
  pageSize.addEventListener('change', function () {
    var limit = Number(pageSize.value);
    setView({ limit: limit, offset: Math.floor(view.offset / limit) * limit });
  });
  window.addEventListener('hashchange', function () {
    var wanted = readView();
    if (JSON.stringify(wanted) !== JSON.stringify(view)) setView(wanted);
  });

  renderControls();
  setInterval(tick, 1000);
  connect();
})();
