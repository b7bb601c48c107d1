"""Watching the service (CONTRACT 9.7): the Prometheus metrics (`metrics`), the botocore hooks that
count AWS calls (`aws`) and the log formats (`logs`).

Pitfalls:
- gunicorn serves from several processes, each with its own counters. With
  `PROMETHEUS_MULTIPROC_DIR` set (deploy/gunicorn.conf.py sets it to a fresh directory), every
  process writes its values to files there and a scrape, answered by any one process, sums them.
  prometheus-client reads the variable when it is first imported, so it must be set before the app
  is loaded; and the directory must be emptied between runs of the server (old files would be
  summed in).
- The metric objects are module-level: the default registry refuses a second metric of one name,
  and tests build several apps in one process. Values are per process, not per app.
- Only counters and histograms are kept per process; the workflows-by-status gauge is read from the
  store at scrape time (the store is shared by every process, so one read is the whole answer).
"""
