-- POST /v1/articles/<id>/comments: a unique author id and text per request, over BENCH_ARTICLES articles.
dofile(os.getenv("BENCH_LIB"))

function request()
  local id, n = bench.next_id("w")
  local article = "bench-artikel-" .. ((n * bench.threads + tid) % bench.articles)
  local body = '{"author_id": "leser-' .. id .. '", "author_name": "Leser ' .. id .. '", "text": '
    .. bench.json_string(bench.text(tid, n)) .. "}"
  return wrk.format("POST", "/v1/articles/" .. article .. "/comments", {
    ["Authorization"] = "Bearer " .. bench.token,
    ["Content-Type"] = "application/json",
    ["X-Request-ID"] = id,
  }, body)
end
