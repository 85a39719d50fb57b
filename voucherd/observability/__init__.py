"""Observability: Prometheus metrics, structured JSON logs, a request id on every answer.

* ``/metrics`` (no auth, like ``/healthz``) answers in Prometheus' text format. HTTP requests are
  counted and timed by route *template* (``/api/v1/vouchers/{ref}``), method and status, never by
  the raw path: the Yoyo, Voucherify and page faces carry voucher codes in their paths. The core
  counts what it committed (vouchers issued, redemptions and rollbacks, delivery outcomes) with
  one call at the end of each use case (:mod:`.metrics`). What lives in the database (the outbox's
  depth and the age of its oldest due delivery, operations in progress with their done/total) is
  read at scrape time by :class:`.collector.DatabaseCollector`, through readers the features own
  and the composition module hands in, so every API process answers the same and nothing goes
  stale when a process dies.
* **Several processes.** ``voucherd serve --workers N`` runs N uvicorn processes, each with its
  own counters. prometheus-client's multiprocess mode adds them up: every process writes its
  counters to memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` (answered by
  any one process) sums the files. ``serve`` points that variable at a fresh temporary directory
  when it runs more than one process and the variable is not set (and removes it on exit); an
  operator who sets it must empty the directory before each start, as prometheus-client's
  documentation requires. With one process the counters simply live in memory.
* **Separate workers.** ``voucherd worker`` sends deliveries and runs operations in a process that
  answers no HTTP. ``voucherd worker --metrics-port P`` (or ``VOUCHERD_WORKER_METRICS_PORT``)
  serves that process's own counters (delivery outcomes, process CPU and memory) on
  ``http://VOUCHERD_HOST:P/metrics`` for Prometheus to scrape as one more target. Chosen over
  counting outcomes in the database because a counter per process is free on the send path and
  Prometheus adds targets up anyway; the *backlog* (what an alert needs) is database-backed and
  shown by every API process whichever worker is down.
* **Logs** (:mod:`.logs`) are one JSON object a line (``VOUCHERD_LOG_FORMAT=json``, the default
  of ``serve`` and ``worker``) or coloured text (``console``), for voucherd's own loggers,
  uvicorn's and the libraries' alike. Every request leaves one access line (:mod:`.middleware`)
  with its request id, method, route template, status, duration and tenant id; every line logged
  while serving a request carries the request's id.
* **What is never logged or exported:** key secrets and tokens, provider credentials, full
  voucher codes, customers' names, emails, phones or addresses. Metrics carry no tenant or
  customer label at all; logs name routes by template and objects by id. ``tests/faults/test_canary.py``
  drives every face with recognisable personal data and secrets and scans every log line, error
  body and metric for them.
"""
