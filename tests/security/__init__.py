"""The attacks of the security review, kept as tests so they stay fixed (docs/security.md)."""
