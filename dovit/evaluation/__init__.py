"""Measuring models: metrics, ξ sweeps, timing, robustness to shifts, policies at matched budgets."""
