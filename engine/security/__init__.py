"""Who may talk to the service (credentials, tokens, roles) and what must never be written
(redaction).
"""
