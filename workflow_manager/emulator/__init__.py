"""The embedded AWS emulator, the default ("embedded") mode of the service: no AWS account, no Docker.

- `server`: the in-process moto server whose Step Functions really execute (one per process).
- `moto_compat`: our fixes to moto's Step Functions, each pinned by a test in tests/test_moto_compat.py.
- `batch_runner`: moto's Batch with jobs that really run, as local subprocesses.
- `seeding`: the compute environment, job queue, job definitions and results table the examples use.

Pitfall: moto's state is process-wide, and every module here patches moto internals of one pinned
version (`moto_compat.MOTO_VERSION`). This module itself imports no moto, so the wiring can read
`DUMMY_CREDENTIALS` without loading the emulator.
"""

# moto accepts any credentials; boto3 refuses to sign a request without some. Used for every
# emulator (the embedded one, and a moto server or LocalStack behind WFM_BACKEND=endpoint).
DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
