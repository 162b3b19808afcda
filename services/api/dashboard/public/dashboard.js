/*
 * Live node dashboard: plain browser script, no build step.
 *
 * Stream protocol (GET /api/stream, server-sent events):
 *   snapshot  {serverTime, nodes: [nodeView + history], events: [event, oldest first]}  on every (re)connect
 *   node      nodeView + history                                                         a node's heartbeat/status changed
 *   remove    {nodeId}                                                                   a node was deleted
 *   event     node.events message (node.registered/online/offline, cluster.degraded)
 * All text coming from agents is written with textContent, never as HTML.
 */
(function () {
  'use strict';

  var MAX_EVENTS = 100;
  var RETRY_AFTER_CLOSE_MS = 5000;
  var SVG_NS = 'http://www.w3.org/2000/svg';

  var nodes = new Map();
  var rows = new Map();
  var events = [];
  var filter = 'ALL';
  var clockOffset = 0; // server time minus browser time, so "N s ago" is right on a skewed laptop
  var source = null;
  var retryTimer = null;

  var tbody = document.getElementById('node-rows');
  var template = document.getElementById('node-row-template');
  var nodesEmpty = document.getElementById('nodes-empty');
  var feed = document.getElementById('event-feed');
  var eventsEmpty = document.getElementById('events-empty');
  var connection = document.querySelector('[data-testid="connection-status"]');

  // Operator token (issue 7): EventSource cannot send headers, so ?token= is passed on in the URL.
  var token = new URLSearchParams(window.location.search).get('token');
  function apiUrl(path) {
    var url = new URL(path, window.location.href);
    if (token) url.searchParams.set('token', token);
    return url.pathname + url.search;
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
    var points = (history || []).filter(function (p) { return Date.parse(p.t) >= since; });
    if (points.length < 2) return el('span', 'none small', points.length ? 'collecting…' : '—');
    var w = 120, h = 32, pad = 2;
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

    var s = node.stats;
    var reported = s ? 'reported ' + formatDateTime(s.reportedAt) : '';
    [['cpu', 'cpuUsage', 'CPU'], ['mem', 'memoryUsage', 'Memory'], ['disk', 'diskUsage', 'Disk']].forEach(function (m) {
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
    tr.hidden = !matchesFilter(node);
    return tr;
  }

  function matchesFilter(node) {
    return filter === 'ALL' || node.status === filter;
  }

  function placeRow(nodeId, tr, append) {
    var old = rows.get(nodeId);
    rows.set(nodeId, tr);
    if (old) {
      old.replaceWith(tr);
      return;
    }
    if (append) {
      tbody.appendChild(tr); // the snapshot arrives in nodeId order
      return;
    }
    // Keep rows in nodeId order, like GET /api/nodes.
    var before = null;
    rows.forEach(function (row, id) {
      if (row !== tr && id.localeCompare(nodeId) > 0 && row.isConnected && (!before || id.localeCompare(before.dataset.nodeId) < 0)) before = row;
    });
    tbody.insertBefore(tr, before);
  }

  function upsertNode(node, options) {
    var previous = nodes.get(node.nodeId);
    if (previous && previous.statusVersion > node.statusVersion) {
      // A live event already moved this node on; an older store read must not move it back.
      node.status = previous.status;
      node.statusVersion = previous.statusVersion;
      node.statusChangedAt = previous.statusChangedAt;
    }
    nodes.set(node.nodeId, node);
    var tr = buildRow(node);
    if (options && options.flash && previous && previous.status !== node.status) tr.classList.add('flash');
    placeRow(node.nodeId, tr, options && options.append);
  }

  function removeNode(nodeId) {
    nodes.delete(nodeId);
    var tr = rows.get(nodeId);
    if (tr) tr.remove();
    rows.delete(nodeId);
  }

  function applyFilter() {
    nodes.forEach(function (node, id) {
      var tr = rows.get(id);
      if (tr) tr.hidden = !matchesFilter(node);
    });
    document.querySelectorAll('.filter-button').forEach(function (b) {
      b.setAttribute('aria-pressed', String(b.dataset.filter === filter));
    });
    updateSummary();
  }

  function updateSummary() {
    var online = 0, offline = 0, containers = 0;
    nodes.forEach(function (n) {
      if (n.status === 'ONLINE') {
        online++;
        if (n.stats) containers += n.stats.containerCount;
      } else offline++;
    });
    setText('[data-testid="count-total"]', String(nodes.size));
    setText('[data-testid="count-online"]', String(online));
    setText('[data-testid="count-offline"]', String(offline));
    setText('[data-testid="count-containers"]', String(containers));
    var counts = { ALL: nodes.size, ONLINE: online, OFFLINE: offline };
    document.querySelectorAll('.filter-button').forEach(function (b) {
      var badge = b.querySelector('.filter-count') || b.appendChild(el('span', 'filter-count'));
      badge.textContent = String(counts[b.dataset.filter]);
    });
    var visible = filter === 'ALL' ? nodes.size : counts[filter];
    nodesEmpty.hidden = visible > 0;
    nodesEmpty.textContent = nodes.size === 0 ? 'No nodes registered yet. Start an agent and it appears here.' : 'No ' + filter.toLowerCase() + ' nodes.';
  }

  function setText(selector, text) {
    var e = document.querySelector(selector);
    if (e) e.textContent = text;
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
    list.forEach(function (e) {
      if (!e || !e.eventId || events.some(function (x) { return x.eventId === e.eventId; })) return;
      events.push(e);
      added = true;
    });
    if (!added) return;
    events.sort(function (a, b) { return Date.parse(b.occurredAt) - Date.parse(a.occurredAt); });
    events.length = Math.min(events.length, MAX_EVENTS);
    var freshIds = new Set(fresh ? list.map(function (e) { return e.eventId; }) : []);
    feed.replaceChildren.apply(feed, events.map(function (e) { return eventItem(e, freshIds.has(e.eventId)); }));
    eventsEmpty.hidden = events.length > 0;
  }

  // A status event shows at once; the next store poll brings the full node.
  function applyEventToNode(e) {
    if (e.type === 'cluster.degraded') return;
    var node = nodes.get(e.nodeId);
    if (!node || !(e.statusVersion > node.statusVersion)) return;
    var next = Object.assign({}, node, { status: e.status, statusVersion: e.statusVersion, statusChangedAt: e.occurredAt });
    if (e.lastHeartbeat) next.lastHeartbeat = e.lastHeartbeat;
    nodes.set(e.nodeId, next);
    var tr = buildRow(next);
    tr.classList.add('flash');
    placeRow(e.nodeId, tr);
    updateSummary();
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
    if (source) source.close();
    setConnection(source ? 'reconnecting' : 'connecting', source ? 'Reconnecting…' : 'Connecting…');
    var es = new EventSource(apiUrl('/api/stream'));
    source = es;

    es.addEventListener('snapshot', function (m) {
      var data = parse(m);
      if (!data) return;
      clockOffset = Date.parse(data.serverTime) - Date.now() || 0;
      nodes.clear();
      rows.clear();
      tbody.replaceChildren();
      (data.nodes || []).forEach(function (n) { upsertNode(n, { append: true }); });
      updateSummary();
      addEvents(data.events || [], false);
      setConnection('live', 'Live');
    });
    es.addEventListener('node', function (m) {
      var node = parse(m);
      if (!node) return;
      upsertNode(node, { flash: true });
      updateSummary();
    });
    es.addEventListener('remove', function (m) {
      var data = parse(m);
      if (!data) return;
      removeNode(data.nodeId);
      updateSummary();
    });
    es.addEventListener('event', function (m) {
      var e = parse(m);
      if (!e) return;
      addEvents([e], true);
      applyEventToNode(e);
    });
    es.onerror = function () {
      if (es !== source) return;
      if (es.readyState === EventSource.CLOSED) {
        // The server refused the stream (503, 401...): EventSource gives up, so try again later ourselves.
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
      filter = b.dataset.filter;
      applyFilter();
    });
  });

  setInterval(tick, 1000);
  connect();
})();
