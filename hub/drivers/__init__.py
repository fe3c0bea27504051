"""Drivers feed the pipeline and commit what it returns: pulls (:mod:`.pull`), pushes (:mod:`.push`) and quarantine
replays (:mod:`.replay`). :class:`~tanpuhui.hub.hub.Hub` holds one of each."""
