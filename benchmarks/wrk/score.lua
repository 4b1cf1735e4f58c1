-- POST /v1/score: the same kind of texts as the submissions; nothing is stored.
dofile(os.getenv("BENCH_LIB"))

function request()
  local id, n = bench.next_id("s")
  return wrk.format("POST", "/v1/score", {
    ["Authorization"] = "Bearer " .. bench.token,
    ["Content-Type"] = "application/json",
    ["X-Request-ID"] = id,
  }, '{"text": ' .. bench.json_string(bench.text(tid, n)) .. "}")
end
