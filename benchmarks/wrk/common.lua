-- Shared by the scenario scripts (each loads it with dofile): German comment texts, request ids that
-- are unique per wrk thread, status counting, and one `BENCH_JSON {...}` line from done() that
-- benchmarks/load.py parses. Settings come from BENCH_* environment variables set by load.py.

local OPENERS = {
  "Danke für den ausgewogenen Bericht zur Verkehrswende.",
  "Ich lese die Kommentare hier seit vielen Jahren gern mit.",
  "Interessanter Artikel, aber ein wichtiger Punkt fehlt mir.",
  "Als Pendlerin aus dem Umland sehe ich das etwas anders.",
  "Gute Recherche, das hätte ich so wirklich nicht erwartet.",
  "Mein Großvater hat das damals ganz ähnlich erlebt.",
  "Schön, dass endlich jemand über dieses Thema schreibt.",
  "Die Zahlen im dritten Absatz überraschen mich sehr.",
}
local MIDDLES = {
  "Die Mieten in unserer Stadt sind in fünf Jahren um ein Drittel gestiegen.",
  "Der Stadtrat sollte die Bürger früher in solche Planungen einbeziehen.",
  "Bus und Bahn fahren bei uns am Wochenende nur alle zwei Stunden.",
  "Vielleicht könnte man die Schulgebäude am Nachmittag besser nutzen.",
  "Auch die Vereine im Ort leisten hier viel, das wird oft vergessen.",
  "Ohne verlässliche Förderung investiert kein Betrieb in neue Technik.",
  "Die Pflegekräfte verdienen mehr als nur Applaus vom Balkon.",
  "Beim Radweg an der Hauptstraße wurde leider wieder gespart.",
}
local CLOSERS = {
  "Bitte bleiben Sie an dem Thema dran.",
  "Ich bin gespannt auf die Fortsetzung.",
  "Mal sehen, was der Gemeinderat daraus macht.",
  "Weiter so, liebe Redaktion!",
  "Trotzdem ein lesenswerter Beitrag.",
  "Das sollte man offen diskutieren dürfen.",
}

bench = {
  token = os.getenv("BENCH_TOKEN") or "",
  threads = tonumber(os.getenv("BENCH_THREADS") or "1"),
  articles = tonumber(os.getenv("BENCH_ARTICLES") or "50"),
  listing_article = os.getenv("BENCH_LISTING_ARTICLE") or "bench-liste",
}

local function pick(list, k)
  return list[(k % #list) + 1]
end

-- A comment of about 150 characters; the closing tag makes it unique per thread and counter.
function bench.text(thread_id, n)
  return pick(OPENERS, n) .. " " .. pick(MIDDLES, math.floor(n / #OPENERS) + thread_id) .. " "
    .. pick(CLOSERS, n * 7 + thread_id) .. " #" .. thread_id .. "-" .. n
end

function bench.json_string(s)
  return '"' .. (s:gsub("\\", "\\\\"):gsub('"', '\\"')) .. '"'
end

local registry = {}

function setup(thread)
  table.insert(registry, thread)
  thread:set("tid", #registry)
end

function init(args)
  sent, statuses, pending, wrapped = 0, {}, {}, 0
  if bench.init then
    bench.init()
  end
end

-- The next request id of this thread (sent as X-Request-ID, which the app echoes); it stays in
-- `pending` until its answer arrives, so done() knows which requests were cut off at the deadline.
function bench.next_id(prefix)
  sent = sent + 1
  local id = prefix .. tid .. "-" .. sent
  pending[id] = true
  return id, sent
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  local id = headers["X-Request-ID"]
  if id then
    pending[id] = nil
  end
end

function done(summary, latency, requests)
  local counts, open, sent_total, wrapped_total = {}, {}, 0, 0
  for _, thread in ipairs(registry) do
    for status, count in pairs(thread:get("statuses") or {}) do
      counts[status] = (counts[status] or 0) + count
    end
    for id in pairs(thread:get("pending") or {}) do
      open[#open + 1] = '"' .. id .. '"'
    end
    sent_total = sent_total + (thread:get("sent") or 0)
    wrapped_total = wrapped_total + (thread:get("wrapped") or 0)
  end
  local status_parts = {}
  for status, count in pairs(counts) do
    status_parts[#status_parts + 1] = string.format('"%d": %d', status, count)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "sent": %d, "wrapped": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "statuses": {%s}, "in_flight": [%s]}\n',
    summary.requests, summary.duration, sent_total, wrapped_total,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    table.concat(status_parts, ", "), table.concat(open, ", ")))
end
