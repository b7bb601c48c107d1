"""Task command for the failing example: exits nonzero with a reason on stderr."""

import json
import sys

task = json.loads(sys.argv[-1])
print(f"cannot deploy {task.get('service', 'the service')}: the target cluster is missing", file=sys.stderr)
sys.exit(2)
