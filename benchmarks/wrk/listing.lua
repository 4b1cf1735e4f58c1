-- GET /v1/articles/<id>/comments: the first page (newest 20) of the pre-filled article, no key.
dofile(os.getenv("BENCH_LIB"))

function request()
  local id = bench.next_id("l")
  return wrk.format("GET", "/v1/articles/" .. bench.listing_article .. "/comments", {["X-Request-ID"] = id})
end
