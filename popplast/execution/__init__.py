"""Execution: the search loop, the local executor and the Ray actor pool."""
