"""The entry points, each read as prepare → execute → finish: `popplast.run` (run.py, its plan in plan.py)."""
