"""The root of the test tree. Its being here puts ``tests/`` on ``sys.path`` (pytest's default import mode), so
support modules that tests in several folders share live in ``tests/`` itself (``bike_share``)."""
