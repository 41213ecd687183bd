"""Identity: API keys (tokens, store, verifier), the request's caller (context), the hooks that
verify a presented key around the rate limiter, what views ask of it (access), and `flask keys`.

See docs/identity.md.
"""
