/*
 * brickrun.js: the browser client of the brickrun telemetry API (no build step, no dependencies).
 *
 *   <script src="https://telemetry.example.com/static/brickrun.js" defer
 *           data-token="bri_..."                 (an ingest token: publishable, rate-limited)
 *           data-endpoint="https://telemetry.example.com/api/telemetry"  (default: beside the script)
 *           data-deployment="web-prod"           (optional: engagement per deployment)
 *           data-auto="true"></script>           (page views, [data-track] clicks, errors, fetch)
 *
 * What it sends: page views (the path only, with id-like segments replaced by [id]; never the
 * query or fragment), actions (names; metadata numbers and booleans only), errors (a category
 * and a message with emails and long tokens removed), API-call timings (endpoint path, status,
 * duration) and sessions (a random id kept in sessionStorage, unrelated to the user). It never
 * sends emails, user ids, cookies or form contents, and sends nothing at all when the browser
 * says Do Not Track (navigator.doNotTrack, window.doNotTrack or Global Privacy Control).
 *
 * Events are batched: sent every 5 s or every 20 events with fetch (backing off on 429), and
 * with navigator.sendBeacon when the page is hidden or unloaded, so the last events survive.
 *
 * API (window.brickrun): trackPageView(page?), trackAction(action, metadata?),
 * trackError(name, message?), trackApiCall(endpoint, durationMs, status), flush(), sessionId,
 * enabled.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  var attr = function (name, fallback) {
    var value = script && script.getAttribute("data-" + name);
    return value === null || value === undefined || value === "" ? fallback : value;
  };

  var SESSION_KEY = "brickrun.session";
  var SESSION_IDLE_MS = 30 * 60 * 1000;
  var FLUSH_MS = 5000;
  var BATCH = 20;
  var MAX_QUEUE = 200;

  var dnt =
    navigator.doNotTrack === "1" ||
    navigator.doNotTrack === "yes" ||
    window.doNotTrack === "1" ||
    navigator.msDoNotTrack === "1" ||
    navigator.globalPrivacyControl === true;
  var token = attr("token", "");
  var scriptOrigin = script && script.src ? new URL(script.src, location.href).origin : location.origin;
  var endpoint = attr("endpoint", scriptOrigin + "/api/telemetry");
  var deployment = attr("deployment", null);
  var auto = attr("auto", "true") !== "false";
  var enabled = !dnt && !!token;

  function noop() {}

  if (!enabled) {
    window.brickrun = {
      enabled: false,
      sessionId: null,
      trackPageView: noop,
      trackAction: noop,
      trackError: noop,
      trackApiCall: noop,
      flush: noop,
    };
    return;
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) {
      return (x + 0x100).toString(16).slice(1);
    }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  // --- anonymisation: the server does it again; nothing identifying should leave the page ---

  var EMAIL = /[^\s@<>()"',;:]+@[^\s@<>()"',;:]+\.[A-Za-z]{2,}/g;
  var LONG_TOKEN = /[A-Za-z0-9_\-+=/.]{24,}/g;

  function idLike(segment) {
    var s;
    try {
      s = decodeURIComponent(segment);
    } catch (e) {
      return true;
    }
    if (!s) return false;
    if (s.indexOf("@") >= 0) return true;
    if (/^\d+$/.test(s)) return true;
    if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s)) return true;
    if (/^[0-9a-f]{12,}$/i.test(s)) return true;
    if (s.length >= 10 && /[0-9]/.test(s) && /[A-Za-z]/.test(s) && !/[-_. ]/.test(s)) return true;
    var parts = s.split(/[^A-Za-z0-9]+/).filter(Boolean);
    var numeric = parts.filter(function (p) {
      return /\d/.test(p) && /^[0-9a-f]+$/i.test(p);
    }).length;
    return parts.length >= 2 && numeric * 2 >= parts.length;
  }

  function anonymisePath(url) {
    var path;
    try {
      path = new URL(url, location.href).pathname;
    } catch (e) {
      return "/";
    }
    return path
      .split("/")
      .map(function (segment) {
        return idLike(segment) ? "[id]" : segment;
      })
      .join("/");
  }

  function scrubText(text) {
    return String(text).replace(EMAIL, "[redacted]").replace(LONG_TOKEN, "[redacted]").slice(0, 200);
  }

  var NAME = /^[A-Za-z][A-Za-z0-9_.:\-]{0,63}$/;

  function cleanMetadata(metadata) {
    var out = {};
    var n = 0;
    if (!metadata || typeof metadata !== "object") return out;
    Object.keys(metadata).forEach(function (key) {
      var value = metadata[key];
      var ok = typeof value === "boolean" || (typeof value === "number" && isFinite(value));
      if (ok && NAME.test(key) && n < 32) {
        out[key] = value;
        n += 1;
      }
    });
    return out;
  }

  // --- session: random, per tab, ends after 30 idle minutes ----------------------------------

  function loadSession() {
    try {
      var saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
      if (saved && saved.id && Date.now() - saved.last < SESSION_IDLE_MS) return saved;
    } catch (e) {
      /* storage blocked or corrupt: a fresh session */
    }
    return null;
  }

  function saveSession() {
    try {
      sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
    } catch (e) {
      /* storage blocked: the session lives as long as the page */
    }
  }

  var session = loadSession();
  var isNewSession = !session;
  if (isNewSession) {
    // endId is the id of this session's session_end event: every page hide sends it again
    // with the duration so far, and the server keeps one record per id (the latest).
    session = { id: uuid(), endId: uuid(), start: Date.now(), last: Date.now() };
  }
  saveSession();

  // --- queue and delivery ---------------------------------------------------------------------

  var queue = [];
  var backoffUntil = 0;
  var timer = null;

  function base(type) {
    session.last = Date.now();
    var event = {
      id: uuid(),
      type: type,
      timestamp: new Date().toISOString(),
      sessionId: session.id,
      platform: "web",
      page: anonymisePath(location.href),
    };
    if (deployment && NAME.test(deployment)) event.deployment = deployment;
    return event;
  }

  function enqueue(event) {
    if (queue.length >= MAX_QUEUE) queue.shift(); // bounded: the oldest event goes first
    queue.push(event);
    saveSession();
    if (queue.length >= BATCH) flush();
    else if (!timer) timer = setTimeout(flush, FLUSH_MS);
  }

  function sessionEnd() {
    var event = base("session_end");
    event.id = session.endId;
    event.duration = Math.max(0, Date.now() - session.start);
    return event;
  }

  function beaconUrl() {
    return endpoint + (endpoint.indexOf("?") >= 0 ? "&" : "?") + "token=" + encodeURIComponent(token);
  }

  function flush() {
    if (timer) {
      clearTimeout(timer);
      timer = null;
    }
    if (!queue.length || Date.now() < backoffUntil) {
      if (queue.length && !timer) timer = setTimeout(flush, Math.max(250, backoffUntil - Date.now()));
      return;
    }
    var batch = queue.splice(0, BATCH * 5);
    // text/plain keeps this a "simple" cross-origin request: no preflight needed.
    fetch(beaconUrl(), {
      method: "POST",
      body: JSON.stringify(batch),
      headers: { "Content-Type": "text/plain;charset=UTF-8" },
      keepalive: true,
      credentials: "omit",
      mode: "cors",
    })
      .then(function (response) {
        if (response.status === 429 || response.status === 503) {
          var wait = parseInt(response.headers.get("Retry-After") || "1", 10);
          backoffUntil = Date.now() + Math.min(60, Math.max(1, wait || 1)) * 1000;
          queue = batch.concat(queue).slice(-MAX_QUEUE);
          if (!timer) timer = setTimeout(flush, backoffUntil - Date.now());
        }
      })
      .catch(function () {
        queue = batch.concat(queue).slice(-MAX_QUEUE);
      });
    if (queue.length && !timer) timer = setTimeout(flush, FLUSH_MS);
  }

  function flushWithBeacon() {
    var batch = queue.splice(0, queue.length);
    batch.push(sessionEnd());
    var body = JSON.stringify(batch);
    var sent = false;
    if (navigator.sendBeacon) {
      try {
        sent = navigator.sendBeacon(beaconUrl(), body);
      } catch (e) {
        sent = false;
      }
    }
    if (!sent) {
      fetch(beaconUrl(), {
        method: "POST",
        body: body,
        headers: { "Content-Type": "text/plain;charset=UTF-8" },
        keepalive: true,
        credentials: "omit",
        mode: "cors",
      }).catch(noop);
    }
  }

  // --- tracking API ---------------------------------------------------------------------------

  function trackPageView(page) {
    var event = base("page_view");
    if (page) event.page = anonymisePath(page);
    enqueue(event);
  }

  function trackAction(action, metadata) {
    if (!NAME.test(String(action))) return;
    var event = base("action");
    event.action = String(action);
    var clean = cleanMetadata(metadata);
    if (Object.keys(clean).length) event.metadata = clean;
    enqueue(event);
  }

  function trackError(name, message) {
    var event = base("error");
    event.error = { name: NAME.test(String(name)) ? String(name) : "client_error" };
    if (message) event.error.message = scrubText(message);
    enqueue(event);
  }

  function trackApiCall(url, durationMs, status) {
    var event = base("api_call");
    event.endpoint = anonymisePath(url);
    event.duration = Math.max(0, Math.round(Number(durationMs) || 0));
    if (status >= 100 && status <= 599) event.status = status;
    enqueue(event);
  }

  window.brickrun = {
    enabled: true,
    sessionId: session.id,
    trackPageView: trackPageView,
    trackAction: trackAction,
    trackError: trackError,
    trackApiCall: trackApiCall,
    flush: flush,
  };

  // --- page lifecycle: the last batch leaves with sendBeacon ------------------------------------

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") flushWithBeacon();
  });
  window.addEventListener("pagehide", flushWithBeacon);

  if (!auto) {
    if (isNewSession) enqueue(base("session_start"));
    return;
  }

  // --- automatic tracking ---------------------------------------------------------------------

  if (isNewSession) enqueue(base("session_start"));
  trackPageView();

  ["pushState", "replaceState"].forEach(function (method) {
    var original = history[method];
    history[method] = function () {
      var before = location.pathname;
      var result = original.apply(this, arguments);
      if (location.pathname !== before) trackPageView();
      return result;
    };
  });
  window.addEventListener("popstate", function () {
    trackPageView();
  });

  document.addEventListener(
    "click",
    function (event) {
      var target = event.target && event.target.closest ? event.target.closest("[data-track]") : null;
      if (target) trackAction(target.getAttribute("data-track"));
    },
    true
  );

  window.addEventListener("error", function (event) {
    var error = event.error;
    trackError("client_error", (error && error.name ? error.name + ": " : "") + (event.message || ""));
  });
  window.addEventListener("unhandledrejection", function (event) {
    var reason = event.reason;
    trackError("client_error", reason && reason.message ? (reason.name || "Error") + ": " + reason.message : "unhandled rejection");
  });

  if (window.fetch) {
    var originalFetch = window.fetch;
    var telemetryPath = new URL(endpoint, location.href).href.split("?")[0];
    window.fetch = function (input, init) {
      var url = typeof input === "string" ? input : input && input.url ? input.url : String(input);
      if (new URL(url, location.href).href.split("?")[0] === telemetryPath) {
        return originalFetch.apply(this, arguments);
      }
      var started = performance.now();
      return originalFetch.apply(this, arguments).then(
        function (response) {
          trackApiCall(url, performance.now() - started, response.status);
          if (response.status >= 500) trackError("api_error", "HTTP " + response.status);
          return response;
        },
        function (error) {
          trackApiCall(url, performance.now() - started, 0);
          trackError("network_error", error && error.name ? error.name : "fetch failed");
          throw error;
        }
      );
    };
  }
})();
