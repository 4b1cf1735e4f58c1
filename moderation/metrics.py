"""Prometheus metrics of the service (multi-process safe under gunicorn)."""

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("moderation_http_requests_total", "HTTP requests by endpoint and status",
                   ["method", "endpoint", "status"])
LATENCY = Histogram("moderation_http_request_duration_seconds", "HTTP request latency by endpoint",
                    ["method", "endpoint"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
COMMENTS = Counter("moderation_comments_total", "Submitted comments by routing outcome", ["status"])
SCORING = Histogram("moderation_scoring_duration_seconds", "Time to score one text with the serving model",
                    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05))
MODEL = Gauge("moderation_model_info", "The serving model version of each worker (value 1)", ["version"],
              multiprocess_mode="liveall")
RATELIMIT_FAILOVERS = Counter("moderation_ratelimit_storage_failovers_total",
                              "Times a worker lost the rate-limit storage and began counting in its own memory")
RATELIMIT_DEGRADED = Gauge("moderation_ratelimit_storage_degraded",
                           "1 while a worker counts rate limits in its own memory because the storage failed",
                           multiprocess_mode="livemax")
POLICY = Gauge("moderation_routing_policy", "The routing policy each worker applies, by setting", ["setting"],
               multiprocess_mode="liveall")
