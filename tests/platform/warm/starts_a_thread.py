"""Preloaded into a warm server, this module leaves a thread running there, as a careless import might."""

import threading

threading.Thread(target=threading.Event().wait, name="left-running", daemon=True).start()
