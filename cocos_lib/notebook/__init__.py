"""Notebook plumbing, none of it part of the method: profile sizes and run paths (profile), profile choice on this
machine (runtime), work dirs (workspace), the repo address for Colab (project), time estimates (estimates), memory
plans (memory, live_bytes), the trajectory browser and reward explorer (widgets), exercise checkers (exercises)."""
