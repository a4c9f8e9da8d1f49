#!/usr/bin/python3
"""The audit log's SIGKILL campaign: 1,000 kills (by default) of rootseald at
random moments, a third each under 1, 4 and 16 concurrent clients (every
fifth round kills during start-up instead), with every check of
tests/integration/audit_crash_lib.py after every kill. Prints the figures as
JSON; exits non-zero at the first failed check.

  bench/audit_crash.py [--kills 1000] [--build build/release] [--seed N]
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=1000)
    ap.add_argument("--build", default=os.path.join(REPO, "build", "release"))
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    os.environ.setdefault("ROOTSEALD", os.path.join(a.build, "daemon", "rootseald"))
    os.environ.setdefault("ROOTSEAL_CLI", os.path.join(a.build, "cli", "rootseal"))
    sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
    from audit_crash_lib import Campaign  # after the environment is set

    work = tempfile.mkdtemp(prefix="rootseal-audit-crash-")
    started = time.monotonic()
    try:
        campaign = Campaign(os.path.join(work, "state"), seed=a.seed)
        levels = (1, 4, 16)
        for i in range(a.kills):
            campaign.round(levels[i * len(levels) // a.kills])
            if (i + 1) % 100 == 0:
                print("%d kills, %.0fs" % (i + 1, time.monotonic() - started), file=sys.stderr, flush=True)
        figures = campaign.finish()
        figures["seconds"] = round(time.monotonic() - started, 1)
        print(json.dumps(figures, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
