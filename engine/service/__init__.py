"""``recovery serve``: the supervisor, its worker processes, the HTTP server's
configuration, and the workers' duties.
"""
