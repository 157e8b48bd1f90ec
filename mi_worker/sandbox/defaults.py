"""Credentials and paths of the sandbox: public on purpose, never valid anywhere else."""
from __future__ import annotations

SECRET = "sandbox-secret-not-for-production"
PAASID = "sandbox-paasid"
ACCESS_KEY = "sandbox-access-key"
SINGLE_PATH = "/fsi/api/rsfComIfsService/callService"
TIF_BASE = "/ebus/sandbox/hsa/hgs"
CSB_BASE = "/power-csb/powercsb"
ADMVS = "990000"  # 医保区划 of the fake centre (99 is no real province)
CLOCK_SKEW_SECONDS = 300
BANNER = ("*** mi-worker SANDBOX: a FAKE 医保中心 for tests and demos. It is NOT the real "
          "national healthcare-security platform; nothing settled here is real. ***")
