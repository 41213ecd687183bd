"""Identity: API keys (tokens, store, verifier), the request's caller (context), the hooks that
verify a presented key around the rate limiter, what views ask of it (access), sign-up's budgets
(signups), and `flask keys`. It asks the rate limiter for budgets; the limiter knows nothing of it.

See docs/identity.md.
"""
