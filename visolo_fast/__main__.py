import signal
import sys

from visolo_fast.cli import main

status = main()
if status == 128 + signal.SIGTERM:
    # Stopped by SIGTERM, its files closed: the process ends by the signal, as a parent or a
    # service manager expects of a terminated process (killed by SIGTERM, not exit status 143)
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.raise_signal(signal.SIGTERM)
sys.exit(status)
