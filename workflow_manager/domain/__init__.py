"""The domain: entities, errors, status rules as data, the States Language walker, names and AWS
limits, definition and input rules, and the JSON forms.

A leaf package: it imports nothing of the service's adapters (executor, store), no framework (flask,
connexion) and no AWS library (boto3, botocore, pynamodb, moto); import-linter enforces it
(`[tool.importlinter]` in pyproject.toml).
"""
