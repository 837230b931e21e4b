"""Shared test settings.

Property tests are reproducible in CI (no run-to-run randomness), and the programs the
end-to-end tests start get Ctrl-C the way a terminal's foreground job does.
"""

import os
import signal

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# A shell without job control starts background jobs with SIGINT ignored, and an ignored
# signal stays ignored across exec: the clients under test would then never see the Ctrl-C
# the tests send (Python keeps an inherited SIG_IGN). Handling it here makes every child
# start with the default disposition, whoever started pytest.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
