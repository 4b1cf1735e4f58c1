-- POST /v1/integrations/coral/moderation: pre-signed bodies from BENCH_CORAL_FILE ("<hex>\t<json>" lines),
-- which load.py writes with HMAC-SHA256 under the secret it gives the server. Thread k takes every
-- BENCH_THREADS-th line; `wrapped` counts how often a thread ran out and started over (repeats).
dofile(os.getenv("BENCH_LIB"))

local signed = {}

function bench.init()
  local i = 0
  for line in io.lines(os.getenv("BENCH_CORAL_FILE")) do
    if i % bench.threads == tid - 1 then
      signed[#signed + 1] = line
    end
    i = i + 1
  end
end

function request()
  local id, n = bench.next_id("c")
  local k = (n - 1) % #signed + 1
  if n > #signed and k == 1 then
    wrapped = wrapped + 1
  end
  local signature, body = signed[k]:match("^(%x+)\t(.*)$")
  return wrk.format("POST", "/v1/integrations/coral/moderation", {
    ["Content-Type"] = "application/json",
    ["X-Coral-Signature"] = "sha256=" .. signature,
    ["X-Request-ID"] = id,
  }, body)
end
