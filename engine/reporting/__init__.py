"""What the engine tells people: reports, timelines, Prometheus metrics.
"""
