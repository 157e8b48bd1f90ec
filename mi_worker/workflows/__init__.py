"""Settlement workflows (issue 14): declarative sequences of catalogue calls with their undo,
run as request rows and advanced by a cluster-once job, so they survive any crash."""
